//! What the container's child process does, in its new namespaces, between `clone()` and `execve()`:
//! a [`SetupPlan`] of steps built (and allocated) in the parent, then applied in the child through a
//! [`Syscall`] without allocating.
//!
//! Order: mounts private → overlay (image = lowerdir) at `merged` → `/proc` (the new pid namespace) →
//! `/dev` tmpfs with device nodes, devpts (newinstance) and `/dev/shm` → `/tmp` tmpfs → pivot_root
//! into `merged` with the `pivot_root(".", ".")` idiom (no put_old directory needed in the image) →
//! detach the old root → hostname → loopback up, then (confinement, see [`crate::confine`]) the masked
//! paths and the read-only paths. Everything is mounted inside the child's own mount namespace, so it
//! all disappears with the container's last process. The child runs the plan in two parts around its
//! "rootfs ready" report ([`SetupPlan::rootfs_steps`], [`SetupPlan::confinement_steps`]), so that the
//! confinement's cost shows as its own phase.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::syscall::Syscall;

/// Where the child was when something failed; sent to the parent as a number over the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// The child is ready (not a failure): sent right before `execve`.
    Ready = 0,
    JoinCgroup = 1,
    MountPrivate = 2,
    MountOverlay = 3,
    MountProc = 4,
    MountDev = 5,
    MakeDevice = 6,
    MountDevpts = 7,
    MountShm = 8,
    DevLink = 9,
    MountTmp = 10,
    PivotRoot = 11,
    DetachOldRoot = 12,
    Hostname = 13,
    Loopback = 14,
    Stdio = 15,
    Signals = 16,
    Exec = 17,
    UserNamespace = 18,
    /// The child is confined (not a failure): sent right before `execve` when a confinement applies.
    Confined = 19,
    MaskPath = 20,
    ReadonlyPath = 21,
    Rlimits = 22,
    Capabilities = 23,
    NoNewPrivs = 24,
    Seccomp = 25,
}

impl Stage {
    const ALL: [Stage; 26] = [
        Stage::Ready,
        Stage::JoinCgroup,
        Stage::MountPrivate,
        Stage::MountOverlay,
        Stage::MountProc,
        Stage::MountDev,
        Stage::MakeDevice,
        Stage::MountDevpts,
        Stage::MountShm,
        Stage::DevLink,
        Stage::MountTmp,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Stdio,
        Stage::Signals,
        Stage::Exec,
        Stage::UserNamespace,
        Stage::Confined,
        Stage::MaskPath,
        Stage::ReadonlyPath,
        Stage::Rlimits,
        Stage::Capabilities,
        Stage::NoNewPrivs,
        Stage::Seccomp,
    ];

    pub fn from_u32(v: u32) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| *s as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Ready => "ready",
            Stage::JoinCgroup => "joining the cgroup",
            Stage::MountPrivate => "making mounts private",
            Stage::MountOverlay => "mounting the overlay root",
            Stage::MountProc => "mounting /proc",
            Stage::MountDev => "mounting /dev",
            Stage::MakeDevice => "creating a device node",
            Stage::MountDevpts => "mounting /dev/pts",
            Stage::MountShm => "mounting /dev/shm",
            Stage::DevLink => "linking in /dev",
            Stage::MountTmp => "mounting /tmp",
            Stage::PivotRoot => "pivot_root",
            Stage::DetachOldRoot => "detaching the old root",
            Stage::Hostname => "setting the hostname",
            Stage::Loopback => "bringing up loopback",
            Stage::Stdio => "setting up stdio",
            Stage::Signals => "resetting signals",
            Stage::Exec => "exec",
            Stage::UserNamespace => "waiting for the user namespace id maps",
            Stage::Confined => "confined",
            Stage::MaskPath => "masking a path",
            Stage::ReadonlyPath => "making a path read-only",
            Stage::Rlimits => "setting rlimits",
            Stage::Capabilities => "setting capabilities",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::Seccomp => "installing the seccomp filter",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One kernel call of the plan.
#[derive(Debug, Clone)]
pub enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    Mkdir {
        path: CString,
        mode: u32,
    },
    MknodFile {
        path: CString,
        perm: u32,
    },
    MknodChar {
        path: CString,
        perm: u32,
        major: u64,
        minor: u64,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Chdir {
        path: CString,
    },
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    Umount {
        target: CString,
        flags: MntFlags,
    },
    Sethostname {
        name: CString,
    },
    Umask {
        mask: u32,
    },
    LoopbackUp,
    /// Bind `/dev/null` over `path`; if it is a directory, mount an empty read-only tmpfs instead; if
    /// it does not exist, nothing.
    MaskPath {
        path: CString,
    },
    /// Bind `path` over itself, then remount it read-only with `flags` kept; nothing if it does not
    /// exist.
    ReadonlyPath {
        path: CString,
        flags: MsFlags,
    },
}

impl Op {
    /// The path an error message should name.
    fn path(&self) -> String {
        let p = match self {
            Op::Mount { target, .. } => target,
            Op::Mkdir { path, .. }
            | Op::MknodChar { path, .. }
            | Op::MknodFile { path, .. }
            | Op::Chdir { path }
            | Op::MaskPath { path }
            | Op::ReadonlyPath { path, .. } => path,
            Op::Symlink { link, .. } => link,
            Op::PivotRoot { new_root, .. } => new_root,
            Op::Umount { target, .. } => target,
            Op::Sethostname { name } => name,
            Op::Umask { .. } | Op::LoopbackUp => return String::new(),
        };
        p.to_string_lossy().into_owned()
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub stage: Stage,
    pub op: Op,
}

/// The step that failed in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFailure {
    pub index: u32,
    pub errno: Errno,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{what} {path:?} cannot be used: {reason}")]
    BadPath {
        what: &'static str,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("hostname {0:?} is not valid (1..=64 bytes, no NUL)")]
    BadHostname(String),
}

/// Inputs of the root filesystem.
#[derive(Debug, Clone)]
pub struct RootfsLayout {
    /// The shared read-only image (overlay lowerdir).
    pub image_dir: PathBuf,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    /// The overlay mount point, which becomes `/`.
    pub merged_dir: PathBuf,
    pub hostname: String,
    /// The child runs in its own user namespace: device nodes cannot be created there, so the host's
    /// are bind-mounted instead.
    pub user_namespace: bool,
    /// Absolute paths inside the container to hide (see [`Op::MaskPath`]).
    pub masked_paths: Vec<String>,
    /// Absolute paths under `/proc` to make read-only (see [`Op::ReadonlyPath`]).
    pub readonly_paths: Vec<String>,
}

/// Character devices of the minimal `/dev`: name, major, minor.
pub const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

#[derive(Debug, Clone)]
pub struct SetupPlan {
    steps: Vec<Step>,
    /// Steps from here on are confinement (masked and read-only paths).
    confine_from: usize,
}

fn cstring(what: &'static str, p: &Path) -> Result<CString, PlanError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| PlanError::BadPath {
        what,
        path: p.to_path_buf(),
        reason: "contains a NUL byte",
    })
}

fn c(s: &str) -> CString {
    // Only called with literals and formatted paths checked by `cstring`; a NUL would be a bug here,
    // and an empty string is the safe fallback.
    CString::new(s).unwrap_or_default()
}

/// An absolute path inside the container (after pivot_root), as a C string.
fn container_path(what: &'static str, p: &str) -> Result<CString, PlanError> {
    if !p.starts_with('/') {
        return Err(PlanError::BadPath {
            what,
            path: p.into(),
            reason: "is not absolute",
        });
    }
    cstring(what, Path::new(p))
}

/// overlayfs splits its options on `,` and lowerdir lists on `:`; paths with those cannot be passed.
fn overlay_path(what: &'static str, p: &Path) -> Result<String, PlanError> {
    let s = p.to_str().ok_or(PlanError::BadPath {
        what,
        path: p.to_path_buf(),
        reason: "is not UTF-8",
    })?;
    if !p.is_absolute() {
        return Err(PlanError::BadPath {
            what,
            path: p.to_path_buf(),
            reason: "is not absolute",
        });
    }
    if s.contains([',', ':', '\n', '\0', '\\']) {
        return Err(PlanError::BadPath {
            what,
            path: p.to_path_buf(),
            reason: "contains , : \\ or a newline",
        });
    }
    Ok(s.to_string())
}

impl SetupPlan {
    pub fn new(layout: &RootfsLayout) -> Result<SetupPlan, PlanError> {
        let lower = overlay_path("image dir", &layout.image_dir)?;
        let upper = overlay_path("upper dir", &layout.upper_dir)?;
        let work = overlay_path("work dir", &layout.work_dir)?;
        let merged = overlay_path("merged dir", &layout.merged_dir)?;
        let host = &layout.hostname;
        if host.is_empty() || host.len() > 64 || host.contains('\0') {
            return Err(PlanError::BadHostname(host.clone()));
        }
        let at = |rel: &str| c(&format!("{merged}/{rel}"));
        let m = |source: &str, target: CString, fstype: &str, flags: MsFlags, data: &str| Op::Mount {
            source: Some(c(source)),
            target,
            fstype: Some(c(fstype)),
            flags,
            data: if data.is_empty() { None } else { Some(c(data)) },
        };
        let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let mut steps = vec![
            Step {
                stage: Stage::Signals,
                op: Op::Umask { mask: 0 },
            },
            Step {
                stage: Stage::MountPrivate,
                op: Op::Mount {
                    source: None,
                    target: c("/"),
                    fstype: None,
                    flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    data: None,
                },
            },
            Step {
                stage: Stage::MountOverlay,
                op: m(
                    "overlay",
                    cstring("merged dir", &layout.merged_dir)?,
                    "overlay",
                    MsFlags::empty(),
                    &format!(
                        "lowerdir={lower},upperdir={upper},workdir={work}{}",
                        // trusted.* xattrs cannot be set from a user namespace.
                        if layout.user_namespace { ",userxattr" } else { "" }
                    ),
                ),
            },
            Step {
                stage: Stage::MountProc,
                op: Op::Mkdir {
                    path: at("proc"),
                    mode: 0o555,
                },
            },
            Step {
                stage: Stage::MountProc,
                op: m("proc", at("proc"), "proc", nosuid_nodev | MsFlags::MS_NOEXEC, ""),
            },
            Step {
                stage: Stage::MountDev,
                op: Op::Mkdir {
                    path: at("dev"),
                    mode: 0o755,
                },
            },
            Step {
                stage: Stage::MountDev,
                op: m(
                    "tmpfs",
                    at("dev"),
                    "tmpfs",
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    "mode=755,size=64k",
                ),
            },
        ];
        for (name, major, minor) in DEVICES {
            let path = at(&format!("dev/{name}"));
            if layout.user_namespace {
                steps.push(Step {
                    stage: Stage::MakeDevice,
                    op: Op::MknodFile {
                        path: path.clone(),
                        perm: 0o666,
                    },
                });
                steps.push(Step {
                    stage: Stage::MakeDevice,
                    op: Op::Mount {
                        source: Some(c(&format!("/dev/{name}"))),
                        target: path,
                        fstype: None,
                        flags: MsFlags::MS_BIND,
                        data: None,
                    },
                });
            } else {
                steps.push(Step {
                    stage: Stage::MakeDevice,
                    op: Op::MknodChar {
                        path,
                        perm: 0o666,
                        major,
                        minor,
                    },
                });
            }
        }
        steps.extend([
            Step {
                stage: Stage::MountDevpts,
                op: Op::Mkdir {
                    path: at("dev/pts"),
                    mode: 0o755,
                },
            },
            Step {
                stage: Stage::MountDevpts,
                op: m(
                    "devpts",
                    at("dev/pts"),
                    "devpts",
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620",
                ),
            },
            Step {
                stage: Stage::DevLink,
                op: Op::Symlink {
                    target: c("pts/ptmx"),
                    link: at("dev/ptmx"),
                },
            },
            Step {
                stage: Stage::MountShm,
                op: Op::Mkdir {
                    path: at("dev/shm"),
                    mode: 0o1777,
                },
            },
            Step {
                stage: Stage::MountShm,
                op: m("shm", at("dev/shm"), "tmpfs", nosuid_nodev, "mode=1777"),
            },
        ]);
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Step {
                stage: Stage::DevLink,
                op: Op::Symlink {
                    target: c(target),
                    link: at(&format!("dev/{link}")),
                },
            });
        }
        steps.extend([
            Step {
                stage: Stage::MountTmp,
                op: Op::Mkdir {
                    path: at("tmp"),
                    mode: 0o1777,
                },
            },
            Step {
                stage: Stage::MountTmp,
                op: m("tmpfs", at("tmp"), "tmpfs", nosuid_nodev, "mode=1777"),
            },
            Step {
                stage: Stage::PivotRoot,
                op: Op::Chdir {
                    path: cstring("merged dir", &layout.merged_dir)?,
                },
            },
            Step {
                stage: Stage::PivotRoot,
                op: Op::PivotRoot {
                    new_root: c("."),
                    put_old: c("."),
                },
            },
            Step {
                stage: Stage::DetachOldRoot,
                op: Op::Umount {
                    target: c("."),
                    flags: MntFlags::MNT_DETACH,
                },
            },
            Step {
                stage: Stage::DetachOldRoot,
                op: Op::Chdir { path: c("/") },
            },
            Step {
                stage: Stage::Hostname,
                op: Op::Sethostname { name: c(host) },
            },
            Step {
                stage: Stage::Loopback,
                op: Op::LoopbackUp,
            },
            Step {
                stage: Stage::Signals,
                op: Op::Umask { mask: 0o022 },
            },
        ]);
        let confine_from = steps.len();
        for p in &layout.masked_paths {
            steps.push(Step {
                stage: Stage::MaskPath,
                op: Op::MaskPath {
                    path: container_path("masked path", p)?,
                },
            });
        }
        for p in &layout.readonly_paths {
            if !p.starts_with("/proc/") {
                return Err(PlanError::BadPath {
                    what: "read-only path",
                    path: p.into(),
                    reason: "is not under /proc (only /proc's mount flags are known)",
                });
            }
            steps.push(Step {
                stage: Stage::ReadonlyPath,
                op: Op::ReadonlyPath {
                    path: container_path("read-only path", p)?,
                    flags: nosuid_nodev | MsFlags::MS_NOEXEC,
                },
            });
        }
        Ok(SetupPlan { steps, confine_from })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Runs every step. Allocation-free (safe in the child of a multi-threaded parent) as long as
    /// `sys` is.
    pub fn apply(&self, sys: &dyn Syscall) -> Result<(), StepFailure> {
        self.apply_range(sys, 0..self.steps.len())
    }

    /// The namespaces-and-rootfs part: everything before the confinement steps.
    pub fn rootfs_steps(&self) -> std::ops::Range<usize> {
        0..self.confine_from
    }

    /// The masked and read-only path steps (empty without confinement).
    pub fn confinement_steps(&self) -> std::ops::Range<usize> {
        self.confine_from..self.steps.len()
    }

    /// Runs steps `range` (allocation-free, as [`SetupPlan::apply`]).
    pub fn apply_range(&self, sys: &dyn Syscall, range: std::ops::Range<usize>) -> Result<(), StepFailure> {
        let start = range.start;
        for (offset, step) in self.steps.get(range).unwrap_or_default().iter().enumerate() {
            let index = start + offset;
            let r = match &step.op {
                Op::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => sys.mount(
                    source.as_deref(),
                    target,
                    fstype.as_deref(),
                    *flags,
                    data.as_deref(),
                ),
                Op::Mkdir { path, mode } => sys.mkdir(path, *mode),
                Op::MknodChar {
                    path,
                    perm,
                    major,
                    minor,
                } => sys.mknod_char(path, *perm, *major, *minor),
                Op::MknodFile { path, perm } => sys.mknod_file(path, *perm),
                Op::Symlink { target, link } => sys.symlink(target, link),
                Op::Chdir { path } => sys.chdir(path),
                Op::PivotRoot { new_root, put_old } => sys.pivot_root(new_root, put_old),
                Op::Umount { target, flags } => sys.umount2(target, *flags),
                Op::Sethostname { name } => sys.sethostname(name),
                Op::Umask { mask } => {
                    sys.umask(*mask);
                    Ok(())
                }
                Op::LoopbackUp => sys.loopback_up(),
                Op::MaskPath { path } => {
                    match sys.mount(Some(c"/dev/null"), path, None, MsFlags::MS_BIND, None) {
                        Err(Errno::ENOTDIR) => {
                            sys.mount(Some(c"tmpfs"), path, Some(c"tmpfs"), MsFlags::MS_RDONLY, None)
                        }
                        Err(Errno::ENOENT) => Ok(()),
                        other => other,
                    }
                }
                Op::ReadonlyPath { path, flags } => {
                    match sys.mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None) {
                        Err(Errno::ENOENT) => Ok(()),
                        Err(e) => Err(e),
                        Ok(()) => sys.mount(
                            Some(path),
                            path,
                            None,
                            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | *flags,
                            None,
                        ),
                    }
                }
            };
            if let Err(errno) = r {
                // The plan has a few dozen steps; the index always fits.
                #[allow(clippy::cast_possible_truncation)]
                return Err(StepFailure {
                    index: index as u32,
                    errno,
                });
            }
        }
        Ok(())
    }

    /// The stage of step `index` (allocation-free, for the child).
    pub fn stage_of(&self, index: u32) -> Option<Stage> {
        self.steps.get(index as usize).map(|s| s.stage)
    }

    /// The stage and path of step `index`, for error messages.
    pub fn describe(&self, index: u32) -> Option<(Stage, String)> {
        self.steps.get(index as usize).map(|s| (s.stage, s.op.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::RecordingSyscall;

    fn layout() -> RootfsLayout {
        RootfsLayout {
            image_dir: "/img".into(),
            upper_dir: "/s/upper".into(),
            work_dir: "/s/work".into(),
            merged_dir: "/s/merged".into(),
            hostname: "box".into(),
            user_namespace: false,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
        }
    }

    fn confined_layout() -> RootfsLayout {
        RootfsLayout {
            masked_paths: vec!["/proc/kcore".into(), "/sys/firmware".into()],
            readonly_paths: vec!["/proc/sys".into()],
            ..layout()
        }
    }

    #[test]
    fn in_a_user_namespace_devices_are_bind_mounted_from_the_host() {
        let mut l = layout();
        l.user_namespace = true;
        let rec = RecordingSyscall::new();
        SetupPlan::new(&l).unwrap().apply(&rec).unwrap();
        let calls = rec.calls();
        assert!(
            !calls.iter().any(|c| c.starts_with("mknod") && c.contains(" c ")),
            "{calls:?}"
        );
        let i = calls
            .iter()
            .position(|c| c == "mknod /s/merged/dev/null f 666")
            .unwrap();
        assert_eq!(calls[i + 1], "mount /dev/null /s/merged/dev/null - 0x1000 -");
        assert_eq!(
            calls.iter().filter(|c| c.contains("0x1000")).count(),
            DEVICES.len()
        );
    }

    #[test]
    fn plan_makes_exactly_these_calls() {
        let plan = SetupPlan::new(&layout()).unwrap();
        let rec = RecordingSyscall::new();
        plan.apply(&rec).unwrap();
        let calls = rec.calls();
        let expected = [
            "umask 0",
            "mount - / - 0x44000 -",
            "mount overlay /s/merged overlay 0x0 lowerdir=/img,upperdir=/s/upper,workdir=/s/work",
            "mkdir /s/merged/proc 555",
            "mount proc /s/merged/proc proc 0xe -",
            "mkdir /s/merged/dev 755",
            "mount tmpfs /s/merged/dev tmpfs 0xa mode=755,size=64k",
            "mknod /s/merged/dev/null c 1:3 666",
            "mknod /s/merged/dev/zero c 1:5 666",
            "mknod /s/merged/dev/full c 1:7 666",
            "mknod /s/merged/dev/random c 1:8 666",
            "mknod /s/merged/dev/urandom c 1:9 666",
            "mknod /s/merged/dev/tty c 5:0 666",
            "mkdir /s/merged/dev/pts 755",
            "mount devpts /s/merged/dev/pts devpts 0xa newinstance,ptmxmode=0666,mode=0620",
            "symlink pts/ptmx /s/merged/dev/ptmx",
            "mkdir /s/merged/dev/shm 1777",
            "mount shm /s/merged/dev/shm tmpfs 0x6 mode=1777",
            "symlink /proc/self/fd /s/merged/dev/fd",
            "symlink /proc/self/fd/0 /s/merged/dev/stdin",
            "symlink /proc/self/fd/1 /s/merged/dev/stdout",
            "symlink /proc/self/fd/2 /s/merged/dev/stderr",
            "mkdir /s/merged/tmp 1777",
            "mount tmpfs /s/merged/tmp tmpfs 0x6 mode=1777",
            "chdir /s/merged",
            "pivot_root . .",
            "umount2 . 0x2",
            "chdir /",
            "sethostname box",
            "loopback_up",
            "umask 22",
        ];
        assert_eq!(calls, expected);
        assert_eq!(plan.rootfs_steps(), 0..expected.len());
        assert!(plan.confinement_steps().is_empty());
    }

    #[test]
    fn confinement_paths_come_last_after_the_root_is_pivoted() {
        let plan = SetupPlan::new(&confined_layout()).unwrap();
        let rootfs = SetupPlan::new(&layout()).unwrap();
        assert_eq!(plan.rootfs_steps(), rootfs.rootfs_steps());
        let rec = RecordingSyscall::new();
        plan.apply(&rec).unwrap();
        let calls = rec.calls();
        let n = rootfs.steps().len();
        assert_eq!(calls[n - 1], "umask 22");
        assert_eq!(
            calls[n..],
            [
                "mount /dev/null /proc/kcore - 0x1000 -",
                "mount /dev/null /sys/firmware - 0x1000 -",
                "mount /proc/sys /proc/sys - 0x5000 -",
                // MS_BIND | MS_REMOUNT | MS_RDONLY, keeping /proc's nosuid, nodev, noexec.
                "mount /proc/sys /proc/sys - 0x102f -",
            ]
        );
        let rec = RecordingSyscall::new();
        plan.apply_range(&rec, plan.confinement_steps()).unwrap();
        assert_eq!(rec.calls(), calls[n..]);
    }

    #[test]
    fn a_masked_directory_gets_a_read_only_tmpfs_and_missing_paths_are_skipped() {
        let plan = SetupPlan::new(&confined_layout()).unwrap();
        // Binding a file over a directory fails with ENOTDIR.
        let rec = RecordingSyscall::failing_with("mount /dev/null", Errno::ENOTDIR);
        plan.apply_range(&rec, plan.confinement_steps()).unwrap();
        assert_eq!(
            rec.calls()[..2],
            [
                "mount /dev/null /proc/kcore - 0x1000 -",
                "mount tmpfs /proc/kcore tmpfs 0x1 -",
            ]
        );
        let rec = RecordingSyscall::failing_with("mount /", Errno::ENOENT);
        plan.apply_range(&rec, plan.confinement_steps()).unwrap();
        // No remount of a read-only path that does not exist.
        assert_eq!(rec.calls().len(), 3, "{:?}", rec.calls());
        let rec = RecordingSyscall::failing_with("mount /proc/sys", Errno::EACCES);
        let failure = plan.apply_range(&rec, plan.confinement_steps()).unwrap_err();
        assert_eq!(
            plan.describe(failure.index),
            Some((Stage::ReadonlyPath, "/proc/sys".to_string()))
        );
    }

    #[test]
    fn read_only_paths_outside_proc_are_refused() {
        let mut l = layout();
        l.readonly_paths = vec!["/etc".into()];
        assert!(matches!(
            SetupPlan::new(&l),
            Err(PlanError::BadPath {
                what: "read-only path",
                ..
            })
        ));
    }

    #[test]
    fn a_failing_step_is_reported_with_its_stage_and_path() {
        let plan = SetupPlan::new(&layout()).unwrap();
        let rec = RecordingSyscall::failing_on("pivot_root");
        let failure = plan.apply(&rec).unwrap_err();
        assert_eq!(failure.errno, Errno::EPERM);
        assert_eq!(
            plan.describe(failure.index),
            Some((Stage::PivotRoot, ".".to_string()))
        );
        // Nothing after the failing step ran.
        assert_eq!(rec.calls().last().map(String::as_str), Some("pivot_root . ."));
    }

    #[test]
    fn overlay_option_separators_in_paths_are_refused() {
        let mut l = layout();
        l.image_dir = "/img,upperdir=/etc".into();
        assert!(matches!(
            SetupPlan::new(&l),
            Err(PlanError::BadPath {
                what: "image dir",
                ..
            })
        ));
        let mut l = layout();
        l.upper_dir = "relative".into();
        assert!(SetupPlan::new(&l).is_err());
        let mut l = layout();
        l.hostname = "x".repeat(65);
        assert!(matches!(SetupPlan::new(&l), Err(PlanError::BadHostname(_))));
    }

    #[test]
    fn stages_round_trip_through_their_number() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_u32(s as u32), Some(s));
        }
        assert_eq!(Stage::from_u32(999), None);
    }
}
