//! Writes the test fixture's report into a directory, to look at the charts:
//! `cargo run -p report --example fixture_report -- /tmp/preview [dark] [WxH]`.

#[path = "../tests/fixture.rs"]
mod fixture;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().map_or("/tmp/cvbench-report-preview", String::as_str));
    let mut opts = report::ReportOptions::default();
    for a in &args[1.min(args.len())..] {
        if let Ok(theme) = a.parse() {
            opts.theme = theme;
        } else if a == "log" {
            opts.log_x = true;
        } else {
            opts.size = report::parse_size(a)?;
        }
    }
    let written = report::write_report(&fixture::results(10), &dir, &opts)?;
    for f in &written.figures {
        println!("{}", f.png_path.display());
    }
    println!("{}", written.html.display());
    Ok(())
}
