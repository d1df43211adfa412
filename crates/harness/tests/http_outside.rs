//! `http-outside` end to end: the built-in container and runc each serve the http workload in their
//! own network namespace, and the harness reaches it from its client namespace over a veth (first
//! response, TCP connects, wrk); `http` carries the self-test's load from outside beside the
//! in-sandbox self-test (container, runc, podman, docker). Needs root, `ip` and `wrk`; every namespace goes
//! with its value.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
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

    /// The default image and the backend `make` returns, prepared for it; `None` after a counted
    /// skip ([`ready`]'s, or `lacking` when the backend cannot run here).
    fn prepared<B: Backend>(
        root: &Path,
        make: impl FnOnce() -> B,
        lacking: testkit::Requirement,
    ) -> Option<(B, PathBuf)> {
        let image = ready(root)?;
        let backend = make();
        if let Err(u) = backend.check_host() {
            testkit::skip(lacking, u);
            return None;
        }
        backend.prepare(&image).unwrap();
        Some((backend, image))
    }

    fn container(root: &Path) -> Option<(ContainerBackend, PathBuf)> {
        prepared(
            root,
            || ContainerBackend::with_state_root(root),
            testkit::Requirement::HostFeature("namespaces"),
        )
    }

    fn runc(root: &Path) -> Option<(RuncBackend, PathBuf)> {
        prepared(
            root,
            || RuncBackend::with_root(root),
            testkit::Requirement::Package("runc"),
        )
    }

    fn podman(root: &Path) -> Option<(PodmanBackend, PathBuf)> {
        prepared(
            root,
            || PodmanBackend::with_dirs(&root.join("run"), &root.join("data")),
            testkit::Requirement::Package("podman"),
        )
    }

    fn docker(root: &Path) -> Option<(DockerBackend, PathBuf)> {
        prepared(
            root,
            || {
                DockerBackend::with_dirs(
                    &root.join("run"),
                    &root.join("data"),
                    &root.join("no-system-docker.sock"),
                )
            },
            testkit::Requirement::Package("docker.io"),
        )
    }

    /// What wrk's figures from outside and the phases around them must satisfy on every backend.
    fn assert_outside_figures(m: &BTreeMap<String, f64>) {
        assert!(m[metrics::OUTSIDE_REQUESTS_PER_S] > 0.0, "{m:?}");
        assert_eq!(m[metrics::OUTSIDE_ERRORS], 0.0, "{m:?}");
        assert!(m[metrics::OUTSIDE_LATENCY_P50_US] <= m[metrics::OUTSIDE_LATENCY_P99_US]);
        assert!(m[metrics::OUTSIDE_TCP_CONNECT_US] > 0.0);
        // The network is configured before the workload runs, the first response seen after READY.
        assert!(m[metrics::START_TO_NETWORK_READY_MS] <= m[metrics::START_TO_READY_MS]);
        assert!(m[metrics::START_TO_FIRST_RESPONSE_MS] >= m[metrics::START_TO_READY_MS]);
    }

    /// The instance's namespace went with the instance; the client's stays until dropped (with the
    /// options holding it), then goes too.
    fn assert_namespaces_go_with(opts: RunOptions, network: Network) {
        assert_eq!(our_namespaces(), vec![network.client_name().to_string()]);
        drop((opts, network));
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
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
        assert_outside_figures(&m);
        assert!(m[metrics::OUTSIDE_BYTES_PER_S] > 1024.0, "{m:?}");
        assert_namespaces_go_with(opts, network);
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
        assert_outside_figures(m);
        // Inside: the self-test ran (after the trigger) and reported the same request count.
        assert_eq!(m["workload.requests"], 300.0, "{m:?}");
        assert_eq!(m["workload.errors"], 0.0, "{m:?}");
        assert!(m["workload.requests_per_s"] > 0.0);
        // Both moved the same bytes per request (the same files in the same order): the ratio of
        // bytes/s to requests/s is the mean response body, equal within rounding.
        let inside = m["workload.bytes_per_s"] / m["workload.requests_per_s"];
        let outside = m[metrics::OUTSIDE_BYTES_PER_S] / m[metrics::OUTSIDE_REQUESTS_PER_S];
        assert!((inside - outside).abs() / inside < 0.01, "{inside} vs {outside}");
        assert_namespaces_go_with(opts, network);
    }

    #[test]
    fn container_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = container(root.path()) {
            http_with_both_figures(&backend, root.path(), &image);
        }
    }

    #[test]
    fn runc_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = runc(root.path()) {
            http_with_both_figures(&backend, root.path(), &image);
        }
    }

    #[test]
    fn podman_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = podman(root.path()) {
            http_with_both_figures(&backend, root.path(), &image);
        }
    }

    /// Docker joins a holder container's namespace (the veth moved into it before the instance's
    /// container exists); the holder goes with the instance.
    #[test]
    fn docker_http_has_inside_and_outside_figures() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = docker(root.path()) {
            http_with_both_figures(&backend, root.path(), &image);
        }
    }

    #[test]
    fn container_serves_http_to_the_client_namespace() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = container(root.path()) {
            serve_from_outside(&backend, root.path(), &image);
        }
    }

    #[test]
    fn runc_serves_http_to_the_client_namespace() {
        let root = tempfile::tempdir().unwrap();
        if let Some((backend, image)) = runc(root.path()) {
            serve_from_outside(&backend, root.path(), &image);
        }
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
