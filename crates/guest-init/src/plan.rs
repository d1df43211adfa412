//! The guest's filesystem set-up as data: which mounts happen, in which order, at which stage.
//!
//! [`boot_plan`] turns a [`Layout`] into a list of [`Step`]s, and [`execute`] carries them out through
//! a [`Syscalls`] implementation, so the order and arguments are unit-tested with a recording fake
//! while the real binary passes [`crate::sys::RealSyscalls`].
//!
//! The shape follows the microVM contract: /proc, /sys and /dev on the read-only image; the scratch
//! disk mounted, an overlay (lower = the image's `/`, upper and work on the scratch disk) built, the
//! root pivoted into it, then /proc, /dev, /sys and /tmp inside the new root.
//!
//! Writable data therefore lands in the overlay's upper dir on the scratch disk, with nothing
//! workload-specific here: `oltp` writes `/var/lib/cvbench`, and the services image's MariaDB writes
//! its data directory `/var/lib/mysql` (made at image build time, owned by `mysql`, kept by the ext4
//! image) the same way. That is on purpose rather than a separate mount of the scratch disk over the
//! data directory: a container's MariaDB also starts on an overlay whose lower layer holds the
//! initialised directory, so both copy up the same redo log and system tablespace on the first write,
//! and the VM's figure counts the same work (the scratch disk is journaled ext4 like the host's).

use std::fmt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::InitError;

/// The moment of init's life a failure belongs to; named in every `CVBENCH ERROR` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Arguments,
    MountProc,
    MountSys,
    MountDev,
    Loopback,
    Network,
    MountScratch,
    Overlay,
    PivotRoot,
    NewRootMounts,
    Console,
    SpawnWorkload,
    WaitWorkload,
    Workload,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Arguments => "arguments",
            Stage::MountProc => "mount-proc",
            Stage::MountSys => "mount-sys",
            Stage::MountDev => "mount-dev",
            Stage::Loopback => "loopback",
            Stage::Network => "network",
            Stage::MountScratch => "mount-scratch",
            Stage::Overlay => "overlay",
            Stage::PivotRoot => "pivot-root",
            Stage::NewRootMounts => "new-root-mounts",
            Stage::Console => "console",
            Stage::SpawnWorkload => "spawn-workload",
            Stage::WaitWorkload => "wait-workload",
            Stage::Workload => "workload",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where things are in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The per-VM writable disk (vdb), pre-formatted ext4.
    pub scratch_device: PathBuf,
    pub scratch_fstype: &'static str,
    /// Mount point of the scratch disk on the read-only image.
    pub scratch_dir: PathBuf,
    /// Mount point of the overlay that becomes `/`.
    pub new_root: PathBuf,
}

impl Layout {
    /// The contract's paths: scratch disk at `/mnt/scratch`, overlay at `/mnt/root`.
    pub const SCRATCH_DIR: &'static str = "/mnt/scratch";
    pub const NEW_ROOT: &'static str = "/mnt/root";
    /// The directory init itself lives in; it exists in every VM image.
    pub const INIT_DIR: &'static str = "/cvbench";

    /// The layout for an image: the contract's mount points when the image has them. The image is
    /// read-only, so init cannot create them; an image without them gets the scratch disk mounted over
    /// `/cvbench` (which always exists, since init lives there) and the overlay at `/cvbench/root`,
    /// a directory init creates on the scratch disk.
    pub fn for_image(dir_exists: impl Fn(&Path) -> bool) -> Layout {
        let (scratch_dir, new_root) =
            if dir_exists(Path::new(Self::SCRATCH_DIR)) && dir_exists(Path::new(Self::NEW_ROOT)) {
                (PathBuf::from(Self::SCRATCH_DIR), PathBuf::from(Self::NEW_ROOT))
            } else {
                (
                    PathBuf::from(Self::INIT_DIR),
                    Path::new(Self::INIT_DIR).join("root"),
                )
            };
        Layout {
            scratch_device: PathBuf::from("/dev/vdb"),
            scratch_fstype: "ext4",
            scratch_dir,
            new_root,
        }
    }

    pub fn upper_dir(&self) -> PathBuf {
        self.scratch_dir.join("upper")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.scratch_dir.join("work")
    }
}

/// One `mount(2)` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    pub source: PathBuf,
    pub target: PathBuf,
    pub fstype: String,
    pub flags: MsFlags,
    pub data: Option<String>,
}

impl MountOp {
    fn new(source: impl Into<PathBuf>, target: impl Into<PathBuf>, fstype: &str, flags: MsFlags) -> Self {
        MountOp {
            source: source.into(),
            target: target.into(),
            fstype: fstype.to_string(),
            flags,
            data: None,
        }
    }

    fn with_data(mut self, data: String) -> Self {
        self.data = Some(data);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Mount on an existing target (a [`Op::CreateDirAll`] step before it creates one where needed).
    Mount(MountOp),
    /// Mount unless something is already mounted on the target (the kernel's
    /// `CONFIG_DEVTMPFS_MOUNT` mounts /dev before init runs).
    MountUnlessMounted(MountOp),
    CreateDirAll(PathBuf),
    /// Make `new_root` the root: pivot_root, detach the old root, chdir `/`.
    PivotInto(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: Stage,
    pub op: Op,
}

fn step(stage: Stage, op: Op) -> Step {
    Step { stage, op }
}

/// The kernel calls the plan needs; faked in tests.
pub trait Syscalls {
    fn mount(&mut self, mount: &MountOp) -> std::io::Result<()>;
    fn is_mount_point(&mut self, path: &Path) -> std::io::Result<bool>;
    fn create_dir_all(&mut self, path: &Path) -> std::io::Result<()>;
    fn pivot_into(&mut self, new_root: &Path) -> std::io::Result<()>;
}

/// The mounts before the workload runs, in order.
pub fn boot_plan(layout: &Layout) -> Vec<Step> {
    let pseudo = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let dev = MsFlags::MS_NOSUID;
    let tmp = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let overlay_data = format!(
        "lowerdir=/,upperdir={},workdir={}",
        layout.upper_dir().display(),
        layout.work_dir().display()
    );
    let new_root_creatable = layout.new_root.starts_with(&layout.scratch_dir);
    let mut plan = vec![
        step(
            Stage::MountProc,
            Op::Mount(MountOp::new("proc", "/proc", "proc", pseudo)),
        ),
        step(
            Stage::MountSys,
            Op::Mount(MountOp::new("sysfs", "/sys", "sysfs", pseudo)),
        ),
        step(
            Stage::MountDev,
            Op::MountUnlessMounted(MountOp::new("devtmpfs", "/dev", "devtmpfs", dev)),
        ),
        step(
            Stage::MountScratch,
            Op::Mount(MountOp::new(
                &layout.scratch_device,
                &layout.scratch_dir,
                layout.scratch_fstype,
                MsFlags::MS_NOATIME,
            )),
        ),
        step(Stage::MountScratch, Op::CreateDirAll(layout.upper_dir())),
        step(Stage::MountScratch, Op::CreateDirAll(layout.work_dir())),
    ];
    if new_root_creatable {
        plan.push(step(Stage::Overlay, Op::CreateDirAll(layout.new_root.clone())));
    }
    plan.push(step(
        Stage::Overlay,
        Op::Mount(
            MountOp::new("overlay", &layout.new_root, "overlay", MsFlags::MS_NOATIME).with_data(overlay_data),
        ),
    ));
    plan.push(step(Stage::PivotRoot, Op::PivotInto(layout.new_root.clone())));
    for mount in [
        MountOp::new("proc", "/proc", "proc", pseudo),
        MountOp::new("devtmpfs", "/dev", "devtmpfs", dev),
        MountOp::new("sysfs", "/sys", "sysfs", pseudo),
        MountOp::new("tmpfs", "/tmp", "tmpfs", tmp).with_data("mode=1777".to_string()),
    ] {
        // The new root is the writable overlay, so the mount points can be created.
        plan.push(step(Stage::NewRootMounts, Op::CreateDirAll(mount.target.clone())));
        plan.push(step(Stage::NewRootMounts, Op::Mount(mount)));
    }
    plan
}

/// Carries out `plan` in order; the first failure stops it and names its stage.
pub fn execute(plan: &[Step], sys: &mut dyn Syscalls) -> Result<(), InitError> {
    for Step { stage, op } in plan {
        let stage = *stage;
        match op {
            Op::Mount(mount) => do_mount(stage, mount, sys)?,
            Op::MountUnlessMounted(mount) => {
                let mounted = sys
                    .is_mount_point(&mount.target)
                    .map_err(|source| InitError::Inspect {
                        stage,
                        path: mount.target.clone(),
                        source,
                    })?;
                if !mounted {
                    do_mount(stage, mount, sys)?;
                }
            }
            Op::CreateDirAll(path) => sys.create_dir_all(path).map_err(|source| InitError::CreateDir {
                stage,
                path: path.clone(),
                source,
            })?,
            Op::PivotInto(new_root) => sys.pivot_into(new_root).map_err(|source| InitError::PivotRoot {
                new_root: new_root.clone(),
                source,
            })?,
        }
    }
    Ok(())
}

fn do_mount(stage: Stage, mount: &MountOp, sys: &mut dyn Syscalls) -> Result<(), InitError> {
    sys.mount(mount).map_err(|source| InitError::Mount {
        stage,
        source_path: mount.source.clone(),
        target: mount.target.clone(),
        fstype: mount.fstype.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Records every call; fails the mount whose target is `fail_mount_at`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        mounted: Vec<PathBuf>,
        fail_mount_at: Option<PathBuf>,
    }

    impl Syscalls for Recorder {
        fn mount(&mut self, m: &MountOp) -> io::Result<()> {
            if self.fail_mount_at.as_deref() == Some(m.target.as_path()) {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            self.calls.push(format!(
                "mount {} {} {} {}",
                m.fstype,
                m.source.display(),
                m.target.display(),
                m.data.as_deref().unwrap_or("-")
            ));
            Ok(())
        }
        fn is_mount_point(&mut self, path: &Path) -> io::Result<bool> {
            Ok(self.mounted.iter().any(|p| p == path))
        }
        fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
            self.calls.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn pivot_into(&mut self, new_root: &Path) -> io::Result<()> {
            self.calls.push(format!("pivot {}", new_root.display()));
            Ok(())
        }
    }

    fn contract_layout() -> Layout {
        Layout::for_image(|_| true)
    }

    #[test]
    fn contract_layout_mounts_in_order_and_pivots_into_the_overlay() {
        let mut sys = Recorder {
            mounted: vec![PathBuf::from("/dev")],
            ..Default::default()
        };
        execute(&boot_plan(&contract_layout()), &mut sys).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mount proc proc /proc -",
                "mount sysfs sysfs /sys -",
                "mount ext4 /dev/vdb /mnt/scratch -",
                "mkdir /mnt/scratch/upper",
                "mkdir /mnt/scratch/work",
                "mount overlay overlay /mnt/root lowerdir=/,upperdir=/mnt/scratch/upper,workdir=/mnt/scratch/work",
                "pivot /mnt/root",
                "mkdir /proc",
                "mount proc proc /proc -",
                "mkdir /dev",
                "mount devtmpfs devtmpfs /dev -",
                "mkdir /sys",
                "mount sysfs sysfs /sys -",
                "mkdir /tmp",
                "mount tmpfs tmpfs /tmp mode=1777",
            ]
        );
    }

    #[test]
    fn dev_is_mounted_when_the_kernel_did_not() {
        let mut sys = Recorder::default();
        execute(&boot_plan(&contract_layout()), &mut sys).unwrap();
        assert_eq!(sys.calls[2], "mount devtmpfs devtmpfs /dev -");
    }

    #[test]
    fn image_without_mnt_uses_init_dir_and_creates_the_new_root_on_scratch() {
        let layout = Layout::for_image(|p| p == Path::new("/mnt/scratch"));
        assert_eq!(layout.scratch_dir, Path::new("/cvbench"));
        assert_eq!(layout.new_root, Path::new("/cvbench/root"));
        let mut sys = Recorder {
            mounted: vec![PathBuf::from("/dev")],
            ..Default::default()
        };
        execute(&boot_plan(&layout), &mut sys).unwrap();
        let scratch = sys
            .calls
            .iter()
            .position(|c| c == "mount ext4 /dev/vdb /cvbench -")
            .unwrap();
        let mkdir_root = sys.calls.iter().position(|c| c == "mkdir /cvbench/root").unwrap();
        let overlay = sys
            .calls
            .iter()
            .position(|c| c.starts_with("mount overlay overlay /cvbench/root "))
            .unwrap();
        assert!(scratch < mkdir_root && mkdir_root < overlay, "{:?}", sys.calls);
    }

    #[test]
    fn a_failing_mount_stops_the_plan_and_names_stage_and_target() {
        let mut sys = Recorder {
            mounted: vec![PathBuf::from("/dev")],
            fail_mount_at: Some(PathBuf::from("/mnt/scratch")),
            ..Default::default()
        };
        let err = execute(&boot_plan(&contract_layout()), &mut sys).unwrap_err();
        assert_eq!(err.stage(), Stage::MountScratch);
        let text = err.to_string();
        assert!(text.starts_with("mount-scratch: "), "{text}");
        assert!(
            text.contains("/dev/vdb") && text.contains("/mnt/scratch") && text.contains("ext4"),
            "{text}"
        );
        assert!(
            !sys.calls.iter().any(|c| c.contains("overlay")),
            "plan went on after the failure"
        );
    }
}
