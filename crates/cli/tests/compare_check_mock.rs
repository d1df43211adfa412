//! `bench compare`, `density`, `report`, `check` and `baseline` end to end with the hidden mock
//! backend: deterministic, no root, no image needed. Exit statuses are part of the contract.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use assert_cmd::Command;
    use predicates::prelude::*;

    fn bench(mock: &str) -> Command {
        let mut c = Command::cargo_bin("bench").expect("bench binary");
        c.env("CVBENCH_MOCK", mock);
        c
    }

    /// `bench compare --backends mock` into `out`, without the (slow, debug-build) report.
    fn compare(mock: &str, out: &Path, workloads: &str, runs: u32) -> PathBuf {
        compare_cmd(mock, out, workloads, runs)
            .assert()
            .success()
            .stdout(predicate::str::contains("mock"));
        out.join("results.json")
    }

    /// The command line of [`compare`], to be run and judged by the caller.
    fn compare_cmd(mock: &str, out: &Path, workloads: &str, runs: u32) -> Command {
        let img = tempfile::tempdir().expect("tempdir").keep();
        let mut c = bench(mock);
        c.args([
            "compare",
            "--backends",
            "mock",
            "--workloads",
            workloads,
            "--warmup",
            "1",
            "--no-report",
        ])
        .args(["--runs", &runs.to_string()])
        .arg("--out")
        .arg(out)
        .arg("--image")
        .arg(&img);
        c
    }

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
    }

    #[test]
    fn a_workload_named_twice_is_run_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let results = compare("", &dir.path().join("cmp"), "idle,oltp,idle", 1);
        let v = json(&results);
        let workloads: Vec<&str> = v["benchmarks"]
            .as_array()
            .expect("benchmarks")
            .iter()
            .filter_map(|c| c["workload"].as_str())
            .collect();
        assert_eq!(workloads, ["idle", "oltp"]);
    }

    #[test]
    fn compare_writes_results_and_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cmp");
        bench("")
            .args([
                "compare",
                "--backends",
                "mock",
                "--workloads",
                "idle",
                "--runs",
                "3",
                "--warmup",
                "0",
            ])
            .args(["--size", "640x360", "--density", "2"])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .assert()
            .success()
            .stdout(
                predicate::str::contains("start")
                    .not()
                    .or(predicate::str::contains("mock")),
            )
            .stdout(predicate::str::contains("density/idle"));
        let v = json(&out.join("results.json"));
        assert_eq!(v["command"], "compare");
        assert_eq!(v["partial"], false);
        assert_eq!(v["benchmarks"][0]["runs"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["density"][0]["points"].as_array().map(Vec::len), Some(2));
        let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
        assert!(md.contains("Host: ") && md.contains("| 3 |"), "{md}");
        assert!(out.join("report.html").is_file() && out.join("startup_cdf_idle.png").is_file());
    }

    #[test]
    fn an_unavailable_backend_is_reported_as_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cmp");
        bench("unavailable=no KVM on this host")
            .args([
                "compare",
                "--backends",
                "mock",
                "--workloads",
                "idle,http",
                "--runs",
                "2",
                "--no-report",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .assert()
            .code(1)
            .stdout(predicate::str::contains("skipped: no KVM on this host"))
            .stderr(predicate::str::contains("no run completed"));
        let v = json(&out.join("results.json"));
        let cells = v["benchmarks"].as_array().cloned().unwrap_or_default();
        assert_eq!(cells.len(), 2, "one skipped cell per workload");
        assert!(cells.iter().all(|c| c["skipped"] == "no KVM on this host"));
    }

    #[test]
    fn unknown_backends_and_bad_flags_are_usage_errors() {
        bench("")
            .args(["compare", "--backends", "lxc"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("lxc"));
        bench("")
            .args(["compare", "--workloads", "nginx"])
            .assert()
            .code(2);
        bench("")
            .args(["report", "/nonexistent/cvbench"])
            .assert()
            .code(2);
        bench("").args(["compare", "--size", "big"]).assert().code(2);
    }

    #[test]
    fn check_exit_codes_follow_the_verdicts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = compare("", &dir.path().join("base"), "idle", 6);
        let same = compare("", &dir.path().join("same"), "idle", 6);
        let slow = compare("ready-ms=5;exec-ms=2.5", &dir.path().join("slow"), "idle", 6);
        let tiny = compare("ready-ms=5;exec-ms=2.5", &dir.path().join("tiny"), "idle", 3);
        let other = compare("", &dir.path().join("other"), "oltp", 6);
        let check = |current: &Path| {
            let mut c = bench("");
            c.arg("check")
                .arg("--baseline")
                .arg(&base)
                .arg("--current")
                .arg(current);
            c
        };
        check(&same)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("| mock/idle start_to_ready_ms |"))
            .stdout(predicate::str::contains("| ok |"));
        let summary = dir.path().join("summary.md");
        check(&slow)
            .arg("--markdown")
            .arg(&summary)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("**regression**"))
            // Mock ready times 5.0 + 0.25 (k mod 5) ms vs 2.5 + ...: medians 5.375 / 2.875.
            .stdout(predicate::str::contains("+87.0%"));
        assert!(std::fs::read_to_string(&summary).is_ok_and(|s| s.contains("regression")));
        // 2x slower, but only 3 runs: no false alarm.
        check(&tiny)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("not enough samples"));
        // A wide noise band absorbs the doubling.
        check(&slow).args(["--noise", "150%"]).assert().code(2);
        check(&slow).args(["--noise", "99%"]).assert().code(0);
        // Unusable input.
        check(&other)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no startup metric"));
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{not json").expect("write");
        check(&garbage).assert().code(2);
        check(&dir.path().join("missing.json")).assert().code(2);
        let mut v = json(&same);
        v["schema_version"] = serde_json::json!(999);
        let future = dir.path().join("future.json");
        std::fs::write(&future, v.to_string()).expect("write");
        check(&future)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("999"));
    }

    #[test]
    fn baselines_are_saved_under_results_baselines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let results = compare("", &dir.path().join("cmp"), "idle", 2);
        bench("")
            .current_dir(dir.path())
            .args(["baseline", "save", "main", "--from"])
            .arg(&results)
            .assert()
            .success();
        let saved = dir.path().join("results/baselines/main.json");
        assert_eq!(json(&saved)["benchmarks"], json(&results)["benchmarks"]);
        bench("")
            .current_dir(dir.path())
            .args(["baseline", "list"])
            .assert()
            .success()
            .stdout("main\n");
        bench("")
            .current_dir(dir.path())
            .args(["baseline", "save", "../evil", "--from"])
            .arg(&results)
            .assert()
            .code(2);
        bench("")
            .current_dir(dir.path())
            .args(["baseline", "save", "x", "--from", "nope.json"])
            .assert()
            .code(2);
    }

    #[test]
    fn density_stops_at_max_and_writes_the_curve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("density");
        bench("")
            .args([
                "density",
                "--backend",
                "mock",
                "--max",
                "3",
                "--mem-floor",
                "1",
                "--no-report",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .assert()
            .success()
            .stdout(predicate::str::contains("3 instances").and(predicate::str::contains("max")));
        let v = json(&out.join("results.json"));
        assert_eq!(v["command"], "density");
        assert_eq!(v["density"][0]["points"].as_array().map(Vec::len), Some(3));
        bench("unavailable=nope")
            .args(["density", "--backend", "mock", "--no-report"])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .assert()
            .code(1);
    }

    #[test]
    fn ctrl_c_keeps_partial_results_and_exits_130() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cmp");
        // Every launch waits out a 200 ms ready timeout and fails; three failures in a row (600 ms)
        // would end the comparison, so the signal is sent as soon as the results file appears.
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("bench"))
            .env("CVBENCH_MOCK", "never-ready")
            .args([
                "compare",
                "--backends",
                "mock",
                "--workloads",
                "idle",
                "--runs",
                "40",
                "--warmup",
                "0",
            ])
            .args(["--ready-timeout", "200ms", "--no-report"])
            .arg("--out")
            .arg(&out)
            .arg("--image")
            .arg(img.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn bench");
        // The results file appears once the handler is installed and the backend is set up.
        let results = out.join("results.json");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !results.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            results.exists(),
            "bench compare never wrote {}",
            results.display()
        );
        let killed = std::process::Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status();
        assert!(killed.is_ok_and(|s| s.success()));
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(130));
        let v = json(&results);
        assert_eq!(v["partial"], true);
        let failures = v["benchmarks"][0]["failures"].as_array().map_or(0, Vec::len);
        assert!(
            (1..40).contains(&failures),
            "{failures} runs recorded before the stop"
        );
    }

    #[test]
    fn a_compare_with_failed_runs_exits_1_and_names_the_cell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cmp");
        // Launch 0 (the warm-up) works, 1-3 fail: given up after three in a row.
        compare_cmd("fail=1,2,3", &out, "idle", 5)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("mock"))
            .stderr(predicate::str::contains(
                "bench: runs failed in 1 of 1 cells: mock/idle",
            ))
            .stderr(predicate::str::contains(
                "gave up after 3 consecutive failed runs",
            ));
        let v = json(&out.join("results.json"));
        assert_eq!(v["partial"], true);
    }

    #[test]
    fn check_fails_the_gate_on_cells_failed_or_missing_in_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = compare("", &dir.path().join("base"), "idle,oltp", 6);
        // Rounds run workload by workload: idle takes launches 0-6, oltp 7-13 and fails them all.
        let broken_dir = dir.path().join("broken");
        compare_cmd("fail=7,8,9,10,11,12,13", &broken_dir, "idle,oltp", 6)
            .assert()
            .code(1);
        let broken = broken_dir.join("results.json");
        let idle_only = compare("", &dir.path().join("idle"), "idle", 6);
        let check = |current: &Path| {
            let mut c = bench("");
            c.arg("check")
                .arg("--baseline")
                .arg(&base)
                .arg("--current")
                .arg(current);
            c
        };
        check(&broken)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("| mock/oltp start_to_ready_ms |"))
            .stdout(predicate::str::contains("**failed in current**"))
            .stderr(predicate::str::contains("mock/oltp (failed in current)"));
        check(&idle_only)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("**missing in current**"))
            .stderr(predicate::str::contains("mock/oltp (missing in current)"));
        let mut v = json(&idle_only);
        v["benchmarks"][0]["skipped"] = serde_json::json!("no KVM");
        v["benchmarks"][0]["runs"] = serde_json::json!([]);
        let skipped = dir.path().join("skipped.json");
        std::fs::write(&skipped, v.to_string()).expect("write");
        check(&skipped)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("**skipped in current**: no KVM"));
    }

    #[test]
    fn partial_or_failed_results_are_not_saved_as_baselines_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = compare("", &dir.path().join("good"), "idle", 2);
        let failed_dir = dir.path().join("failed");
        compare_cmd("fail=1", &failed_dir, "idle", 3).assert().code(1);
        let failed = failed_dir.join("results.json");
        let save = |from: &Path| {
            let mut c = bench("");
            c.current_dir(dir.path())
                .args(["baseline", "save", "main", "--from"])
                .arg(from);
            c
        };
        let saved = dir.path().join("results/baselines/main.json");
        save(&failed)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("failed runs in mock/idle"))
            .stderr(predicate::str::contains("--force"));
        assert!(!saved.exists());
        let mut v = json(&good);
        v["partial"] = serde_json::json!(true);
        let partial = dir.path().join("partial.json");
        std::fs::write(&partial, v.to_string()).expect("write");
        save(&partial)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("partial"));
        save(&good).assert().success();
        // An existing baseline is kept unless forced.
        save(&failed).arg("--force").assert().success();
        assert_eq!(json(&saved)["benchmarks"], json(&failed)["benchmarks"]);
        save(&good)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("already exists"));
        assert_eq!(json(&saved)["benchmarks"], json(&failed)["benchmarks"]);
        save(&good).arg("--force").assert().success();
        assert_eq!(json(&saved)["benchmarks"], json(&good)["benchmarks"]);
    }

    #[test]
    fn check_refuses_files_from_another_host_class_or_with_other_labels_and_says_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = compare("", &dir.path().join("base"), "idle", 6);
        let mut v = json(&base);
        v["host"]["kernel"] = serde_json::json!("9.9.9-other");
        v["host"]["hostname"] = serde_json::json!("another-runner-of-the-same-class");
        let other_kernel = dir.path().join("other-kernel.json");
        std::fs::write(&other_kernel, v.to_string()).expect("write");
        let mut v = json(&base);
        v["benchmarks"][0]["labels"]["mock"] = serde_json::json!("false");
        let other_label = dir.path().join("other-label.json");
        std::fs::write(&other_label, v.to_string()).expect("write");
        let mut v = json(&base);
        v["host"]["hostname"] = serde_json::json!("another-runner-of-the-same-class");
        let other_runner = dir.path().join("other-runner.json");
        std::fs::write(&other_runner, v.to_string()).expect("write");
        let check = |current: &Path| {
            let mut c = bench("");
            c.arg("check")
                .arg("--baseline")
                .arg(&base)
                .arg("--current")
                .arg(current);
            c
        };
        check(&other_kernel)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("not comparable"))
            .stderr(predicate::str::contains("host.kernel"))
            .stderr(predicate::str::contains("9.9.9-other"));
        check(&other_label)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("mock/idle: labels.mock"));
        check(&other_kernel)
            .arg("--allow-mismatch")
            .assert()
            .code(0)
            .stdout(predicate::str::contains("### Not comparable"))
            .stdout(predicate::str::contains("| (host) | host.kernel |"));
        // Only the hostname differs: the same host class, compared without comment.
        check(&other_runner)
            .assert()
            .code(0)
            .stdout(predicate::str::contains("Not comparable").not());
    }
}
