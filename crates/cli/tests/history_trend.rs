//! `bench history append` / `list` and `bench trend` end to end, on the committed example results
//! (no root, no backend run): commit resolution (given, or HEAD of a clean tree), the refusals
//! (another commit's results, the same run twice, a dirty tree, a malformed history line), verdict
//! files from `bench check --json`, and the trend drawn from what was appended.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command as Std;

    use assert_cmd::Command;

    fn bench() -> Command {
        Command::cargo_bin("bench").expect("bench binary")
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn example() -> PathBuf {
        root().join("results/example/results.json")
    }

    /// The example results with another run id and build revision (`None`: an installed `bench`).
    fn variant(dir: &Path, name: &str, run_id: &str, revision: Option<&str>) -> PathBuf {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(example()).expect("example")).expect("json");
        v["run_id"] = serde_json::json!(run_id);
        v["tool"]["git_revision"] = serde_json::json!(revision);
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).expect("write");
        path
    }

    fn stderr(out: &std::process::Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Exit 2 (a refusal, not a failure) with `said` in stderr.
    fn assert_refused(out: &std::process::Output, said: &str) {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        assert!(stderr(out).contains(said), "{}", stderr(out));
    }

    /// `bench trend --history <history> --out <out> <extra>`; `None` after a counted skip when
    /// there is no font to draw with.
    fn trend(history: &Path, out: &Path, extra: &[&str]) -> Option<std::process::Output> {
        let run = bench()
            .args(["trend", "--history"])
            .arg(history)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .expect("run");
        if stderr(&run).contains("no usable font") {
            testkit::skip(
                testkit::Requirement::Package("fonts-dejavu-core"),
                "no chart font",
            );
            return None;
        }
        Some(run)
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = Std::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn append_list_and_trend_from_the_example_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = dir.path().join("h/history.jsonl");
        // The example was measured by a bench built from 136308acd004.
        let append = |results: &Path, commit: &str, extra: &[&str]| {
            bench()
                .args(["history", "append"])
                .arg(results)
                .arg("--history")
                .arg(&history)
                .args(["--commit", commit, "--repo"])
                .arg(root())
                .args(extra)
                .output()
                .expect("run")
        };
        // `bench check --json` of the example against itself: a verdict file.
        let verdict = dir.path().join("check.json");
        let out = bench()
            .args(["check", "--baseline"])
            .arg(example())
            .arg("--current")
            .arg(example())
            .arg("--json")
            .arg(&verdict)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        let out = append(
            &example(),
            "136308acd004",
            &[
                "--verdict",
                verdict.to_str().expect("utf-8"),
                "--note",
                "host loaded",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(":1: commit 136308a"), "{said}");
        assert!(said.contains("1 verdict file(s) with 0 mark(s)"), "{said}");

        // The same run again, and results of another build, are refused (exit 2), file untouched.
        let before = std::fs::read_to_string(&history).expect("history");
        assert_refused(
            &append(&example(), "136308acd004", &[]),
            "is already recorded on line 1",
        );
        assert_refused(
            &append(&example(), "deadbeefcafe", &[]),
            "built from 136308acd004",
        );
        let out = append(&example(), "not-a-commit", &[]);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(std::fs::read_to_string(&history).expect("history"), before);

        // A second run of a commit unknown to the repository is recorded as given.
        let second = variant(dir.path(), "second.json", "second-run", None);
        let out = append(&second, "0123456789abcdef0123456789abcdef01234567", &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("recorded as given"), "{}", stderr(&out));

        let out = bench()
            .args(["history", "list", "--history"])
            .arg(&history)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(
            listed.contains("136308a") && listed.contains("0123456"),
            "{listed}"
        );
        assert!(listed.contains("hc1: AMD EPYC, 2 cores"), "{listed}");

        let out_dir = dir.path().join("trend");
        let Some(out) = trend(
            &history,
            &out_dir,
            &["--size", "640x360", "--backend", "runc,container"],
        ) else {
            return;
        };
        assert!(out.status.success(), "{}", stderr(&out));
        for name in ["trend_container_idle", "trend_runc_http", "trend_runc_oltp"] {
            assert!(out_dir.join(format!("{name}.png")).is_file(), "{name}");
            assert!(out_dir.join(format!("{name}.svg")).is_file(), "{name}");
        }
        assert!(!out_dir.join("trend_qemu_idle.png").exists(), "--backend filters");
        let md = std::fs::read_to_string(out_dir.join("trend.md")).expect("trend.md");
        assert!(md.contains("- 136308a: host loaded"), "{md}");
        assert!(md.contains("Nothing: 1 verdict file(s) recorded"), "{md}");

        let out =
            trend(&history, &out_dir, &["--backend", "firecracker"]).expect("a font: the trend above drew");
        assert_refused(&out, "no backend \"firecracker\"");

        // A malformed line stops list and trend with its line number.
        let mut text = std::fs::read_to_string(&history).expect("history");
        text.push_str("{\"history_version\": 1, \"commit\": \"abc\"}\n");
        std::fs::write(&history, text).expect("write");
        for args in [vec!["history", "list"], vec!["trend", "--out", "x"]] {
            let out = bench()
                .args(&args)
                .arg("--history")
                .arg(&history)
                .output()
                .expect("run");
            assert_refused(&out, "history.jsonl:3: does not match history version 1");
        }
    }

    #[test]
    fn without_commit_head_is_recorded_and_a_dirty_tree_refused() {
        if Std::new("git").arg("--version").output().is_err() {
            testkit::skip(testkit::Requirement::Package("git"), "git not installed");
            return;
        }
        let repo = tempfile::tempdir().expect("tempdir");
        let r = repo.path();
        git(r, &["init", "-q"]);
        std::fs::write(r.join("code.rs"), "fn main() {}\n").expect("write");
        std::fs::create_dir_all(r.join("results")).expect("mkdir");
        std::fs::write(r.join("results/history.jsonl"), "").expect("write");
        git(r, &["add", "."]);
        git(r, &["commit", "-qm", "one"]);
        let history = r.join("results/history.jsonl");
        let append = |results: &Path, extra: &[&str]| {
            bench()
                .current_dir(r)
                .args(["history", "append"])
                .arg(results)
                .args(extra)
                .output()
                .expect("run")
        };
        let first = variant(r, "first.json", "first", None);
        let out = append(&first, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        // The history file itself is now modified: that does not make the tree dirty.
        let second = variant(r, "second.json", "second", None);
        let out = append(&second, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::write(r.join("code.rs"), "fn main() { slow() }\n").expect("write");
        let third = variant(r, "third.json", "third", None);
        assert_refused(
            &append(&third, &[]),
            "uncommitted changes to tracked files (code.rs)",
        );
        let out = append(&third, &["--allow-dirty"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("(dirty)"));
        let entries = results::history::read(&history).expect("history");
        assert_eq!(entries.len(), 3);
        let head = Std::new("git")
            .arg("-C")
            .arg(r)
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git");
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(entries
            .iter()
            .all(|e| e.commit == head && e.commit_date.is_some()));
        assert_eq!(
            entries.iter().map(|e| e.dirty).collect::<Vec<_>>(),
            vec![false, false, true]
        );
    }

    #[test]
    fn the_trend_draws_from_the_committed_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(out) = trend(
            &root().join("results/history.jsonl"),
            dir.path(),
            &["--size", "640x360", "--metric", "ready"],
        ) else {
            return;
        };
        assert!(out.status.success(), "{}", stderr(&out));
        for backend in ["container", "runc"] {
            let png = dir
                .path()
                .join(format!("trend_{backend}_idle_start_to_ready_ms.png"));
            assert!(png.is_file(), "{}", png.display());
        }
        let md = std::fs::read_to_string(dir.path().join("trend.md")).expect("trend.md");
        assert!(md.contains("| ready | hc1 |"), "{md}");
    }
}
