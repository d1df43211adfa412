//! The docker and podman backends against Debian's packages and the default image: READY and RESULT
//! on idle and http-selftest, and afterwards no container, no daemon the harness started, no state
//! directory, no mount and no cgroup of theirs.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use harness::backends::docker::DockerBackend;
    use harness::backends::podman::PodmanBackend;
    use harness::metrics;
    use harness::runner::{run_once, RunOptions};
    use harness::Backend;
    use workload::{WorkloadKind, WorkloadSpec};

    fn opts() -> RunOptions {
        RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(60),
            memory_limit_bytes: Some(128 << 20),
            ..RunOptions::default()
        }
    }

    fn image(root: &Path) -> Option<PathBuf> {
        match rootfs::default_image(&root.join("cache")) {
            Ok(image) => Some(image.dir),
            Err(e) => {
                println!("skipped: no default image: {e}");
                None
            }
        }
    }

    /// No process's command line, no mount and no cgroup names `needle`.
    fn assert_nothing_mentions(needle: &str) {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(!cmdline.contains(needle), "process left behind: {cmdline}");
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(needle), "mount left behind under {needle}");
        for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for cg in std::fs::read_dir(ctrl.path()).into_iter().flatten().flatten() {
                let name = cg.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains(needle),
                    "cgroup left behind: {}",
                    cg.path().display()
                );
            }
        }
    }

    /// idle and http-selftest through `backend`; instance names tagged `tag`.
    fn idle_and_http(backend: &dyn Backend, image: &Path, tag: &str) {
        backend.prepare(image).unwrap();
        let pid = std::process::id();
        let name = format!("cvbench-{tag}-idle-{pid}-920");
        let m = run_once(backend, image, &WorkloadSpec::Idle, &opts(), &name).unwrap();
        assert!(m.metrics[metrics::START_TO_CREATED_MS] > 0.0, "{:?}", m.metrics);
        assert!(m.metrics[metrics::START_TO_READY_MS] > m.metrics[metrics::START_TO_CREATED_MS]);
        assert!(m.metrics[metrics::PSS_BYTES] > 0.0, "{:?}", m.metrics);
        assert!(m.metrics[metrics::RUNTIME_PSS_BYTES] > 0.0, "{:?}", m.metrics);
        assert!(
            m.metrics.contains_key(metrics::INSTANCE_DISK_BYTES),
            "{:?}",
            m.metrics
        );
        assert_nothing_mentions(&name);

        let name = format!("cvbench-{tag}-http-{pid}-921");
        let spec = WorkloadSpec::default_for(WorkloadKind::Http);
        let m = run_once(backend, image, &spec, &opts(), &name).unwrap();
        assert!(
            m.metrics[metrics::WORKLOAD_REQUESTS_PER_S] > 0.0,
            "{:?}",
            m.metrics
        );
        assert_nothing_mentions(&name);
    }

    #[test]
    fn docker_with_its_own_daemon_runs_idle_and_http_and_stops_the_daemon() {
        let root = tempfile::tempdir().unwrap();
        // A system socket that does not exist: the backend must start (and stop) its own dockerd.
        let backend = DockerBackend::with_dirs(
            &root.path().join("run"),
            &root.path().join("data"),
            &root.path().join("no-system-docker.sock"),
        );
        if let Err(u) = backend.check_host() {
            println!("skipped: {u}");
            return;
        }
        let Some(image) = image(root.path()) else { return };
        idle_and_http(&backend, &image, "docker");
        let daemon_pids: Vec<String> = std::fs::read_dir(root.path().join("run"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(daemon_pids.len(), 1, "one daemon of our own: {daemon_pids:?}");
        drop(backend);
        let left: Vec<_> = std::fs::read_dir(root.path().join("run"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "daemon state left: {left:?}");
        let left: Vec<_> = std::fs::read_dir(root.path().join("data"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "data root left: {left:?}");
        assert_nothing_mentions(&root.path().to_string_lossy());
        assert_nothing_mentions(&daemon_pids[0]);
    }

    #[test]
    fn podman_runs_idle_and_http_and_removes_its_store() {
        let root = tempfile::tempdir().unwrap();
        let backend = PodmanBackend::with_dirs(&root.path().join("run"), &root.path().join("data"));
        if let Err(u) = backend.check_host() {
            println!("skipped: {u}");
            return;
        }
        let Some(image) = image(root.path()) else { return };
        idle_and_http(&backend, &image, "podman");
        let stores: Vec<String> = std::fs::read_dir(root.path().join("run"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(stores.len(), 1, "one store: {stores:?}");
        drop(backend);
        for dir in ["run", "data"] {
            let left: Vec<_> = std::fs::read_dir(root.path().join(dir))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{dir} left: {left:?}");
        }
        assert_nothing_mentions(&root.path().to_string_lossy());
        assert_nothing_mentions(&stores[0]);
    }

    /// A harness killed with a container running: its backend and instance are never dropped.
    /// `bench cleanup`'s pass for the backend (run dir relocated to the test's root, the owner
    /// treated as dead) must stop everything and remove every directory, mount and cgroup.
    fn crashed_then_cleaned(
        backend: Box<dyn Backend>,
        root: &Path,
        tag: &str,
        cleanup: fn(&harness::cleanup::CleanupScope) -> harness::cleanup::CleanupReport,
    ) {
        let Some(image) = image(root) else { return };
        backend.prepare(&image).unwrap();
        let name = format!("cvbench-{tag}-idle-{}-930", std::process::id());
        let spec = opts().launch_spec(&image, &WorkloadSpec::Idle, &name, std::time::Instant::now());
        let instance = backend.launch(&spec).unwrap();
        let container_pids = instance.host_pids();
        assert!(!container_pids.is_empty());
        let owner_dir: Vec<String> = std::fs::read_dir(root.join("run").join(tag))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        std::mem::forget(instance);
        std::mem::forget(backend);

        let roots = harness::cleanup::CleanupRoots {
            run_dir: root.join("run"),
            ..harness::cleanup::CleanupRoots::default()
        };
        let keep = |_: &str| false;
        let report = cleanup(&harness::cleanup::CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: true,
        });
        assert!(!report.removed.is_empty(), "{report:?}");
        for dir in ["run", "data"] {
            let left: Vec<_> = std::fs::read_dir(root.join(dir).join(tag))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{dir} left: {left:?}");
        }
        assert_nothing_mentions(&root.to_string_lossy());
        assert_nothing_mentions(&owner_dir[0]);
        assert_nothing_mentions(&name);
        for pid in container_pids {
            let alive =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "));
            assert!(!alive, "container process {pid} still running");
        }
    }

    #[test]
    fn cleanup_stops_a_crashed_harness_dockerd_and_its_container() {
        let root = tempfile::tempdir().unwrap();
        let backend = DockerBackend::with_dirs(
            &root.path().join("run/docker"),
            &root.path().join("data/docker"),
            &root.path().join("no-system-docker.sock"),
        );
        if let Err(u) = backend.check_host() {
            println!("skipped: {u}");
            return;
        }
        crashed_then_cleaned(
            Box::new(backend),
            root.path(),
            "docker",
            harness::backends::docker::cleanup_leftovers,
        );
    }

    #[test]
    fn cleanup_removes_a_crashed_harness_podman_store_and_its_container() {
        let root = tempfile::tempdir().unwrap();
        let backend =
            PodmanBackend::with_dirs(&root.path().join("run/podman"), &root.path().join("data/podman"));
        if let Err(u) = backend.check_host() {
            println!("skipped: {u}");
            return;
        }
        crashed_then_cleaned(
            Box::new(backend),
            root.path(),
            "podman",
            harness::backends::podman::cleanup_leftovers,
        );
    }
}
