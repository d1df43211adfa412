//! `http-outside` end to end: the built-in container and runc each serve the http workload in their
//! own network namespace, and the harness reaches it from its client namespace over a veth (first
//! response, TCP connects, wrk); `http` carries the self-test's load from outside beside the
//! in-sandbox self-test (container, runc, podman, docker). Needs root, `ip` and `wrk`; every namespace goes
//! with its value.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use harness::backends::container::ContainerBackend;
    use harness::backends::docker::DockerBackend;
    use harness::backends::podman::PodmanBackend;
    use harness::backends::runc::RuncBackend;
    use harness::metrics;
    use harness::net::Network;
    use harness::runner::{run_once, RunOptions};
    use harness::Backend;
    use workload::spec::{FromOutside, HttpSelftest};
    use workload::WorkloadSpec;

    /// Names under /run/netns that this process made.
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

    fn ready(root: &Path) -> Option<PathBuf> {
        if testkit::skip_unless_root("network namespaces and veths") {
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
        match rootfs::default_image(&root.join("cache")) {
            Ok(image) => Some(image.dir),
            Err(e) => {
                testkit::skip(testkit::Requirement::Binaries, format!("no default image: {e}"));
                None
            }
        }
    }

    fn serve_from_outside(backend: &dyn Backend, run_dir: &Path, image: &Path) {
        let network = Network::create(run_dir).unwrap();
        let opts = RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(20),
            network: Some(network.clone()),
            ..RunOptions::default()
        };
        let spec = WorkloadSpec::HttpOutside {
            port: WorkloadSpec::DEFAULT_HTTP_PORT,
            connections: 2,
            duration_s: 1,
            path: "/1k.bin".into(),
        };
        let name = format!("cvbench-{}-http-outside-{}-0", backend.name(), std::process::id());
        let m = run_once(backend, image, &spec, &opts, &name).unwrap().metrics;
        assert!(m[metrics::OUTSIDE_REQUESTS_PER_S] > 0.0, "{m:?}");
        assert!(m[metrics::OUTSIDE_BYTES_PER_S] > 1024.0, "{m:?}");
        assert_eq!(m[metrics::OUTSIDE_ERRORS], 0.0, "{m:?}");
        assert!(m[metrics::OUTSIDE_LATENCY_P50_US] <= m[metrics::OUTSIDE_LATENCY_P99_US]);
        assert!(m[metrics::OUTSIDE_TCP_CONNECT_US] > 0.0);
        // The network is configured before the workload runs, the first response seen after READY.
        assert!(m[metrics::START_TO_NETWORK_READY_MS] <= m[metrics::START_TO_READY_MS]);
        assert!(m[metrics::START_TO_FIRST_RESPONSE_MS] >= m[metrics::START_TO_READY_MS]);
        // The instance's namespace went with the instance; the client's stays until dropped.
        assert_eq!(our_namespaces(), vec![network.client_name().to_string()]);
        drop((opts, network));
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
        let left: Vec<_> = std::fs::read_dir(harness::net::net_dir(run_dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "records left: {left:?}");
    }

    /// `http` as `bench compare` runs it: the self-test's load from outside first, then the
    /// self-test inside (started through the trigger port); both sets of figures in one run.
    fn http_with_both_figures(backend: &dyn Backend, run_dir: &Path, image: &Path) {
        let network = Network::create(run_dir).unwrap();
        let opts = RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout: Duration::from_secs(30),
            finish_timeout: Duration::from_secs(60),
            network: Some(network.clone()),
            ..RunOptions::default()
        };
        let spec = WorkloadSpec::Http {
            port: WorkloadSpec::DEFAULT_HTTP_PORT,
            selftest: Some(HttpSelftest {
                requests: 300,
                connections: 3,
            }),
            from_outside: Some(FromOutside {
                trigger_port: FromOutside::DEFAULT_TRIGGER_PORT,
            }),
        };
        assert_eq!(harness::runner::launched_spec(backend, &spec, &opts), spec);
        let note = harness::runner::outside_note(backend, &spec, &opts).unwrap();
        assert!(note.contains("300 requests over 3 connections"), "{note}");
        let name = format!("cvbench-{}-http-{}-0", backend.name(), std::process::id());
        let run = run_once(backend, image, &spec, &opts, &name).unwrap();
        let m = &run.metrics;
        // Outside: wrk's figures of exactly the self-test's load, without errors.
        assert!(m[metrics::OUTSIDE_REQUESTS_PER_S] > 0.0, "{m:?}");
        assert_eq!(m[metrics::OUTSIDE_ERRORS], 0.0, "{m:?}");
        assert!(m[metrics::OUTSIDE_LATENCY_P50_US] <= m[metrics::OUTSIDE_LATENCY_P99_US]);
        assert!(m[metrics::OUTSIDE_TCP_CONNECT_US] > 0.0);
        assert!(m[metrics::START_TO_NETWORK_READY_MS] <= m[metrics::START_TO_READY_MS]);
        assert!(m[metrics::START_TO_FIRST_RESPONSE_MS] >= m[metrics::START_TO_READY_MS]);
        // Inside: the self-test ran (after the trigger) and reported the same request count.
        assert_eq!(m["workload.requests"], 300.0, "{m:?}");
        assert_eq!(m["workload.errors"], 0.0, "{m:?}");
        assert!(m["workload.requests_per_s"] > 0.0);
        // Both moved the same bytes per request (the same files in the same order): the ratio of
        // bytes/s to requests/s is the mean response body, equal within rounding.
        let inside = m["workload.bytes_per_s"] / m["workload.requests_per_s"];
        let outside = m[metrics::OUTSIDE_BYTES_PER_S] / m[metrics::OUTSIDE_REQUESTS_PER_S];
        assert!((inside - outside).abs() / inside < 0.01, "{inside} vs {outside}");
        assert_eq!(our_namespaces(), vec![network.client_name().to_string()]);
        drop((opts, network));
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    }

    #[test]
    fn container_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = ContainerBackend::with_state_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::HostFeature("namespaces"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        http_with_both_figures(&backend, root.path(), &image);
    }

    #[test]
    fn runc_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = RuncBackend::with_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::Package("runc"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        http_with_both_figures(&backend, root.path(), &image);
    }

    #[test]
    fn podman_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = PodmanBackend::with_dirs(&root.path().join("run"), &root.path().join("data"));
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::Package("podman"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        http_with_both_figures(&backend, root.path(), &image);
    }

    /// Docker joins a holder container's namespace (the veth moved into it before the instance's
    /// container exists); the holder goes with the instance.
    #[test]
    fn docker_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = DockerBackend::with_dirs(
            &root.path().join("run"),
            &root.path().join("data"),
            &root.path().join("no-system-docker.sock"),
        );
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::Package("docker.io"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        http_with_both_figures(&backend, root.path(), &image);
    }

    #[test]
    fn container_serves_http_to_the_client_namespace() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = ContainerBackend::with_state_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::HostFeature("namespaces"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        serve_from_outside(&backend, root.path(), &image);
    }

    #[test]
    fn runc_serves_http_to_the_client_namespace() {
        let root = tempfile::tempdir().unwrap();
        let Some(image) = ready(root.path()) else {
            return;
        };
        let backend = RuncBackend::with_root(root.path());
        if let Err(u) = backend.check_host() {
            testkit::skip(testkit::Requirement::Package("runc"), u);
            return;
        }
        backend.prepare(&image).unwrap();
        serve_from_outside(&backend, root.path(), &image);
    }

    /// A slot is free again only once its veth is gone, even while something still holds the old
    /// namespace (here an open descriptor; in a run, a process not yet reaped): the next attach
    /// reuses the slot and its link name.
    #[test]
    fn a_freed_slot_is_reusable_while_the_old_namespace_lingers() {
        if testkit::skip_unless_root("network namespaces and veths") {
            return;
        }
        if let Err(e) = harness::net::available() {
            testkit::skip(testkit::Requirement::Package("iproute2"), e);
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let network = Network::create(root.path()).unwrap();
        let first = network.attach().unwrap();
        let (link, addr) = (first.link().to_string(), first.addr);
        let holder = std::fs::File::open(first.netns_path()).unwrap();
        drop(first);
        let second = network.attach().unwrap();
        assert_eq!((second.link(), second.addr), (link.as_str(), addr));
        drop((second, holder, network));
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    }
}
