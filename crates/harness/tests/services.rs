//! The services image's real daemons end to end on the built-in container and runc: nginx and
//! MariaDB start as their packages start them, READY is decided from the client namespace, wrk and
//! sysbench load them; a broken config fails the run with nginx's own log line and leaves nothing.
//! Needs root, `ip`, `wrk`, `sysbench` and a services image in the cache (`bench image build
//! services`; a test does not download a Debian system itself).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use harness::backends::container::ContainerBackend;
    use harness::backends::runc::RuncBackend;
    use harness::metrics;
    use harness::net::Network;
    use harness::runner::{run_once, RunOptions};
    use harness::Backend;
    use workload::{WorkloadKind, WorkloadSpec};

    fn our_namespaces() -> Vec<String> {
        let pid = std::process::id();
        std::fs::read_dir(harness::net::NETNS_DIR)
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

    /// The cached services image, or a skip naming what is missing.
    fn ready() -> Option<PathBuf> {
        if testkit::skip_unless_root("network namespaces, veths, overlay mounts") {
            return None;
        }
        if let Err(e) = harness::net::available() {
            testkit::skip(testkit::Requirement::Package("iproute2"), e);
            return None;
        }
        if !harness::net::wrk_available() {
            testkit::skip(testkit::Requirement::Package("wrk"), "wrk is not installed");
            return None;
        }
        if !harness::services::sysbench_available() {
            testkit::skip(
                testkit::Requirement::Package("sysbench"),
                "sysbench is not installed",
            );
            return None;
        }
        match rootfs::services::find_cached_services_image(Path::new(rootfs::DEFAULT_CACHE_ROOT)) {
            Some(image) => Some(image.dir),
            None => {
                testkit::skip(
                    testkit::Requirement::Package("debootstrap"),
                    "no services image in /var/cache/cvbench: build it with `bench image build services`",
                );
                None
            }
        }
    }

    fn opts(network: &Network) -> RunOptions {
        RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(30),
            network: Some(network.clone()),
            ..RunOptions::default()
        }
    }

    fn nginx() -> WorkloadSpec {
        WorkloadSpec::Nginx {
            port: 80,
            connections: 2,
            duration_s: 1,
            path: "/".into(),
        }
    }

    fn mariadb(init_at_start: bool) -> WorkloadSpec {
        WorkloadSpec::Mariadb {
            port: 3306,
            init_at_start,
            tables: 1,
            table_size: 1000,
            threads: 1,
            duration_s: 1,
        }
    }

    fn serve_both(backend: &dyn Backend, run_dir: &Path, image: &Path) {
        let network = Network::create(run_dir).unwrap();
        let o = opts(&network);
        let name = |w: &str| format!("cvbench-{}-{w}-{}-0", backend.name(), std::process::id());

        let m = run_once(backend, image, &nginx(), &o, &name("nginx"))
            .unwrap()
            .metrics;
        assert!(
            m[metrics::START_TO_SERVICE_READY_MS] >= m[metrics::START_TO_READY_MS],
            "{m:?}"
        );
        assert!(m[metrics::OUTSIDE_REQUESTS_PER_S] > 0.0, "{m:?}");
        assert_eq!(m[metrics::OUTSIDE_ERRORS], 0.0, "{m:?}");
        assert!(m[metrics::PSS_BYTES] > 0.0);
        // The daemon alone: less than the instance, which also counts the supervisor.
        assert!(
            m[metrics::SERVICE_PSS_BYTES] > 0.0 && m[metrics::SERVICE_PSS_BYTES] < m[metrics::PSS_BYTES],
            "{m:?}"
        );

        for init in [false, true] {
            let m = run_once(backend, image, &mariadb(init), &o, &name("mariadb"))
                .unwrap()
                .metrics;
            assert!(
                m[metrics::START_TO_SERVICE_READY_MS] >= m[metrics::START_TO_READY_MS],
                "{m:?}"
            );
            assert!(m[metrics::OUTSIDE_SYSBENCH_TPS] > 0.0, "{m:?}");
            // oltp_read_write: 18 queries (and more) per transaction.
            assert!(
                m[metrics::OUTSIDE_SYSBENCH_QPS] > m[metrics::OUTSIDE_SYSBENCH_TPS] * 10.0,
                "{m:?}"
            );
            assert!(m[metrics::OUTSIDE_SYSBENCH_P95_MS] > 0.0, "{m:?}");
            // The data directory is written on the instance's own layer.
            assert!(m[metrics::INSTANCE_DISK_BYTES] > 1_000_000.0, "{m:?}");
        }
        assert_eq!(our_namespaces(), vec![network.client_name().to_string()]);
        drop((o, network));
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    }

    #[test]
    fn container_runs_nginx_and_mariadb_from_the_services_image() {
        let Some(image) = ready() else { return };
        let root = tempfile::tempdir().unwrap();
        let backend = ContainerBackend::with_state_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::HostFeature("namespaces"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        serve_both(&backend, root.path(), &image);
    }

    #[test]
    fn runc_runs_nginx_and_mariadb_from_the_services_image() {
        let Some(image) = ready() else { return };
        let root = tempfile::tempdir().unwrap();
        let backend = RuncBackend::with_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::Package("runc"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        serve_both(&backend, root.path(), &image);
    }

    /// A copy of the image (hard links, so it is cheap) whose nginx.conf has an unknown directive.
    fn broken_copy(image: &Path) -> tempfile::TempDir {
        let parent = image.parent().unwrap();
        let dir = tempfile::tempdir_in(parent).unwrap();
        let copy = dir.path().join("rootfs");
        let st = std::process::Command::new("cp")
            .arg("-al")
            .arg(image)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(copy.join(rootfs::IMAGE_MANIFEST_PATH)).unwrap();
        let conf = copy.join("etc/nginx/nginx.conf");
        std::fs::remove_file(&conf).unwrap();
        std::fs::write(
            &conf,
            "events {}\nhttp { server { listen 80; bogus_directive on; } }\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_broken_nginx_config_fails_the_run_with_its_log_line_and_leaves_nothing() {
        let Some(image) = ready() else { return };
        let broken = broken_copy(&image);
        let image = broken.path().join("rootfs");
        let root = tempfile::tempdir().unwrap();
        let backends: Vec<Box<dyn Backend>> = vec![
            Box::new(ContainerBackend::with_state_root(root.path())),
            Box::new(RuncBackend::with_root(root.path())),
        ];
        for backend in backends {
            if backend.check_host().is_err() {
                testkit::skip(
                    testkit::Requirement::Package("runc"),
                    format!("{} unavailable", backend.name()),
                );
                continue;
            }
            backend.prepare(&image).unwrap();
            let network = Network::create(root.path()).unwrap();
            let name = format!("cvbench-{}-nginx-{}-9", backend.name(), std::process::id());
            let err = run_once(backend.as_ref(), &image, &nginx(), &opts(&network), &name).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("unknown directive \"bogus_directive\""), "{text}");
            assert!(text.contains("nginx exited before it was stopped"), "{text}");
            drop(network);
            assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(!mounts.contains(&name), "a mount of {name} is left");
        }
    }

    #[test]
    fn service_workloads_are_not_in_the_default_set() {
        assert!(WorkloadKind::ALL.iter().all(|k| !k.is_service()));
    }
}
