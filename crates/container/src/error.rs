//! The errors of a container's lifecycle, each naming the stage, path or pid involved.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroup::CgroupError;
use crate::setup::{PlanError, Stage};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid container config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("image directory {path} is missing or not a directory")]
    MissingImage { path: PathBuf },
    #[error("container {name} already exists ({path}); run `bench cleanup` if it is left over")]
    AlreadyExists { name: String, path: PathBuf },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("preparing the confinement: {0}")]
    Confine(#[from] crate::confine::ConfineError),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("state file {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Sys { context: &'static str, source: Errno },
    #[error("clone of the container process failed: {source}")]
    Clone { source: Errno },
    #[error("container process {pid} failed {stage} ({path}): {errno}")]
    ChildSetup {
        pid: i32,
        stage: Stage,
        path: String,
        errno: Errno,
    },
    #[error("container process {pid} could not exec {path}: {errno}")]
    Exec { pid: i32, path: String, errno: Errno },
    #[error("container process {pid} ended during setup without reporting why: {status}")]
    ChildVanished { pid: i32, status: String },
    #[error("container {name}: {what} before start()")]
    NotStarted { name: String, what: &'static str },
    #[error("container {name} was already started")]
    AlreadyStarted { name: String },
    #[error("waiting for container process {pid}: {source}")]
    Wait { pid: i32, source: Errno },
    #[error("signalling container process {pid}: {source}")]
    Signal { pid: i32, source: Errno },
    #[error("unmounting {path}: {source}")]
    Unmount { path: PathBuf, source: Errno },
    #[error("{count} errors while destroying container {name}; first: {first}")]
    Destroy {
        name: String,
        count: usize,
        first: Box<ContainerError>,
    },
}

impl ContainerError {
    /// Maps an I/O error to [`ContainerError::Io`] naming what was being done to which path. The
    /// path is converted only when there is an error, so passing `&Path` costs nothing on success.
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> ContainerError {
        move |source| ContainerError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
