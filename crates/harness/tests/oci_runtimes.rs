//! gVisor, crun and the generic `oci:<path>` backend against the real runtimes and the default image:
//! READY and RESULT over the embedded image, and nothing left behind; crun skipped with its own
//! reason where it refuses the host.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use harness::backends::runc::RuncBackend;
    use harness::backends::{crun, gvisor, oci};
    use harness::metrics;
    use harness::runner::{run_once, RunOptions};
    use harness::Backend;
    use workload::{WorkloadKind, WorkloadSpec};

    /// The default image in `root`'s cache; `None` after printing why when it cannot be built or
    /// `backend` cannot run here.
    fn image_for(backend: &RuncBackend, root: &Path) -> Option<PathBuf> {
        if let Err(u) = backend.check_host() {
            println!("skipped: {u}");
            return None;
        }
        match rootfs::default_image(&root.join("cache")) {
            Ok(image) => Some(image.dir),
            Err(e) => {
                println!("skipped: no default image: {e}");
                None
            }
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(30),
            ..RunOptions::default()
        }
    }

    /// Nothing of instance `name` remains: no bundle, no runtime state, no mount, no cgroup, and no
    /// process whose command line names it.
    fn assert_gone(bundles: &Path, state: &Path, name: &str) {
        assert!(!bundles.join(name).exists(), "bundle of {name} left behind");
        assert!(!state.join(name).exists(), "runtime state of {name} left behind");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(name), "mount of {name} left behind");
        for ctrl in ["memory", "pids", "cpu", ""] {
            let cg = Path::new("/sys/fs/cgroup").join(ctrl).join(name);
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(!cmdline.contains(name), "process left behind: {cmdline}");
        }
    }

    /// idle and http-selftest reach READY (and RESULT) and leave nothing behind.
    fn idle_and_http(backend: &RuncBackend, root: &Path, tag: &str, bundles: &Path, state: &Path) {
        let Some(image) = image_for(backend, root) else {
            return;
        };
        backend.prepare(&image).unwrap();
        let pid = std::process::id();
        let name = format!("cvbench-{tag}-idle-{pid}-910");
        let m = run_once(backend, &image, &WorkloadSpec::Idle, &opts(), &name).unwrap();
        assert!(m.metrics[metrics::START_TO_READY_MS] > 0.0);
        assert!(m.metrics[metrics::PSS_BYTES] > 0.0, "{:?}", m.metrics);
        assert!(m.metrics[metrics::RUNTIME_PSS_BYTES] > 0.0, "{:?}", m.metrics);
        assert_gone(bundles, state, &name);

        let name = format!("cvbench-{tag}-http-{pid}-911");
        let spec = WorkloadSpec::default_for(WorkloadKind::Http);
        let m = run_once(backend, &image, &spec, &opts(), &name).unwrap();
        assert!(
            m.metrics[metrics::WORKLOAD_REQUESTS_PER_S] > 0.0,
            "{:?}",
            m.metrics
        );
        assert_gone(bundles, state, &name);
    }

    #[test]
    fn gvisor_runs_idle_and_http_and_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let backend = gvisor::backend_with_root(root.path());
        assert_eq!(
            backend.isolation().kind,
            harness::results::IsolationKind::UserSpaceKernel
        );
        idle_and_http(
            &backend,
            root.path(),
            "gvisor",
            &root.path().join("gvisor"),
            &root.path().join("gvisor-state"),
        );
    }

    #[test]
    fn gvisor_runs_at_confinement_none_without_the_capabilities_it_does_not_know() {
        let root = tempfile::tempdir().unwrap();
        let backend = gvisor::backend_with_root(root.path());
        let Some(image) = image_for(&backend, root.path()) else {
            return;
        };
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-gvisor-idle-{}-912", std::process::id());
        let o = RunOptions {
            confinement: harness::Confinement::None,
            ..opts()
        };
        let m = run_once(&backend, &image, &WorkloadSpec::Idle, &o, &name).unwrap();
        assert!(m.metrics[metrics::START_TO_READY_MS] > 0.0);
        assert_gone(
            &root.path().join("gvisor"),
            &root.path().join("gvisor-state"),
            &name,
        );
    }

    #[test]
    fn generic_oci_backend_drives_runc_by_path() {
        let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            println!("skipped: no runc binary");
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let backend = oci::backend_in(&root.path().join("oci"), &runc);
        assert_eq!(backend.name(), format!("oci:{}", runc.display()));
        let dir = root.path().join("oci").join(oci::dir_name(&runc));
        idle_and_http(
            &backend,
            root.path(),
            "oci_runc",
            &dir.join("bundles"),
            &dir.join("state"),
        );
    }

    #[test]
    fn crun_is_skipped_with_its_own_reason_or_runs() {
        let root = tempfile::tempdir().unwrap();
        let backend = crun::backend_with_root(root.path());
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: needs root");
            return;
        }
        match backend.check_host() {
            Err(u) if u.reason.contains("install it") => println!("skipped: {u}"),
            Err(u) => {
                // crun's own words, on one line, and the probe left nothing behind.
                assert!(u.reason.starts_with("crun refuses this host: "), "{u}");
                assert!(!u.reason.contains('\n'));
                for dir in ["crun", "crun-state"] {
                    let left: Vec<_> = std::fs::read_dir(root.path().join(dir))
                        .map(|d| d.flatten().map(|e| e.path()).collect())
                        .unwrap_or_default();
                    assert!(left.is_empty(), "the probe left {left:?}");
                }
                println!("crun skipped as expected: {u}");
            }
            Ok(()) => idle_and_http(
                &backend,
                root.path(),
                "crun",
                &root.path().join("crun"),
                &root.path().join("crun-state"),
            ),
        }
    }
}
