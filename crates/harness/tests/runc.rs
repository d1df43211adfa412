//! The runc backend against the real runc and the real default image: phases, probes, workload
//! results, failures before READY, and that every run leaves nothing behind.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use harness::backends::runc::RuncBackend;
    use harness::metrics;
    use harness::runner::{run_once, RunOptions};
    use harness::{Backend, BackendError, LaunchSpec};
    use workload::{WorkloadKind, WorkloadSpec};

    /// The backend rooted in a temp dir, and the default image; `None` (after printing why) when
    /// this host cannot run runc.
    fn setup() -> Option<(tempfile::TempDir, RuncBackend, PathBuf)> {
        if testkit::skip_unless_root("runc") {
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let backend = RuncBackend::with_root(root.path());
        if let Err(u) = backend.check_host() {
            // As root, what is left to lack is runc itself (or overlayfs, which any Debian has).
            testkit::skip(testkit::Requirement::Package("runc"), u);
            return None;
        }
        let image = match rootfs::default_image(&root.path().join("cache")) {
            Ok(image) => image,
            Err(e) => {
                testkit::skip(testkit::Requirement::Binaries, format!("no default image: {e}"));
                return None;
            }
        };
        Some((root, backend, image.dir))
    }

    fn opts() -> RunOptions {
        RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(20),
            ..RunOptions::default()
        }
    }

    /// Nothing of instance `name` remains: no bundle, no runc state, no mount, no cgroup.
    fn assert_gone(root: &Path, name: &str) {
        assert!(
            !root.join("runc").join(name).exists(),
            "bundle of {name} left behind"
        );
        assert!(
            !root.join("runc-state").join(name).exists(),
            "runc state of {name} left behind"
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(name), "mount of {name} left behind");
        for ctrl in ["memory", "pids", "cpu", ""] {
            let cg = Path::new("/sys/fs/cgroup").join(ctrl).join(name);
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
    }

    #[test]
    fn idle_is_ready_measured_and_torn_down() {
        let Some((root, backend, image)) = setup() else {
            return;
        };
        let shared = backend.prepare(&image).unwrap();
        assert!(shared.bytes > 0);
        let name = format!("cvbench-runc-idle-{}-900", std::process::id());
        let o = RunOptions {
            memory_limit_bytes: Some(64 << 20),
            pids_limit: Some(32),
            cpu_limit: Some(0.5),
            ..opts()
        };
        let m = run_once(&backend, &image, &WorkloadSpec::Idle, &o, &name).unwrap();
        assert!(m.metrics[metrics::START_TO_READY_MS] > 0.0);
        assert!(m.metrics[metrics::PSS_BYTES] > 0.0);
        assert!(m.metrics[metrics::RUNTIME_PSS_BYTES] > 0.0);
        assert!(m.metrics.contains_key(metrics::CGROUP_MEMORY_BYTES));
        assert!(m.metrics.contains_key(metrics::INSTANCE_DISK_BYTES));
        assert!(m.workload_result.is_none());
        assert_gone(root.path(), &name);
    }

    #[test]
    fn oltp_reports_its_figures_and_writes_only_to_the_upper_dir() {
        let Some((root, backend, image)) = setup() else {
            return;
        };
        backend.prepare(&image).unwrap();
        let before = rootfs::allocated_bytes(&image).unwrap();
        let name = format!("cvbench-runc-oltp-{}-901", std::process::id());
        let spec = WorkloadSpec::Oltp {
            rows: 1000,
            transactions: 20,
        };
        let m = run_once(&backend, &image, &spec, &opts(), &name).unwrap();
        assert!(m.metrics[metrics::WORKLOAD_TPS] > 0.0, "{:?}", m.metrics);
        assert_eq!(m.workload_result.as_ref().unwrap()["workload"], "oltp");
        // The database went to the upper dir, not into the shared image.
        assert!(
            m.metrics[metrics::INSTANCE_DISK_BYTES] > 4096.0,
            "{:?}",
            m.metrics
        );
        assert_eq!(rootfs::allocated_bytes(&image).unwrap(), before);
        assert_gone(root.path(), &name);
    }

    #[test]
    fn a_workload_that_cannot_start_fails_before_ready_and_leaves_nothing() {
        let Some((root, backend, _)) = setup() else { return };
        // An image whose workload is a static program that exits 1 at once, without READY:
        // busybox-static run as `cvbench-workload` finds no such applet. (A dynamically linked
        // workload is refused earlier, by prepare: `rootfs::exec_problem`.)
        let busybox = std::path::Path::new("/bin/busybox");
        if !busybox.exists() {
            testkit::skip(
                testkit::Requirement::Package("busybox-static"),
                "/bin/busybox is missing",
            );
            return;
        }
        let image = root.path().join("broken-image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::copy(busybox, image.join("bin/cvbench-workload")).unwrap();
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-runc-idle-{}-902", std::process::id());
        let err = run_once(&backend, &image, &WorkloadSpec::Idle, &opts(), &name).unwrap_err();
        assert!(matches!(err, BackendError::ExitedBeforeReady { .. }), "{err}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        assert_gone(root.path(), &name);
    }

    #[test]
    fn a_self_ending_workload_without_a_result_line_fails_the_run() {
        let Some((root, backend, _)) = setup() else { return };
        // The container crate's static test helper as `cvbench-workload http`: READY, then exit 0.
        let testproc = match rootfs::locate_binary("cvbench-testproc") {
            Ok(p) => p,
            Err(e) => {
                testkit::skip(testkit::Requirement::Binaries, e);
                return;
            }
        };
        let image = root.path().join("no-result-image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::copy(&testproc, image.join("bin/cvbench-workload")).unwrap();
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-runc-http-{}-905", std::process::id());
        // Launched and finished directly: the helper exits right after READY, before any probe.
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: image.clone(),
            workload: WorkloadSpec::default_for(WorkloadKind::Http),
            instance_name: name.clone(),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(20),
            confinement: Default::default(),
            network: None,
        };
        let mut instance = backend.launch(&spec).unwrap();
        let err = instance.finish(Duration::from_secs(20)).unwrap_err();
        assert!(err.to_string().contains("no CVBENCH RESULT line"), "{err}");
        instance.destroy().unwrap();
        assert_gone(root.path(), &name);
    }

    /// This process's peak resident memory (`VmHWM`), in bytes.
    fn peak_rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("a VmHWM line")
            * 1024
    }

    #[test]
    fn a_workload_flooding_nul_bytes_before_ready_costs_bounded_memory_and_an_escaped_error() {
        let Some((root, backend, _)) = setup() else { return };
        let busybox = Path::new("/usr/bin/busybox");
        if !busybox.is_file() {
            println!("skipped: no static /usr/bin/busybox (apt-get install busybox-static)");
            return;
        }
        // A workload that writes NUL bytes to stdout and stderr as fast as it can, never READY.
        let image = root.path().join("zeros-image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::copy(busybox, image.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", image.join("bin/sh")).unwrap();
        let script = image.join("bin/cvbench-workload");
        std::fs::write(
            &script,
            "#!/bin/sh\n/bin/busybox cat /dev/zero >&2 &\nexec /bin/busybox cat /dev/zero\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-runc-zeros-{}-906", std::process::id());
        let spec = LaunchSpec {
            request: Instant::now(),
            image_dir: image.clone(),
            workload: WorkloadSpec::Idle,
            instance_name: name.clone(),
            memory_limit_bytes: None,
            cpu_limit: None,
            pids_limit: None,
            ready_timeout: Duration::from_secs(4),
            confinement: Default::default(),
            network: None,
        };
        let err = backend.launch(&spec).err().expect("never READY");
        let text = err.to_string();
        assert!(matches!(err, BackendError::ReadyTimeout { .. }), "{text:.300}");
        assert!(!text.contains('\0'), "raw NUL bytes in the error");
        assert!(text.len() < 16 * 1024, "error of {} bytes", text.len());
        assert!(text.contains("\\x00×"), "{text:.300}");
        // Gigabytes before the fix (every byte of a line without end was kept).
        let peak = peak_rss_bytes();
        println!(
            "harness peak RSS {} MiB; error ({} bytes): {text:.300}",
            peak >> 20,
            text.len()
        );
        assert!(peak < 256 << 20, "harness peak RSS {peak} bytes");
        assert_gone(root.path(), &name);
    }

    #[test]
    fn ready_timeout_kills_the_container_and_leaves_nothing() {
        let Some((root, backend, image)) = setup() else {
            return;
        };
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-runc-oltp-{}-903", std::process::id());
        // Loading 200k rows takes far longer than 1 ms.
        let spec = WorkloadSpec::Oltp {
            rows: 200_000,
            transactions: 1,
        };
        let o = RunOptions {
            ready_timeout: Duration::from_millis(1),
            ..opts()
        };
        let err = run_once(&backend, &image, &spec, &o, &name).unwrap_err();
        assert!(matches!(err, BackendError::ReadyTimeout { .. }), "{err}");
        assert_gone(root.path(), &name);
    }

    #[test]
    fn http_selftest_runs_over_loopback_in_the_container() {
        let Some((root, backend, image)) = setup() else {
            return;
        };
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-runc-http-{}-904", std::process::id());
        let spec = WorkloadSpec::default_for(WorkloadKind::Http);
        let m = run_once(&backend, &image, &spec, &opts(), &name).unwrap();
        assert!(
            m.metrics[metrics::WORKLOAD_REQUESTS_PER_S] > 0.0,
            "{:?}",
            m.metrics
        );
        assert_gone(root.path(), &name);
    }

    #[test]
    fn limits_beyond_what_oci_can_express_are_refused_not_clamped() {
        for (memory, pids, expected) in [
            (Some(u64::MAX), None, "memory limit 18446744073709551615 bytes"),
            (None, Some(1u64 << 63), "pids limit 9223372036854775808"),
        ] {
            let spec = RunOptions {
                memory_limit_bytes: memory,
                pids_limit: pids,
                ..RunOptions::default()
            }
            .launch_spec(
                Path::new("/img"),
                &WorkloadSpec::Idle,
                "cvbench-runc-idle-1-0",
                std::time::Instant::now(),
            );
            let err = harness::backends::runc::oci_config(&spec, None).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn config_json_carries_the_limits_and_the_workload_args() {
        let spec = RunOptions {
            memory_limit_bytes: Some(256 << 20),
            cpu_limit: Some(1.5),
            pids_limit: Some(64),
            ..RunOptions::default()
        }
        .launch_spec(
            Path::new("/img"),
            &WorkloadSpec::Idle,
            "cvbench-runc-idle-1-0",
            std::time::Instant::now(),
        );
        let config = harness::backends::runc::oci_config(&spec, None).unwrap();
        let v = serde_json::to_value(&config).unwrap();
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["/bin/cvbench-workload", "idle"])
        );
        assert_eq!(v["process"]["terminal"], false);
        assert_eq!(v["root"]["readonly"], false);
        assert_eq!(v["hostname"], "cvbench-runc-idle-1-0");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 64);
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, vec!["pid", "mount", "ipc", "uts", "network"]);
    }
}
