//! `bench ab` end to end: both sides are this `bench` binary with the hidden mock backend, made
//! slower on one side through `--b-env CVBENCH_MOCK=...`. The mock is deterministic, so the verdicts
//! are too.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use assert_cmd::Command;
    use predicates::prelude::*;

    fn bench() -> Command {
        let mut c = Command::cargo_bin("bench").expect("bench binary");
        c.env_remove("CVBENCH_MOCK");
        c
    }

    /// `bench ab` of this binary against itself on the mock backend, idle workload.
    fn ab(a_mock: &str, b_mock: &str, trials: u32, out: &Path) -> Command {
        let bin = assert_cmd::cargo::cargo_bin("bench");
        let img = out.join("image");
        std::fs::create_dir_all(&img).expect("image dir");
        let mut c = bench();
        c.arg("ab")
            .arg("--a")
            .arg(&bin)
            .arg("--b")
            .arg(&bin)
            .args(["--a-env", &format!("CVBENCH_MOCK={a_mock}")])
            .args(["--b-env", &format!("CVBENCH_MOCK={b_mock}")])
            .args(["--backends", "mock", "--workloads", "idle", "--seed", "11"])
            // Five runs per invocation: the mock's ready time steps by `step-ms` from run to run,
            // so each side has a spread (a permutation test of medians cannot separate two sides
            // that are each a single repeated value: every relabelling ties the observed gap).
            .args(["--trials", &trials.to_string(), "--runs", "5"])
            .arg("--image")
            .arg(&img)
            .arg("--json")
            .arg(out.join("verdict.json"))
            .arg("--markdown")
            .arg(out.join("summary.md"));
        c
    }

    fn verdict(out: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("verdict.json")).expect("verdict")).expect("json")
    }

    #[test]
    fn a_a_passes_and_records_the_seeded_interleaved_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        ab("step-ms=0.05", "step-ms=0.05", 6, dir.path())
            .assert()
            .code(0)
            .stdout(predicate::str::contains("## cvbench A/B"))
            .stdout(predicate::str::contains("| mock/idle start_to_ready_ms |"));
        let v = verdict(dir.path());
        assert_eq!(v["verdict"], "ok");
        assert_eq!(v["seed"], 11);
        let order = v["order"].as_array().expect("order");
        assert_eq!(order.len(), 12, "A and B once per trial");
        assert_eq!(v["runs_per_trial"], 5);
        let sides: Vec<&str> = order.iter().filter_map(|s| s["side"].as_str()).collect();
        assert!(sides.chunks(2).all(|p| p[0] != p[1]), "{sides:?}");
        assert!(
            sides.chunks(2).any(|p| p[0] == "A") && sides.chunks(2).any(|p| p[0] == "B"),
            "both orders occur with seed 11: {sides:?}"
        );
        let ready = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["metric"] == "start_to_ready_ms")
            .cloned()
            .expect("ready row");
        assert_eq!(
            (ready["a_n"].as_u64(), ready["b_n"].as_u64()),
            (Some(30), Some(30))
        );
        assert_eq!(ready["verdict"], "ok");
        assert!(
            std::fs::read_to_string(dir.path().join("summary.md")).is_ok_and(|s| s.contains("cvbench A/B"))
        );
    }

    #[test]
    fn a_slower_b_is_a_regression_and_a_slight_one_is_within_noise() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Ready 2.5..2.7 ms (median 2.6) -> 2.75..2.95 (2.85): +9.6%, beyond the 5% noise.
        ab(
            "ready-ms=2.5;step-ms=0.05",
            "ready-ms=2.75;step-ms=0.05",
            8,
            dir.path(),
        )
        .assert()
        .code(1)
        .stdout(predicate::str::contains("**regression**"))
        .stdout(predicate::str::contains("+9.6%"));
        assert_eq!(verdict(dir.path())["verdict"], "regression");
        // Median 2.6 -> 2.68 ms: +3.1%, inside the noise band whatever its p-value.
        ab(
            "ready-ms=2.5;step-ms=0.05",
            "ready-ms=2.58;step-ms=0.05",
            8,
            dir.path(),
        )
        .assert()
        .code(0)
        .stdout(predicate::str::contains("+3.1%"))
        .stdout(predicate::str::contains("**regression**").not());
        // Faster B: an improvement, exit 0.
        ab(
            "ready-ms=2.75;step-ms=0.05",
            "ready-ms=2.5;step-ms=0.05",
            8,
            dir.path(),
        )
        .assert()
        .code(0)
        .stdout(predicate::str::contains("improvement"));
    }

    #[test]
    fn failed_trials_fail_the_gate_and_bad_sides_are_usage_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        ab("", "unavailable=broken build", 5, dir.path())
            .assert()
            .code(1)
            .stdout(predicate::str::contains("### Failed trials"))
            .stdout(predicate::str::contains("broken build"));
        assert_eq!(verdict(dir.path())["verdict"], "failed trials");
        bench()
            .args(["ab", "--a", "/nonexistent/bench", "--b", "/nonexistent/bench"])
            .arg("--repo")
            .arg(dir.path())
            .assert()
            .code(2)
            .stderr(predicate::str::contains("neither a file nor a git revision"));
        bench()
            .args(["ab", "--a", "x", "--b", "y", "--a-env", "novalue"])
            .assert()
            .code(2);
    }
}
