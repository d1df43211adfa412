//! What every instance teardown does alike: it goes on past each problem and reports them all.

use std::path::Path;

/// Removes an instance's directory; one that is already gone is fine, any other failure is noted in
/// `problems`.
pub(super) fn remove_dir(dir: &Path, problems: &mut Vec<String>) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("removing {}: {e}", dir.display()));
        }
    }
}

/// `Ok` when the teardown met no problem, else all of them on one line.
pub(super) fn outcome(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dir_is_no_problem_and_problems_join_on_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("instance");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("vmm.pid"), "1\n").unwrap();
        let mut problems = Vec::new();
        remove_dir(&dir, &mut problems);
        assert!(!dir.exists());
        remove_dir(&dir, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(outcome(problems), Ok(()));
        assert_eq!(outcome(vec!["a".into(), "b".into()]), Err("a; b".to_string()));
    }
}
