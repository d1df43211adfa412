//! `bench` end to end with the hidden mock backend: deterministic, no root, no image needed.

#[cfg(test)]
mod tests {
    use assert_cmd::Command;
    use predicates::prelude::*;

    fn bench() -> Command {
        let mut c = Command::cargo_bin("bench").unwrap();
        c.env_remove("CVBENCH_MOCK");
        c
    }

    fn image() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn run_prints_a_table_and_writes_valid_json() {
        let img = image();
        let out = tempfile::tempdir().unwrap();
        // The directory of --json must exist (a mistyped path must not grow directories).
        std::fs::create_dir(out.path().join("r")).unwrap();
        let json = out.path().join("r/results.json");
        bench()
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "oltp",
                "--runs",
                "5",
                "--warmup",
                "2",
                "--json",
            ])
            .arg(&json)
            .arg("--image")
            .arg(img.path())
            .assert()
            .success()
            .stdout(predicate::str::contains(
                "mock · oltp · 5 measured runs (2 warm-up)",
            ))
            .stdout(predicate::str::contains("start_to_ready_ms"))
            .stdout(predicate::str::contains("workload.ops_per_s"));

        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["schema_version"], harness::results::SCHEMA_VERSION);
        assert_eq!(v["command"], "run");
        assert!(v["host"]["cores"].as_u64().unwrap() >= 1);
        assert!(v["host"]["kernel"].as_str().is_some_and(|k| !k.is_empty()));
        assert_eq!(v["partial"], false);
        let b = &v["benchmarks"][0];
        assert_eq!(b["backend"], "mock");
        assert_eq!(b["runs"].as_array().unwrap().len(), 7);
        assert_eq!(b["summary"]["start_to_ready_ms"]["n"], 5);
        // The file is a readable results file.
        harness::results::ResultsFile::read(&json).unwrap();
    }

    #[test]
    fn some_failed_runs_are_recorded_and_the_run_exits_1_naming_the_cell() {
        let img = image();
        let json = img.path().join("out.json");
        bench()
            .env("CVBENCH_MOCK", "fail=1,2")
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "3",
                "--warmup",
                "0",
                "--json",
            ])
            .arg(&json)
            .arg("--image")
            .arg(img.path())
            .assert()
            .code(1)
            .stdout(predicate::str::contains("mock · idle · 1 measured runs"))
            .stderr(predicate::str::contains("run 2/3 failed"))
            .stderr(predicate::str::contains(
                "bench: runs failed in 1 of 1 cells: mock/idle (2 failures, 1 measured runs",
            ));
        let f = harness::results::ResultsFile::read(&json).unwrap();
        assert_eq!(f.benchmarks[0].failures.len(), 2);
        assert_eq!(f.benchmarks[0].runs.len(), 1);
        assert!(f.partial, "fewer measured runs than asked for");
    }

    fn assert_one_line_error(stderr: &[u8], needle: &str) {
        let text = String::from_utf8_lossy(stderr);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("bench: ")).collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert!(errors[0].contains(needle), "{text}");
    }

    #[test]
    fn malformed_memory_is_a_usage_error() {
        let out = bench()
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--memory",
                "10x",
            ])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "\"10x\"");
    }

    #[test]
    fn unknown_workload_and_backend_are_usage_errors() {
        let out = bench()
            .args(["run", "--backend", "mock", "--workload", "nginx"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "nginx");
        let out = bench()
            .args(["run", "--backend", "lxc", "--workload", "idle"])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "lxc");
    }

    #[test]
    fn zero_runs_is_a_usage_error() {
        bench()
            .args(["run", "--backend", "mock", "--workload", "idle", "--runs", "0"])
            .assert()
            .code(2);
    }

    #[test]
    fn a_missing_image_is_a_usage_error() {
        let out = bench()
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--image",
                "/nonexistent/cvbench-image",
            ])
            .assert()
            .code(2)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "/nonexistent/cvbench-image");
    }

    #[test]
    fn never_ready_fails_with_one_line_and_status_1() {
        let img = image();
        let out = bench()
            .env("CVBENCH_MOCK", "never-ready")
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "2",
                "--warmup",
                "0",
            ])
            .args(["--ready-timeout", "20ms", "--image"])
            .arg(img.path())
            .assert()
            .code(1)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "not ready after");
    }

    #[test]
    fn an_unavailable_backend_fails_with_its_reason() {
        let img = image();
        let out = bench()
            .env("CVBENCH_MOCK", "unavailable=needs a unicorn")
            .args(["run", "--backend", "mock", "--workload", "idle", "--image"])
            .arg(img.path())
            .assert()
            .code(1)
            .get_output()
            .clone();
        assert_one_line_error(&out.stderr, "needs a unicorn");
    }

    #[test]
    fn help_lists_the_subcommands() {
        bench()
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("run").and(predicate::str::contains("cleanup")));
    }

    #[test]
    fn running_runc_without_root_fails_with_status_1() {
        let bin = assert_cmd::cargo::cargo_bin("bench");
        let args = ["run", "--backend", "runc", "--workload", "idle", "--image", "/"];
        let mut cmd = if nix_is_root() {
            // Drop to nobody to see what a non-root user gets.
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = cmd.args(args).assert().code(1).get_output().clone();
        assert_one_line_error(&out.stderr, "needs root");
    }

    fn nix_is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    }

    #[test]
    fn sigint_stops_cleanly_and_keeps_partial_results() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("partial.json");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("bench"))
            .env("CVBENCH_MOCK", "launch-sleep-ms=20")
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "100000",
                "--warmup",
                "0",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--image")
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_a_run(&json);
        let status = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        assert!(String::from_utf8_lossy(&out.stdout).contains("start_to_ready_ms"));
        let f = harness::results::ResultsFile::read(&json).unwrap();
        assert!(f.partial);
        let runs = f.benchmarks[0].runs.len();
        assert!((1..100_000).contains(&runs), "{runs}");
    }

    /// Waits until the results file at `json` holds at least one run.
    fn wait_for_a_run(json: &std::path::Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let runs = harness::results::ResultsFile::read(json)
                .ok()
                .and_then(|f| f.benchmarks.first().map(|c| c.runs.len()))
                .unwrap_or(0);
            if runs > 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no run in {} after 30 s", json.display());
    }

    /// `bench run --backend mock` of many slow runs, writing `json`.
    /// A `bench` child that is killed when the test ends, also when an assertion fails first.
    struct Running(std::process::Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn endless_run(json: &std::path::Path, image: &std::path::Path) -> Running {
        endless_run_with(json, image, 20)
    }

    fn endless_run_with(json: &std::path::Path, image: &std::path::Path, launch_ms: u32) -> Running {
        Running(
            std::process::Command::new(assert_cmd::cargo::cargo_bin("bench"))
                .env("CVBENCH_MOCK", format!("launch-sleep-ms={launch_ms}"))
                .args([
                    "run",
                    "--backend",
                    "mock",
                    "--workload",
                    "idle",
                    "--runs",
                    "100000",
                    "--warmup",
                    "0",
                ])
                .arg("--json")
                .arg(json)
                .arg("--image")
                .arg(image)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    #[test]
    fn sigterm_stops_cleanly_and_exits_143() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r.json");
        let mut child = endless_run(&json, dir.path());
        wait_for_a_run(&json);
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(child.0.wait().unwrap().code(), Some(143));
        assert!(harness::results::ResultsFile::read(&json).unwrap().partial);
    }

    #[test]
    fn a_results_file_read_mid_run_or_after_sigkill_says_partial() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r.json");
        let mut child = endless_run(&json, dir.path());
        wait_for_a_run(&json);
        // Mid-run.
        assert!(harness::results::ResultsFile::read(&json).unwrap().partial);
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let f = harness::results::ResultsFile::read(&json).unwrap();
        assert!(f.partial, "a killed run's file must not claim to be complete");
        assert!(!f.benchmarks[0].runs.is_empty());
    }

    #[test]
    fn two_signals_exit_with_the_signal_s_status_and_leave_a_partial_file() {
        for (signal, status) in [("INT", 130), ("TERM", 143)] {
            let dir = tempfile::tempdir().unwrap();
            let json = dir.path().join("r.json");
            // Runs of 400 ms: the second signal lands while a run is still going.
            let mut child = endless_run_with(&json, dir.path(), 400);
            wait_for_a_run(&json);
            for _ in 0..2 {
                let sent = std::process::Command::new("kill")
                    .args([format!("-{signal}"), child.0.id().to_string()])
                    .status()
                    .unwrap();
                assert!(sent.success());
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert_eq!(child.0.wait().unwrap().code(), Some(status), "SIG{signal}");
            let f = harness::results::ResultsFile::read(&json).unwrap();
            assert!(
                f.partial,
                "SIG{signal} twice: the file left behind must say partial"
            );
        }
    }

    /// A tmpfs of `size` mounted at `dir` (root only), unmounted on drop.
    struct TinyDisk(std::path::PathBuf);

    impl TinyDisk {
        fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "cvbench-test-full"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| TinyDisk(dir.to_path_buf()))
        }
    }

    impl Drop for TinyDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    #[test]
    fn a_full_disk_leaves_a_results_file_that_says_partial() {
        if testkit::skip_unless_root("mounting a small tmpfs") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        let Some(disk) = TinyDisk::mount(&full, "12k") else {
            testkit::skip(
                testkit::Requirement::HostFeature("tmpfs"),
                "cannot mount a tmpfs here",
            );
            return;
        };
        let json = full.join("r.json");
        // 20 runs make about 10 KiB of JSON, and the old file and its replacement coexist while
        // one is written: the disk fills within the first 25 runs.
        let out = bench()
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "25",
                "--warmup",
                "0",
            ])
            .arg("--json")
            .arg(&json)
            .arg("--image")
            .arg(dir.path())
            .output()
            .unwrap();
        let left = harness::results::ResultsFile::read(&json);
        drop(disk);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No space left"),
            "{out:?}"
        );
        let left = left.unwrap();
        assert!(!left.benchmarks[0].runs.is_empty());
        assert!(left.partial, "the file a full disk left behind must say partial");
    }
}
