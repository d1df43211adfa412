fn main() {
    println!("bench: not implemented yet");
}
