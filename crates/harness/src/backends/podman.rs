//! podman (Debian's `podman`) over the same image, as a [`crate::Backend`]: `podman create` and
//! `podman start --attach`, daemonless, with conmon as each container's monitor.
//!
//! Each backend value keeps its own store: storage in `/var/lib/cvbench/podman/<store>/`, run root
//! and temp dir in `/run/cvbench/podman/<store>/`, containers under the cgroup `/<store>`, where
//! `<store>` is `cvbench-pm-<harness pid>-<n>` (short: podman takes no run root longer than 50
//! characters). Dropping the backend removes all of it, and
//! `bench cleanup` removes a dead harness's store, so nothing of podman outlives a run. (A store shared
//! between harnesses would have to outlive them: podman's database pins the run root it was made
//! with.) The image is imported into it by content digest on `prepare`.
//!
//! Host-specific flags: `--runtime runc`, because Debian's default runtime, crun, refuses hybrid
//! cgroup hosts; `--cgroup-manager cgroupfs` and `--events-backend file`, which need no systemd; and
//! `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`, because podman's default is to raise the
//! rlimits to the host's maximum, which fails where root lacks `CAP_SYS_RESOURCE`.
//!
//! Memory: the container's cgroup is the instance's PSS; its conmon is `runtime_pss_bytes`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::engine::{self, EngineCli, ENGINE_CONFINEMENT};
use crate::backend::{Backend, BackendError, Instance, LaunchSpec, SharedImage, Unavailable};
use crate::cleanup::{CleanupReport, CleanupScope};
use crate::results::{Isolation, IsolationKind};

pub const NAME: &str = "podman";
/// Per-store run state: `<RUN_DIR>/<store>/{run, tmp, data-root}` (`run` is podman's run root).
pub const RUN_DIR: &str = "/run/cvbench/podman";
/// Per-store storage (images, layers, containers).
pub const DATA_DIR: &str = "/var/lib/cvbench/podman";
/// The file in a store's run dir that names its storage root.
const DATA_ROOT_FILE: &str = "data-root";
/// The OCI runtime podman is told to use.
const RUNTIME: &str = "runc";
/// Flags every `podman create` gets (see the module docs).
pub const CREATE_FLAGS: [&str; 2] = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"];
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

static STORE_INDEX: AtomicU32 = AtomicU32::new(0);

pub struct PodmanBackend {
    program: PathBuf,
    run_dir: PathBuf,
    data_dir: PathBuf,
    store: Mutex<Option<Store>>,
}

/// One harness's podman store and the images imported into it.
struct Store {
    name: String,
    run_dir: PathBuf,
    data_root: PathBuf,
    cli: EngineCli,
    images: engine::ImportedImages,
}

impl Default for PodmanBackend {
    fn default() -> Self {
        PodmanBackend::new()
    }
}

impl PodmanBackend {
    pub fn new() -> Self {
        PodmanBackend::with_dirs(Path::new(RUN_DIR), Path::new(DATA_DIR))
    }

    /// Stores' run state under `run_dir`, their storage under `data_dir` (tests use a temp dir).
    pub fn with_dirs(run_dir: &Path, data_dir: &Path) -> Self {
        PodmanBackend {
            program: PathBuf::from("podman"),
            run_dir: run_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            store: Mutex::new(None),
        }
    }

    fn setup_err(reason: impl Into<String>) -> BackendError {
        BackendError::setup(NAME, reason)
    }

    fn open_store(&self) -> Result<Store, BackendError> {
        let name = format!(
            "cvbench-pm-{}-{}",
            std::process::id(),
            STORE_INDEX.fetch_add(1, Ordering::Relaxed)
        );
        let run_dir = self.run_dir.join(&name);
        let data_root = self.data_dir.join(&name);
        crate::rundir::create_dir(&run_dir)
            .map_err(BackendError::io(NAME, format!("creating {}", run_dir.display())))?;
        fs::write(
            run_dir.join(DATA_ROOT_FILE),
            data_root.as_os_str().as_encoded_bytes(),
        )
        .map_err(BackendError::io(NAME, "writing the data-root record"))?;
        for dir in [&data_root, &run_dir.join("tmp")] {
            fs::create_dir_all(dir).map_err(BackendError::io(NAME, format!("creating {}", dir.display())))?;
        }
        Ok(Store {
            cli: EngineCli {
                backend: NAME,
                program: self.program.clone(),
                global_args: global_args(&run_dir, &data_root),
            },
            name,
            run_dir,
            data_root,
            images: engine::ImportedImages::default(),
        })
    }

    /// podman's version (`4.3.1`), from `podman --version`.
    fn version(&self) -> Result<String, String> {
        let out = Command::new(&self.program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{} --version`: {e}", self.program.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} --version` failed: {}",
                self.program.display(),
                out.status
            ));
        }
        Ok(super::runc::version_from_output(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }
}

/// podman's global flags for a store: its storage, run root, temp dir, runtime and the managers
/// that need no systemd.
pub fn global_args(run_dir: &Path, data_root: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut pair = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    pair("--root", data_root.into());
    // podman refuses a run root longer than 50 characters: hence the short names.
    pair("--runroot", run_dir.join("run").into());
    pair("--tmpdir", run_dir.join("tmp").into());
    pair("--runtime", RUNTIME.into());
    pair("--cgroup-manager", "cgroupfs".into());
    pair("--events-backend", "file".into());
    args
}

impl Store {
    /// Removes every container, then everything of the store (see [`engine::remove_state`]).
    fn remove(&self) -> Vec<String> {
        remove_store(
            &self.cli,
            &self.run_dir,
            &self.data_root,
            &self.name,
            Path::new(CGROUP_ROOT),
        )
    }
}

fn remove_store(
    cli: &EngineCli,
    run_dir: &Path,
    data_root: &Path,
    name: &str,
    cgroup_root: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = cli.run(&["rm", "--all", "--force"]) {
        problems.push(e.to_string());
    }
    engine::remove_state(&[run_dir, data_root], name, cgroup_root, &mut problems);
    problems
}

impl Drop for PodmanBackend {
    fn drop(&mut self) {
        let store = self
            .store
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = store.take() {
            let problems = store.remove();
            if !problems.is_empty() {
                eprintln!(
                    "cvbench: removing podman store {}: {}",
                    store.name,
                    problems.join("; ")
                );
            }
        }
    }
}

impl Backend for PodmanBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(IsolationKind::DaemonContainer)
    }

    /// The instance joins a prepared namespace by path (`--network ns:/run/netns/<name>`): podman
    /// makes no network of its own, and the veth is configured before the workload starts.
    fn networking(&self) -> bool {
        true
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable {
                reason: "podman needs root here (run bench as root)".into(),
            });
        }
        self.version().map_err(|e| Unavailable {
            reason: format!("{e}; install it with `apt-get install podman`"),
        })?;
        let runc = Command::new(RUNTIME)
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        if !runc.is_ok_and(|o| o.status.success()) {
            return Err(Unavailable {
                reason: format!("podman runs containers with {RUNTIME} here, which is missing; install it with `apt-get install runc`"),
            });
        }
        Ok(())
    }

    fn labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![
            ("podman_runtime".to_string(), RUNTIME.to_string()),
            ("confinement".to_string(), ENGINE_CONFINEMENT.to_string()),
        ];
        if let Ok(v) = self.version() {
            labels.push(("podman_version".to_string(), v));
        }
        labels
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        engine::hold_run_lock(NAME, &self.run_dir)?;
        let mut guard = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.open_store()?);
        }
        let Some(store) = guard.as_mut() else {
            return Err(Self::setup_err("no podman store"));
        };
        store.images.get_or_import(&store.cli, image_dir)
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let (cli, tag, name) = {
            let guard = self
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(store) = guard.as_ref() else {
                return Err(Self::setup_err("launch before prepare"));
            };
            let tag = store.images.tag(&store.cli, &spec.image_dir)?;
            (store.cli.clone(), tag, store.name.clone())
        };
        let network = match super::attach_network(NAME, spec)? {
            Some(net) => engine::EngineNetwork::Namespace(net),
            None => engine::EngineNetwork::None,
        };
        engine::launch(&cli, spec, &tag, &create_flags(&name), Vec::new(), network)
    }
}

/// The podman-only `create` flags for a store named `store`.
pub fn create_flags(store: &str) -> Vec<String> {
    let mut flags: Vec<String> = CREATE_FLAGS.iter().map(|f| (*f).to_string()).collect();
    flags.push(format!("--cgroup-parent=/{store}"));
    flags
}

/// `bench cleanup` for podman: removes every store a dead harness left (its containers, conmons,
/// mounts, cgroups, run state and storage).
pub fn cleanup_leftovers(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    let run_dir = scope.roots.relocate(RUN_DIR);
    let Ok(entries) = fs::read_dir(&run_dir) else {
        return report;
    };
    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (scope.keep)(&name) {
            report.in_use.push(format!("podman store {name}"));
            continue;
        }
        let data_root = fs::read(entry.path().join(DATA_ROOT_FILE))
            .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
            .unwrap_or_else(|_| Path::new(DATA_DIR).join(&name));
        let cli = EngineCli {
            backend: NAME,
            program: PathBuf::from("podman"),
            global_args: global_args(&entry.path(), &data_root),
        };
        let mut problems = remove_store(&cli, &entry.path(), &data_root, &name, &scope.roots.cgroup_root);
        // podman missing or its store already half gone: what is left was still removed.
        problems.retain(|p| !p.contains("rm --all --force"));
        report.removed.push(format!("podman store {name}"));
        report.problems.extend(problems);
    }
    crate::rundir::prune(&run_dir);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_pin_storage_runroot_runtime_and_systemd_free_managers() {
        let args: Vec<String> = global_args(
            Path::new("/run/cvbench/podman/s-1-0"),
            Path::new("/var/lib/cvbench/podman/s-1-0"),
        )
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        assert_eq!(
            args.join(" "),
            "--root /var/lib/cvbench/podman/s-1-0 --runroot /run/cvbench/podman/s-1-0/run \
             --tmpdir /run/cvbench/podman/s-1-0/tmp --runtime runc --cgroup-manager cgroupfs --events-backend file"
        );
    }

    #[test]
    fn create_flags_cap_rlimits_and_name_the_store_cgroup() {
        assert_eq!(
            create_flags("cvbench-pm-7-0"),
            [
                "--ulimit=nofile=1024:1024",
                "--ulimit=nproc=1024:1024",
                "--cgroup-parent=/cvbench-pm-7-0"
            ]
        );
    }

    #[test]
    fn without_podman_the_reason_says_what_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = PodmanBackend::with_dirs(tmp.path(), tmp.path());
        b.program = tmp.path().join("no-podman");
        let reason = b.check_host().unwrap_err().reason;
        if nix::unistd::geteuid().is_root() {
            assert!(
                reason.contains("apt-get install podman") && reason.contains("no-podman"),
                "{reason}"
            );
        } else {
            assert!(reason.contains("root"), "{reason}");
        }
    }

    #[test]
    fn cleanup_removes_a_dead_harness_store_and_keeps_a_live_one() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = tmp.path().join("run");
        let dead = "cvbench-pm-999999999-0";
        let live = format!("cvbench-pm-{}-0", std::process::id());
        for name in [dead, live.as_str()] {
            let dir = run_dir.join("podman").join(name);
            fs::create_dir_all(dir.join("run")).unwrap();
            let data = tmp.path().join("data").join(name);
            fs::create_dir_all(&data).unwrap();
            fs::write(dir.join(DATA_ROOT_FILE), data.as_os_str().as_encoded_bytes()).unwrap();
        }
        let roots = crate::cleanup::CleanupRoots {
            run_dir: run_dir.clone(),
            cgroup_root: tmp.path().join("cg"),
            mountinfo: tmp.path().join("mountinfo"),
        };
        let keep = |n: &str| n == live;
        let report = cleanup_leftovers(&CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: true,
        });
        assert!(report.removed.iter().any(|r| r.contains(dead)), "{report:?}");
        assert!(report.in_use.iter().any(|r| r.contains(&live)), "{report:?}");
        assert!(!run_dir.join("podman").join(dead).exists());
        assert!(!tmp.path().join("data").join(dead).exists());
        assert!(run_dir.join("podman").join(&live).exists());
    }
}
