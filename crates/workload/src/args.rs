//! Command-line parsing for `cvbench-workload`, by hand: the binary's start-up time is one of the
//! figures cvbench measures, and the grammar is small and fixed (it is whatever
//! [`workload::WorkloadSpec::to_args`] produces, plus `--root`/`--dir` defaults).

use std::path::PathBuf;

use workload::spec::{HttpSelftest, DATA_DIR_IN_IMAGE, WWW_DIR_IN_IMAGE};
use workload::WorkloadSpec;

pub const USAGE: &str = "\
usage: cvbench-workload idle
       cvbench-workload http [--port P] [--root DIR] [--selftest N,C [--selftest-trigger PORT]]
       cvbench-workload oltp [--dir DIR] [--rows R] [--transactions T]
       cvbench-workload service nginx|mariadb [--init]
       cvbench-workload --help | --version";

/// A fully parsed invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Idle,
    Http(HttpArgs),
    Oltp(OltpArgs),
    Service(ServiceArgs),
}

/// A daemon of the services image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Nginx,
    Mariadb,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Nginx => "nginx",
            Daemon::Mariadb => "mariadb",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceArgs {
    pub daemon: Daemon,
    /// `--init` (mariadb only): initialise an empty data directory first.
    pub init: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpArgs {
    pub port: u16,
    pub root: PathBuf,
    /// `--selftest N,C`: N requests over C keep-alive connections.
    pub selftest: Option<HttpSelftest>,
    /// `--selftest-trigger PORT`: the self-test waits for a connection to PORT (the harness makes
    /// it once its load from outside is done).
    pub selftest_trigger: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OltpArgs {
    pub dir: PathBuf,
    pub rows: u32,
    pub transactions: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("missing subcommand")]
    MissingSubcommand,
    #[error("unknown subcommand {0:?}")]
    UnknownSubcommand(String),
    #[error("unknown option {option:?} for {subcommand}")]
    UnknownOption {
        subcommand: &'static str,
        option: String,
    },
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("invalid value {value:?} for {option}: {reason}")]
    InvalidValue {
        option: String,
        value: String,
        reason: String,
    },
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let Some(sub) = args.next() else {
        return Err(UsageError::MissingSubcommand);
    };
    let rest: Vec<String> = args.collect();
    match sub.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "idle" => {
            let options = Options::split("idle", &rest, &[])?;
            options.finish()?;
            Ok(Command::Idle)
        }
        "http" => {
            let mut options = Options::split(
                "http",
                &rest,
                &["--port", "--root", "--selftest", "--selftest-trigger"],
            )?;
            let port = options
                .take("--port")
                .map(|v| parse_number::<u16>("--port", &v))
                .transpose()?
                .unwrap_or(WorkloadSpec::DEFAULT_HTTP_PORT);
            let root = options
                .take("--root")
                .map(PathBuf::from)
                .unwrap_or_else(|| WWW_DIR_IN_IMAGE.into());
            let selftest = options
                .take("--selftest")
                .map(|v| parse_selftest(&v))
                .transpose()?;
            let selftest_trigger = options
                .take("--selftest-trigger")
                .map(|v| parse_number::<u16>("--selftest-trigger", &v))
                .transpose()?;
            options.finish()?;
            if let Some(trigger) = selftest_trigger {
                let invalid = |reason: &str| UsageError::InvalidValue {
                    option: "--selftest-trigger".into(),
                    value: trigger.to_string(),
                    reason: reason.into(),
                };
                if selftest.is_none() {
                    return Err(invalid("needs --selftest (there is nothing to trigger)"));
                }
                if trigger == 0 || trigger == port {
                    return Err(invalid("must be a port other than 0 and --port"));
                }
            }
            Ok(Command::Http(HttpArgs {
                port,
                root,
                selftest,
                selftest_trigger,
            }))
        }
        "oltp" => {
            let mut options = Options::split("oltp", &rest, &["--dir", "--rows", "--transactions"])?;
            let dir = options
                .take("--dir")
                .map(PathBuf::from)
                .unwrap_or_else(|| DATA_DIR_IN_IMAGE.into());
            let rows = options
                .take("--rows")
                .map(|v| parse_positive("--rows", &v))
                .transpose()?
                .unwrap_or(WorkloadSpec::DEFAULT_OLTP_ROWS);
            let transactions = options
                .take("--transactions")
                .map(|v| parse_positive("--transactions", &v))
                .transpose()?
                .unwrap_or(WorkloadSpec::DEFAULT_OLTP_TRANSACTIONS);
            options.finish()?;
            Ok(Command::Oltp(OltpArgs {
                dir,
                rows,
                transactions,
            }))
        }
        "service" => parse_service(&rest),
        other => Err(UsageError::UnknownSubcommand(other.to_string())),
    }
}

/// `service nginx|mariadb [--init]` (`--init` only for mariadb).
fn parse_service(rest: &[String]) -> Result<Command, UsageError> {
    let daemon = match rest.first().map(String::as_str) {
        Some("nginx") => Daemon::Nginx,
        Some("mariadb") => Daemon::Mariadb,
        Some(other) => {
            return Err(UsageError::InvalidValue {
                option: "service".into(),
                value: other.into(),
                reason: "expected nginx or mariadb".into(),
            })
        }
        None => return Err(UsageError::MissingValue("service".into())),
    };
    let mut init = false;
    for arg in &rest[1..] {
        match arg.as_str() {
            "--init" if daemon == Daemon::Mariadb && !init => init = true,
            _ => {
                return Err(UsageError::UnknownOption {
                    subcommand: "service",
                    option: arg.clone(),
                })
            }
        }
    }
    Ok(Command::Service(ServiceArgs { daemon, init }))
}

/// `--name value` and `--name=value` pairs of one subcommand; each option at most once.
struct Options {
    subcommand: &'static str,
    values: Vec<(String, String)>,
}

impl Options {
    fn split(subcommand: &'static str, args: &[String], known: &[&str]) -> Result<Self, UsageError> {
        let mut values: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            if !known.contains(&name.as_str()) {
                return Err(UsageError::UnknownOption {
                    subcommand,
                    option: arg.clone(),
                });
            }
            let value = match value {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| UsageError::MissingValue(name.clone()))?
                }
            };
            if values.iter().any(|(n, _)| *n == name) {
                return Err(UsageError::InvalidValue {
                    option: name,
                    value,
                    reason: "given twice".into(),
                });
            }
            values.push((name, value));
            i += 1;
        }
        Ok(Options { subcommand, values })
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| n == name)?;
        Some(self.values.remove(i).1)
    }

    fn finish(self) -> Result<(), UsageError> {
        match self.values.into_iter().next() {
            None => Ok(()),
            Some((option, _)) => Err(UsageError::UnknownOption {
                subcommand: self.subcommand,
                option,
            }),
        }
    }
}

fn parse_number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, UsageError>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| UsageError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

fn parse_positive(option: &str, value: &str) -> Result<u32, UsageError> {
    let n = parse_number::<u32>(option, value)?;
    if n == 0 {
        return Err(UsageError::InvalidValue {
            option: option.to_string(),
            value: value.to_string(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(n)
}

fn parse_selftest(value: &str) -> Result<HttpSelftest, UsageError> {
    let invalid = |reason: &str| UsageError::InvalidValue {
        option: "--selftest".into(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (n, c) = value
        .split_once(',')
        .ok_or_else(|| invalid("expected N,C (requests,connections)"))?;
    let requests = parse_positive("--selftest", n.trim())?;
    let connections = parse_positive("--selftest", c.trim())?;
    if connections > requests {
        return Err(invalid("more connections than requests"));
    }
    Ok(HttpSelftest {
        requests,
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::WorkloadKind;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().copied())
    }

    #[test]
    fn every_default_spec_parses_back() {
        for kind in WorkloadKind::ALL {
            let spec = WorkloadSpec::default_for(kind);
            let parsed = parse(spec.to_args()).unwrap();
            match (spec, parsed) {
                (WorkloadSpec::Idle, Command::Idle) => {}
                (
                    WorkloadSpec::Http {
                        port,
                        selftest,
                        from_outside,
                    },
                    Command::Http(h),
                ) => {
                    assert_eq!(h.port, port);
                    assert_eq!(h.root, PathBuf::from(WWW_DIR_IN_IMAGE));
                    assert_eq!(h.selftest, selftest);
                    assert_eq!(h.selftest_trigger, from_outside.map(|o| o.trigger_port));
                }
                (WorkloadSpec::Oltp { rows, transactions }, Command::Oltp(o)) => {
                    assert_eq!((o.rows, o.transactions), (rows, transactions));
                    assert_eq!(o.dir, PathBuf::from(DATA_DIR_IN_IMAGE));
                }
                (spec, parsed) => panic!("{spec:?} parsed as {parsed:?}"),
            }
        }
    }

    #[test]
    fn service_specs_parse_back_and_init_is_mariadb_only() {
        let nginx = parse(WorkloadSpec::default_for(WorkloadKind::Nginx).to_args()).unwrap();
        assert_eq!(
            nginx,
            Command::Service(ServiceArgs {
                daemon: Daemon::Nginx,
                init: false
            })
        );
        assert_eq!(
            parse_strs(&["service", "mariadb", "--init"]).unwrap(),
            Command::Service(ServiceArgs {
                daemon: Daemon::Mariadb,
                init: true
            })
        );
        assert!(parse_strs(&["service", "nginx", "--init"]).is_err());
        assert!(parse_strs(&["service", "mariadb", "--init", "--init"]).is_err());
        assert!(parse_strs(&["service", "redis"]).is_err());
        assert!(parse_strs(&["service"]).is_err());
    }

    #[test]
    fn explicit_values_and_equals_form() {
        let spec = WorkloadSpec::Http {
            port: 9,
            selftest: Some(HttpSelftest {
                requests: 10,
                connections: 2,
            }),
            from_outside: None,
        };
        let mut args = spec.to_args();
        args.push("--root=/tmp/x".into());
        // --root given twice (to_args already has it)
        assert!(matches!(parse(args), Err(UsageError::InvalidValue { .. })));
        assert_eq!(
            parse_strs(&["http", "--port=81", "--root", "/w"]).unwrap(),
            Command::Http(HttpArgs {
                port: 81,
                root: "/w".into(),
                selftest: None,
                selftest_trigger: None,
            })
        );
        assert_eq!(
            parse_strs(&["oltp", "--dir", "/d", "--rows", "5", "--transactions=7"]).unwrap(),
            Command::Oltp(OltpArgs {
                dir: "/d".into(),
                rows: 5,
                transactions: 7
            })
        );
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        assert_eq!(parse_strs(&[]), Err(UsageError::MissingSubcommand));
        assert_eq!(
            parse_strs(&["nginx"]),
            Err(UsageError::UnknownSubcommand("nginx".into()))
        );
        assert!(matches!(
            parse_strs(&["idle", "--port", "1"]),
            Err(UsageError::UnknownOption { .. })
        ));
        assert_eq!(
            parse_strs(&["http", "--port"]),
            Err(UsageError::MissingValue("--port".into()))
        );
        assert!(matches!(
            parse_strs(&["http", "--port", "70000"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["http", "--port", "-1"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["http", "--selftest", "10"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["http", "--selftest", "0,1"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["http", "--selftest", "2,3"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["http", "--selftest", "a,b"]),
            Err(UsageError::InvalidValue { .. })
        ));
        for bad in [
            &["http", "--selftest-trigger", "81"][..],
            &["http", "--selftest", "4,2", "--selftest-trigger", "8080"],
            &["http", "--selftest", "4,2", "--selftest-trigger", "0"],
        ] {
            assert!(
                matches!(parse_strs(bad), Err(UsageError::InvalidValue { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_strs(&["http", "--selftest", "4,2", "--selftest-trigger", "81"]),
            Ok(Command::Http(HttpArgs {
                selftest_trigger: Some(81),
                ..
            }))
        ));
        assert!(matches!(
            parse_strs(&["oltp", "--rows", "0"]),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_strs(&["oltp", "extra"]),
            Err(UsageError::UnknownOption { .. })
        ));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["-V"]), Ok(Command::Version));
    }
}
