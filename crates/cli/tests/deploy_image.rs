//! deploy/Dockerfile and scripts/build-image.sh without building: the scripts of the fleet path
//! pass shellcheck, the script refuses bad arguments before touching Docker, and the Dockerfile
//! takes exactly what the script stages (`prebuilt/bin`, `prebuilt/kernel`) and the build
//! arguments the script passes. The real build (debootstrap, a Docker daemon, a few minutes) runs
//! only with `CVBENCH_TEST_IMAGE_BUILD=1`.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn read(rel: &str) -> String {
        std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn fleet_scripts_pass_shellcheck() {
        if Command::new("shellcheck").arg("--version").output().is_err() {
            testkit::skip(
                testkit::Requirement::Package("shellcheck"),
                "shellcheck is not installed (apt-get install shellcheck)",
            );
            return;
        }
        for script in [
            "scripts/build-image.sh",
            "scripts/k8s-run.sh",
            "scripts/validate-deploy.sh",
        ] {
            let out = Command::new("shellcheck")
                .arg("--format=gcc")
                .arg(repo().join(script))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn build_script_refuses_unknown_arguments_before_docker() {
        // DOCKER_HOST at a socket that does not exist: an argument error must come first.
        let out = Command::new(repo().join("scripts/build-image.sh"))
            .args(["--prebuilt", "--frobnicate"])
            .env("DOCKER_HOST", "unix:///nonexistent/cvbench-test.sock")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unknown argument '--frobnicate'"), "{err}");
        let out = Command::new(repo().join("scripts/build-image.sh"))
            .args(["--tag"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--tag needs a tag"));
    }

    #[test]
    fn build_script_names_an_unreachable_daemon() {
        let out = Command::new(repo().join("scripts/build-image.sh"))
            .arg("--prebuilt")
            .env("DOCKER_HOST", "unix:///nonexistent/cvbench-test.sock")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no Docker daemon answers at unix:///nonexistent/cvbench-test.sock")
                || err.contains("docker (the CLI) is not installed"),
            "{err}"
        );
    }

    #[test]
    fn the_dockerfile_takes_what_the_script_stages() {
        let dockerfile = read("deploy/Dockerfile");
        let script = read("scripts/build-image.sh");
        // The base is an argument defaulting to Debian bookworm, so a debootstrapped one can be
        // passed; both stages build on it.
        assert!(
            dockerfile.lines().any(|l| l == "ARG BASE=debian:bookworm"),
            "{dockerfile}"
        );
        assert_eq!(dockerfile.matches("FROM ${BASE}").count(), 2, "{dockerfile}");
        assert!(
            !dockerfile.contains("FROM rust"),
            "the image is built from Debian only"
        );
        for arg in ["BASE", "ARTIFACTS"] {
            assert!(dockerfile.contains(&format!("ARG {arg}")), "{arg}");
            assert!(script.contains(&format!("--build-arg \"{arg}=")), "{arg}");
        }
        // What --prebuilt stages is what ARTIFACTS=prebuilt copies.
        for path in ["prebuilt/bin", "prebuilt/kernel"] {
            assert!(
                script.contains(&format!("$context/{path}")),
                "script stages {path}"
            );
            assert!(
                dockerfile.contains(&format!("{path}/.")),
                "Dockerfile copies {path}"
            );
        }
        for artifacts in ["prebuilt)", "source)"] {
            assert!(dockerfile.contains(artifacts), "{artifacts}");
        }
        // The image runs bench, finds its static binaries, and carries the guest kernel where the
        // microVM backend looks.
        assert!(dockerfile.contains("ENTRYPOINT [\"bench\"]"));
        assert!(dockerfile.contains("ENV CVBENCH_BIN_DIR=/usr/local/bin"));
        assert!(dockerfile.contains("COPY --from=build /out/kernel/ /var/cache/cvbench/kernel/"));
        // The source context leaves the build tree out.
        let ignore = read(".dockerignore");
        assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
    }

    /// The real build: `CVBENCH_TEST_IMAGE_BUILD=1` (and `DOCKER_HOST` if the system daemon is not
    /// the one to use), after `scripts/setup.sh` built the release binaries and guest kernel.
    #[test]
    fn image_builds_and_runs_bench() {
        if std::env::var_os("CVBENCH_TEST_IMAGE_BUILD").is_none() {
            testkit::skip(
                testkit::Requirement::HostFeature("docker-image-build"),
                "set CVBENCH_TEST_IMAGE_BUILD=1 to build the image (debootstrap + docker build, minutes)",
            );
            return;
        }
        let tag = "cvbench:test-image-build";
        let status = Command::new(repo().join("scripts/build-image.sh"))
            .args(["--prebuilt", "--debootstrap", "--tag", tag])
            .status()
            .unwrap();
        assert!(status.success(), "scripts/build-image.sh failed");
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none", tag, "--version"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("bench "));
        let _ = Command::new("docker").args(["rmi", tag]).output();
    }
}
