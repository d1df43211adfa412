//! Fleet flags end to end with the mock backend: `--label` lands in `host.dimensions`,
//! `--record-failures` exits 0 with the failures in the file, and `bench merge` of three runs gives
//! one file with three host sections (the pivot itself is tested in `report::pivot`); duplicates are refused with status 2.

#[cfg(test)]
mod tests {
    use assert_cmd::Command;
    use harness::results::ResultsFile;
    use predicates::prelude::*;
    use std::path::Path;

    fn bench() -> Command {
        let mut c = Command::cargo_bin("bench").unwrap();
        c.env_remove("CVBENCH_MOCK");
        c
    }

    fn run(dir: &Path, name: &str, extra: &[&str], mock: &str) -> assert_cmd::assert::Assert {
        let img = tempfile::tempdir().unwrap();
        bench()
            .env("CVBENCH_MOCK", mock)
            .args([
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "3",
                "--json",
            ])
            .arg(dir.join(name))
            .arg("--image")
            .arg(img.path())
            .args(extra)
            .assert()
    }

    #[test]
    fn labels_are_dimensions_and_record_failures_exits_zero() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), "a.json", &["--label", "site=a"], "").success();
        let a = ResultsFile::read(&dir.path().join("a.json")).unwrap();
        assert_eq!(a.host.dimensions["site"], "a");
        assert!(a.host.dimensions.contains_key("host_kernel"));
        assert!(!a.run_id.is_empty());

        // Without the flag failed runs exit 1; with it 0, and the file still says they failed.
        run(dir.path(), "f.json", &[], "fail=1").failure().code(1);
        run(dir.path(), "g.json", &["--record-failures"], "fail=1")
            .success()
            .stderr(predicate::str::contains("recorded in the results file"));
        let g = ResultsFile::read(&dir.path().join("g.json")).unwrap();
        assert_eq!(g.benchmarks[0].failures.len(), 1);

        // An unavailable backend: exit 0 and a skipped cell in the file.
        run(
            dir.path(),
            "u.json",
            &["--record-failures"],
            "unavailable=needs a unicorn",
        )
        .success();
        let u = ResultsFile::read(&dir.path().join("u.json")).unwrap();
        assert_eq!(u.benchmarks[0].skipped.as_deref(), Some("needs a unicorn"));

        run(dir.path(), "x.json", &["--label", "Site=a"], "")
            .failure()
            .code(2)
            .stderr(predicate::str::contains("label key \"Site\" is invalid"));
    }

    #[test]
    fn merge_of_three_runs_gives_one_file_and_a_per_host_report() {
        let dir = tempfile::tempdir().unwrap();
        for site in ["a", "b", "c"] {
            run(
                dir.path(),
                &format!("{site}.json"),
                &["--label", &format!("site={site}")],
                "",
            )
            .success();
        }
        let out = dir.path().join("merged");
        bench()
            .arg("merge")
            .args(["a", "b", "c"].map(|s| dir.path().join(format!("{s}.json"))))
            .arg("--out")
            .arg(&out)
            .args(["--by", "site", "--no-report"])
            .assert()
            .success()
            .stdout(predicate::str::contains("merged 3 hosts, 3 cells"));
        let merged = ResultsFile::read(&out.join("results.json")).unwrap();
        assert_eq!(merged.hosts.len(), 3);
        assert_eq!(merged.benchmarks.len(), 3);
        let sites: Vec<&str> = merged
            .hosts
            .iter()
            .map(|h| h.host.dimensions["site"].as_str())
            .collect();
        assert_eq!(sites, ["a", "b", "c"]);

        // The same file twice is refused, naming the flag that keeps both.
        bench()
            .arg("merge")
            .arg(dir.path().join("a.json"))
            .arg(dir.path().join("a.json"))
            .arg("--out")
            .arg(dir.path().join("dup"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--prefix-on-collision"));
    }
}
