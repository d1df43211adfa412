fn main() { todo!("workload binary: see crates/workload") }
