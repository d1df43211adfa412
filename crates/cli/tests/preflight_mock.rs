//! Output paths, fonts and flag values are checked before the first launch: a bad one is a one-line
//! usage error (status 2) and nothing runs. With the hidden mock backend: no root, no image.

#[cfg(test)]
mod tests {
    use std::path::Path;

    use assert_cmd::Command;

    fn bench() -> Command {
        let mut c = Command::cargo_bin("bench").unwrap();
        c.env_remove("CVBENCH_MOCK");
        c
    }

    /// Runs `bench args...` and checks: status 2, nothing on stdout (no table: no benchmark ran), one
    /// stderr line containing every needle and "os error" at most once. Returns the line.
    fn refused_up_front(args: &[&str], needles: &[&str]) -> String {
        let out = bench().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        for needle in needles {
            assert!(lines[0].contains(needle), "{args:?}: {stderr}");
        }
        assert!(lines[0].matches("os error").count() <= 1, "{stderr}");
        assert!(!lines[0].contains("run 1"), "{stderr}");
        lines[0].to_string()
    }

    #[test]
    fn run_refuses_an_unwritable_json_before_launching() {
        let img = tempfile::tempdir().unwrap();
        let image = img.path().to_str().unwrap();
        let base = [
            "run",
            "--backend",
            "mock",
            "--workload",
            "idle",
            "--runs",
            "2",
            "--image",
            image,
        ];
        if Path::new("/proc/version").exists() {
            let line = refused_up_front(&[&base[..], &["--json", "/proc/version"]].concat(), &["--json"]);
            assert!(!line.contains("No such file"), "{line}");
        }
        let missing = img.path().join("nonexistent/dir/x.json");
        let missing = missing.to_str().unwrap();
        refused_up_front(&[&base[..], &["--json", missing]].concat(), &["does not exist"]);
        assert!(
            !img.path().join("nonexistent").exists(),
            "the directory was created"
        );
    }

    #[test]
    fn compare_and_density_refuse_a_file_as_out_dir() {
        let img = tempfile::tempdir().unwrap();
        let image = img.path().to_str().unwrap();
        let file = img.path().join("hostname");
        std::fs::write(&file, "x").unwrap();
        let file = file.to_str().unwrap();
        refused_up_front(
            &[
                "compare",
                "--backends",
                "mock",
                "--workloads",
                "idle",
                "--runs",
                "1",
                "--no-report",
                "--image",
                image,
                "--out",
                file,
            ],
            &["--out", "not a directory"],
        );
        refused_up_front(
            &[
                "density",
                "--backend",
                "mock",
                "--max",
                "2",
                "--no-report",
                "--image",
                image,
                "--out",
                file,
            ],
            &["--out", "not a directory"],
        );
    }

    #[test]
    fn a_missing_font_is_refused_before_the_benchmark() {
        let img = tempfile::tempdir().unwrap();
        let out = img.path().join("out");
        refused_up_front(
            &[
                "density",
                "--backend",
                "mock",
                "--max",
                "2",
                "--image",
                img.path().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--font",
                "/nonexistent",
            ],
            &["--font", "/nonexistent"],
        );
        assert!(!out.join("results.json").exists());
    }

    #[test]
    fn check_refuses_a_markdown_file_in_proc_before_reading_anything() {
        if !Path::new("/proc/version").exists() {
            println!("skipped: no /proc");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        let missing = missing.to_str().unwrap();
        refused_up_front(
            &[
                "check",
                "--baseline",
                missing,
                "--current",
                missing,
                "--markdown",
                "/proc/x.md",
            ],
            &["--markdown", "procfs"],
        );
    }

    #[test]
    fn more_warm_up_than_measured_runs_is_refused() {
        let img = tempfile::tempdir().unwrap();
        refused_up_front(
            &[
                "run",
                "--backend",
                "mock",
                "--workload",
                "idle",
                "--runs",
                "2",
                "--warmup",
                "5",
                "--image",
                img.path().to_str().unwrap(),
            ],
            &["--warmup 5"],
        );
    }

    #[test]
    fn a_second_density_on_the_same_out_is_refused_while_the_first_holds_it() {
        let img = tempfile::tempdir().unwrap();
        let out = img.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // Hold the lock the way a running bench does: flock on DIR/.cvbench.lock.
        let lock_file = std::fs::File::create(out.join(".cvbench.lock")).unwrap();
        let _held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        refused_up_front(
            &[
                "density",
                "--backend",
                "mock",
                "--max",
                "1",
                "--no-report",
                "--image",
                img.path().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &["another bench", "--out"],
        );
        assert!(!out.join("results.json").exists());
    }

    #[test]
    fn microvm_probe_refuses_memory_it_cannot_boot_and_an_image_it_would_ignore() {
        let img = tempfile::tempdir().unwrap();
        let image = img.path().to_str().unwrap();
        for memory in ["4G", "1k"] {
            refused_up_front(
                &[
                    "run",
                    "--backend",
                    "microvm-probe",
                    "--workload",
                    "idle",
                    "--memory",
                    memory,
                ],
                &["--memory", "microvm-probe", "MiB"],
            );
        }
        refused_up_front(
            &[
                "density",
                "--backend",
                "microvm-probe",
                "--memory",
                "4G",
                "--out",
                image,
            ],
            &["--memory"],
        );
        refused_up_front(
            &[
                "run",
                "--backend",
                "microvm-probe",
                "--workload",
                "idle",
                "--image",
                image,
            ],
            &["--image", "does not apply", "probe"],
        );
    }

    #[test]
    fn a_bad_flag_creates_no_output_directory() {
        let cwd = tempfile::tempdir().unwrap();
        let out = bench()
            .current_dir(cwd.path())
            .args(["compare", "--backends", "lxc", "--workloads", "idle"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let out = bench()
            .current_dir(cwd.path())
            .args(["density", "--backend", "microvm-probe", "--memory", "4G"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
