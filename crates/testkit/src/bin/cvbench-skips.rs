//! Prints how many tests skipped and why, from the skip log `scripts/test.sh` collects
//! (`cvbench-skips <log>`; a missing log means nothing skipped).

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: cvbench-skips <skip log>");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("cvbench-skips: reading {}: {e}", path.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    let records: Vec<_> = text.lines().filter_map(testkit::SkipRecord::parse_line).collect();
    print!("{}", testkit::summary(&records));
    ExitCode::SUCCESS
}
