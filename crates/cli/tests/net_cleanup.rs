//! A `bench run --workload http-outside`, a `bench run --workload http` (the self-test's load from
//! outside) and a `bench density --workload http` SIGKILLed mid-way leave network namespaces (and
//! the veths in them) behind; `bench cleanup` (without `--force`: only what dead harnesses left)
//! removes them and their records. Needs root, `ip`, `wrk` and the default image.

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Namespaces under /run/netns that harness `pid` made.
    fn namespaces_of(pid: u32) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n == &format!("cvbench-client-{pid}") || n.starts_with(&format!("cvbench-net-{pid}-"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records under /run/cvbench/net naming harness `pid`.
    fn records_of(pid: u32) -> Vec<String> {
        std::fs::read_dir("/run/cvbench/net")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path())
                            .is_ok_and(|t| t.lines().next() == Some(pid.to_string().as_str()))
                    })
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `bench <args>` (with `out` for its output), SIGKILLs it once `attached` of its
    /// namespaces exist, then checks `bench cleanup` removes every namespace, record and link.
    fn killed_then_cleaned(args: &[&str], attached: usize) {
        if testkit::skip_unless_root("network namespaces, bench cleanup") {
            return;
        }
        for tool in ["ip", "wrk"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                let package = if tool == "ip" { "iproute2" } else { "wrk" };
                testkit::skip(
                    testkit::Requirement::Package(package),
                    format!("{tool} is not installed"),
                );
                return;
            }
        }
        let bench = env!("CARGO_BIN_EXE_bench");
        let out = tempfile::tempdir().unwrap();
        let mut child = Command::new(bench)
            .args(args)
            .arg(out.path().join("r"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait until an instance is attached (its namespace exists), then kill the harness.
        let deadline = Instant::now() + Duration::from_secs(120);
        while namespaces_of(pid).len() < attached + 1 {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                if err.contains("image") || err.contains("unavailable") {
                    testkit::skip(
                        testkit::Requirement::Binaries,
                        format!("bench run could not start: {err}"),
                    );
                    return;
                }
                panic!("bench {args:?} ended ({status}) before an instance was attached: {err}");
            }
            assert!(Instant::now() < deadline, "no instance namespace within 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!namespaces_of(pid).is_empty(), "SIGKILL left nothing to clean up");
        assert!(!records_of(pid).is_empty(), "namespaces without records");

        let cleanup = Command::new(bench).arg("cleanup").output().unwrap();
        let report = String::from_utf8_lossy(&cleanup.stdout);
        assert!(
            namespaces_of(pid).is_empty(),
            "left after cleanup: {:?}\n{report}",
            namespaces_of(pid)
        );
        assert!(records_of(pid).is_empty(), "records left: {:?}", records_of(pid));
        // Which `bench cleanup` removed them may vary: the other tests here (and other harnesses
        // on the host) run their own cleanups of dead harnesses' leftovers concurrently.
        assert!(cleanup.status.success(), "{report}");
        // No veth of the harness's naming (`cvbench-<slot>`) in the host namespace: they lived only
        // in the namespaces that are gone. Other links named `cvbench-…` may exist meanwhile (the
        // VMM's tap tests make `cvbench-test-<n>` taps concurrently), so only that naming counts.
        let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let stray: Vec<String> = String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .filter(|name| {
                name.strip_prefix("cvbench-")
                    .is_some_and(|slot| !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        assert!(stray.is_empty(), "harness veths in the host namespace: {stray:?}");
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    /// `bench run` of `workload` on `backend`, long enough (50 runs) to be killed mid-way.
    fn killed_run_then_cleaned(backend: &str, workload: &str) {
        killed_then_cleaned(
            &[
                "run",
                "--backend",
                backend,
                "--workload",
                workload,
                "--runs",
                "50",
                "--warmup",
                "0",
                "--json",
            ],
            1,
        );
    }

    #[test]
    fn sigkill_mid_run_then_cleanup_leaves_no_namespace_or_link() {
        killed_run_then_cleaned("container", "http-outside");
    }

    #[test]
    fn sigkill_mid_http_run_then_cleanup_leaves_no_namespace_or_link() {
        killed_run_then_cleaned("runc", "http");
    }

    #[test]
    fn sigkill_mid_docker_http_run_then_cleanup_leaves_no_namespace_or_link() {
        killed_run_then_cleaned("docker", "http");
    }

    #[test]
    fn sigkill_mid_http_density_then_cleanup_leaves_no_namespace_or_link() {
        killed_then_cleaned(
            &[
                "density",
                "--backend",
                "container",
                "--workload",
                "http",
                "--max",
                "40",
                "--no-report",
                "--out",
            ],
            10,
        );
    }
}
