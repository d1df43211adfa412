//! Init's failures. Each names the [`Stage`] it happened in and the path or value involved, and is
//! reported on the console as one `CVBENCH ERROR <stage>: <reason>` line, which the harness reads like
//! any other protocol line.

use std::path::PathBuf;

use crate::args::ArgsError;
use crate::plan::Stage;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{stage}: {0}", stage = Stage::Arguments)]
    Arguments(#[from] ArgsError),
    #[error("{stage}: mounting {} ({fstype}) at {}: {source}", source_path.display(), target.display())]
    Mount {
        stage: Stage,
        source_path: PathBuf,
        target: PathBuf,
        fstype: String,
        source: std::io::Error,
    },
    #[error("{stage}: creating directory {}: {source}", path.display())]
    CreateDir {
        stage: Stage,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{stage}: inspecting {}: {source}", path.display())]
    Inspect {
        stage: Stage,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: switching the root to {}: {source}", Stage::PivotRoot, new_root.display())]
    PivotRoot {
        new_root: PathBuf,
        source: std::io::Error,
    },
    #[error("{stage}: bringing up lo: {0}", stage = Stage::Loopback)]
    Loopback(std::io::Error),
    #[error("{stage}: eth0 from the kernel command line: {0}", stage = Stage::Network)]
    NetSetup(#[from] crate::net::NetSetupError),
    #[error("{stage}: configuring eth0: {0}", stage = Stage::Network)]
    Network(std::io::Error),
    #[error("{}: opening {}: {source}", Stage::Console, path.display())]
    Console { path: PathBuf, source: std::io::Error },
    #[error("{}: starting {}: {source}", Stage::SpawnWorkload, path.display())]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("{}: waiting for pid {pid}: {source}", Stage::WaitWorkload)]
    Wait { pid: i32, source: nix::Error },
    #[error("{}: {path} exited with status {code}", Stage::Workload, path = path.display())]
    WorkloadExited { path: PathBuf, code: i32 },
    #[error("{}: {path} was killed by signal {signal}", Stage::Workload, path = path.display())]
    WorkloadKilled { path: PathBuf, signal: String },
}

impl InitError {
    pub fn stage(&self) -> Stage {
        match self {
            InitError::Arguments(_) => Stage::Arguments,
            InitError::Mount { stage, .. }
            | InitError::CreateDir { stage, .. }
            | InitError::Inspect { stage, .. } => *stage,
            InitError::PivotRoot { .. } => Stage::PivotRoot,
            InitError::Loopback(_) => Stage::Loopback,
            InitError::NetSetup(_) | InitError::Network(_) => Stage::Network,
            InitError::Console { .. } => Stage::Console,
            InitError::Spawn { .. } => Stage::SpawnWorkload,
            InitError::Wait { .. } => Stage::WaitWorkload,
            InitError::WorkloadExited { .. } | InitError::WorkloadKilled { .. } => Stage::Workload,
        }
    }

    /// The `CVBENCH ERROR ...` line for the console (without newline).
    pub fn console_line(&self) -> String {
        workload::protocol::error_line(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::{parse_line, ProtocolLine};

    #[test]
    fn console_line_is_a_protocol_error_naming_stage_and_path() {
        let err = InitError::Spawn {
            path: PathBuf::from("/bin/cvbench-workload"),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(err.stage(), Stage::SpawnWorkload);
        let Some(ProtocolLine::Error(text)) = parse_line(&err.console_line()).unwrap() else {
            panic!("not an error line: {}", err.console_line());
        };
        assert!(
            text.starts_with("spawn-workload: starting /bin/cvbench-workload: "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn every_variant_starts_with_its_stage_name() {
        let io = || std::io::Error::from_raw_os_error(libc::EIO);
        let errors = [
            InitError::Arguments(ArgsError::NoWorkload { got: vec![] }),
            InitError::PivotRoot {
                new_root: "/mnt/root".into(),
                source: io(),
            },
            InitError::Loopback(io()),
            InitError::Network(io()),
            InitError::NetSetup(crate::net::NetSetupError::GatewayWithoutAddress),
            InitError::Console {
                path: "/dev/console".into(),
                source: io(),
            },
            InitError::Wait {
                pid: 7,
                source: nix::Error::ECHILD,
            },
            InitError::WorkloadExited {
                path: "/bin/w".into(),
                code: 3,
            },
            InitError::WorkloadKilled {
                path: "/bin/w".into(),
                signal: "SIGKILL".into(),
            },
        ];
        for err in errors {
            let text = err.to_string();
            assert!(text.starts_with(&format!("{}: ", err.stage())), "{text}");
            assert!(!err.console_line().contains('\n'));
        }
    }

    #[test]
    fn workload_exit_names_code_and_signal() {
        let exited = InitError::WorkloadExited {
            path: "/bin/cvbench-workload".into(),
            code: 3,
        };
        assert_eq!(
            exited.to_string(),
            "workload: /bin/cvbench-workload exited with status 3"
        );
        let killed = InitError::WorkloadKilled {
            path: "/bin/cvbench-workload".into(),
            signal: "SIGKILL".into(),
        };
        assert_eq!(
            killed.to_string(),
            "workload: /bin/cvbench-workload was killed by signal SIGKILL"
        );
    }
}
