//! What to run: a workload and its parameters, turned into the exact argument vector the
//! `cvbench-workload` binary receives. Every backend passes these same arguments, which is what makes
//! the workloads identical across isolation mechanisms.

use serde::{Deserialize, Serialize};

/// Path of the workload binary inside every image (container rootfs and VM disk alike).
pub const WORKLOAD_PATH_IN_IMAGE: &str = "/bin/cvbench-workload";
/// Directory of static files inside every image.
pub const WWW_DIR_IN_IMAGE: &str = "/srv/www";
/// Writable directory inside every sandbox where `oltp` keeps its database.
pub const DATA_DIR_IN_IMAGE: &str = "/var/lib/cvbench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Idle,
    Http,
    Oltp,
    /// `http` served until stopped, with the load driven from outside the sandbox by the harness
    /// (`wrk` in a client network namespace). Not in [`WorkloadKind::ALL`]: it needs root, `ip` and
    /// `wrk`, so it runs only when asked for by name.
    HttpOutside,
    /// Debian's nginx (`nginx-light`) from the services image, loaded by `wrk` from outside. Not in
    /// [`WorkloadKind::ALL`]: it needs `--image services`.
    Nginx,
    /// Debian's MariaDB (`mariadb-server`) from the services image, loaded by `sysbench` from
    /// outside. Not in [`WorkloadKind::ALL`]: it needs `--image services`.
    Mariadb,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 3] = [WorkloadKind::Idle, WorkloadKind::Http, WorkloadKind::Oltp];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Idle => "idle",
            WorkloadKind::Http => "http",
            WorkloadKind::Oltp => "oltp",
            WorkloadKind::HttpOutside => "http-outside",
            WorkloadKind::Nginx => "nginx",
            WorkloadKind::Mariadb => "mariadb",
        }
    }

    /// Whether this workload runs a real daemon from the services image rather than the
    /// `cvbench-workload` binary's own code.
    pub fn is_service(self) -> bool {
        matches!(self, WorkloadKind::Nginx | WorkloadKind::Mariadb)
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown workload {0:?} (expected one of: idle, http, oltp, http-outside, nginx, mariadb)")]
pub struct UnknownWorkload(pub String);

impl std::str::FromStr for WorkloadKind {
    type Err = UnknownWorkload;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "idle" => Ok(WorkloadKind::Idle),
            "http" => Ok(WorkloadKind::Http),
            "oltp" => Ok(WorkloadKind::Oltp),
            "http-outside" => Ok(WorkloadKind::HttpOutside),
            "nginx" => Ok(WorkloadKind::Nginx),
            "mariadb" => Ok(WorkloadKind::Mariadb),
            other => Err(UnknownWorkload(other.to_string())),
        }
    }
}

/// A workload with its parameters. Defaults are sized so that one run takes well under a second on a
/// 2-core host: `bench compare` must finish its default matrix in under two minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "workload", rename_all = "lowercase")]
pub enum WorkloadSpec {
    /// Announce ready, then wait until stopped.
    Idle,
    /// Serve `/srv/www` on `port`; with `selftest`, drive `requests` requests over `connections`
    /// keep-alive connections against itself, print RESULT and exit.
    ///
    /// With `from_outside` (and a backend that attaches instances to the harness's client network
    /// namespace), the same server is also loaded from outside: the instance is attached, and with a
    /// self-test the workload holds it back until the harness connects to the trigger port; before
    /// that the harness drives the same load with `wrk` from the client namespace (the same
    /// `requests` over the same `connections`, walking the same files in the same order). Without a
    /// self-test the server just serves until stopped (density). Backends without a network path run
    /// the self-test at once, and their cell says why the outside figures are missing.
    Http {
        port: u16,
        selftest: Option<HttpSelftest>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_outside: Option<FromOutside>,
    },
    /// Load an `sbtest` table of `rows` rows, announce ready, run `transactions` oltp_read_write
    /// transactions, print RESULT and exit.
    Oltp { rows: u32, transactions: u32 },
    /// Serve `/srv/www` on `port` until stopped (the same server as `Http`, no self-test); the
    /// harness reaches it over a veth from its client network namespace: first response, TCP connect
    /// latency, then `wrk` with `connections` connections for `duration_s` seconds on `path`. Every
    /// backend in a comparison gets the same parameters, so rows do equal work.
    #[serde(rename = "http-outside")]
    HttpOutside {
        port: u16,
        connections: u32,
        duration_s: u32,
        path: String,
    },
    /// Debian's nginx, started as its package starts it (`nginx -g 'daemon off;'` with the image's
    /// `/etc/nginx`), under the `cvbench-workload service` supervisor. READY is decided from the
    /// client namespace (`GET /` answers 200: `start_to_service_ready_ms`), then `wrk` with
    /// `connections` connections for `duration_s` seconds on `path`.
    Nginx {
        port: u16,
        connections: u32,
        duration_s: u32,
        path: String,
    },
    /// Debian's MariaDB (`mariadbd --user=mysql` with the image's `/etc/mysql`), its data directory
    /// initialised at image build time and written on the instance's writable layer. With
    /// `init_at_start`, the supervisor first runs `mariadb-install-db` into an empty data directory,
    /// as the official container images do on first start. READY is decided from the client
    /// namespace (protocol handshake, login, `SELECT 1`), then `sysbench oltp_read_write` prepares
    /// `tables` tables of `table_size` rows and runs `threads` threads for `duration_s` seconds.
    Mariadb {
        port: u16,
        init_at_start: bool,
        tables: u32,
        table_size: u32,
        threads: u32,
        duration_s: u32,
    },
}

/// The login the services image creates for clients from outside (sysbench and the READY probe),
/// with all privileges on [`MARIADB_DATABASE`] only.
pub const MARIADB_USER: &str = "sbtest";
/// Its password (the instance is reachable only from the harness's own client namespace).
pub const MARIADB_PASSWORD: &str = "sbtest";
/// The database sysbench loads.
pub const MARIADB_DATABASE: &str = "sbtest";
/// The data directory `init_at_start` initialises (empty in the image, owned by `mysql`).
pub const MARIADB_INIT_DATADIR: &str = "/var/lib/mysql-init";

/// How the `http` workload is reached from outside (see [`WorkloadSpec::Http`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromOutside {
    /// With a self-test: the workload starts it once a connection to this port arrived (the harness
    /// connects after its load from outside ended, so the two loads never overlap).
    pub trigger_port: u16,
}

impl FromOutside {
    pub const DEFAULT_TRIGGER_PORT: u16 = 8081;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSelftest {
    pub requests: u32,
    pub connections: u32,
}

impl WorkloadSpec {
    pub const DEFAULT_HTTP_PORT: u16 = 8080;
    /// Rows of the `oltp` table by default (here and when `--rows` is not given).
    pub const DEFAULT_OLTP_ROWS: u32 = 10_000;
    /// `oltp` transactions by default (here and when `--transactions` is not given).
    pub const DEFAULT_OLTP_TRANSACTIONS: u32 = 200;

    /// The default parameters for a kind, as `bench run` and `bench compare` use them.
    pub fn default_for(kind: WorkloadKind) -> Self {
        match kind {
            WorkloadKind::Idle => WorkloadSpec::Idle,
            WorkloadKind::Http => WorkloadSpec::Http {
                port: Self::DEFAULT_HTTP_PORT,
                selftest: Some(HttpSelftest {
                    requests: 2000,
                    connections: 4,
                }),
                from_outside: None,
            },
            WorkloadKind::Oltp => WorkloadSpec::Oltp {
                rows: Self::DEFAULT_OLTP_ROWS,
                transactions: Self::DEFAULT_OLTP_TRANSACTIONS,
            },
            WorkloadKind::HttpOutside => WorkloadSpec::HttpOutside {
                port: Self::DEFAULT_HTTP_PORT,
                connections: 4,
                duration_s: 2,
                path: "/4k.bin".into(),
            },
            WorkloadKind::Nginx => WorkloadSpec::Nginx {
                port: 80,
                connections: 4,
                duration_s: 2,
                path: "/".into(),
            },
            WorkloadKind::Mariadb => WorkloadSpec::Mariadb {
                port: 3306,
                init_at_start: false,
                tables: 2,
                table_size: 10_000,
                threads: 2,
                duration_s: 5,
            },
        }
    }

    /// `mariadb` with `init_at_start` set to `init`; any other workload unchanged.
    pub fn with_first_start_init(mut self, init: bool) -> Self {
        if let WorkloadSpec::Mariadb { init_at_start, .. } = &mut self {
            *init_at_start = init;
        }
        self
    }

    pub fn kind(&self) -> WorkloadKind {
        match self {
            WorkloadSpec::Idle => WorkloadKind::Idle,
            WorkloadSpec::Http { .. } => WorkloadKind::Http,
            WorkloadSpec::Oltp { .. } => WorkloadKind::Oltp,
            WorkloadSpec::HttpOutside { .. } => WorkloadKind::HttpOutside,
            WorkloadSpec::Nginx { .. } => WorkloadKind::Nginx,
            WorkloadSpec::Mariadb { .. } => WorkloadKind::Mariadb,
        }
    }

    /// What `bench run` and `bench compare` run for a kind: [`WorkloadSpec::default_for`], and for
    /// `http` the same load also driven from outside (`from_outside`, see [`WorkloadSpec::Http`]).
    pub fn for_bench(kind: WorkloadKind) -> Self {
        match Self::default_for(kind) {
            WorkloadSpec::Http { port, selftest, .. } => WorkloadSpec::Http {
                port,
                selftest,
                from_outside: Some(FromOutside {
                    trigger_port: FromOutside::DEFAULT_TRIGGER_PORT,
                }),
            },
            other => other,
        }
    }

    /// What `bench density` runs for a kind: `http` serves until stopped (no self-test), reached
    /// from outside; the others as [`WorkloadSpec::default_for`].
    pub fn density_for(kind: WorkloadKind) -> Self {
        match Self::for_bench(kind) {
            WorkloadSpec::Http {
                port, from_outside, ..
            } => WorkloadSpec::Http {
                port,
                selftest: None,
                from_outside,
            },
            other => other,
        }
    }

    /// This spec as launched on a backend that cannot be reached from outside (or without a client
    /// namespace): `http` without `from_outside`, its self-test at once.
    pub fn without_outside(&self) -> Self {
        match self {
            WorkloadSpec::Http { port, selftest, .. } => WorkloadSpec::Http {
                port: *port,
                selftest: *selftest,
                from_outside: None,
            },
            other => other.clone(),
        }
    }

    /// Whether instances of this spec are attached to the client network namespace.
    pub fn reached_from_outside(&self) -> bool {
        matches!(
            self,
            WorkloadSpec::HttpOutside { .. }
                | WorkloadSpec::Http {
                    from_outside: Some(_),
                    ..
                }
                | WorkloadSpec::Nginx { .. }
                | WorkloadSpec::Mariadb { .. }
        )
    }

    /// Whether the workload ends by itself after printing RESULT (otherwise it must be stopped).
    pub fn exits_by_itself(&self) -> bool {
        match self {
            WorkloadSpec::Idle => false,
            WorkloadSpec::Http { selftest, .. } => selftest.is_some(),
            WorkloadSpec::Oltp { .. } => true,
            WorkloadSpec::HttpOutside { .. } | WorkloadSpec::Nginx { .. } | WorkloadSpec::Mariadb { .. } => {
                false
            }
        }
    }

    /// The arguments after the program name, e.g. `["http", "--port", "8080", "--selftest", "2000,4"]`.
    pub fn to_args(&self) -> Vec<String> {
        match self {
            WorkloadSpec::Idle => vec!["idle".into()],
            WorkloadSpec::Http {
                port,
                selftest,
                from_outside,
            } => {
                let mut v = vec![
                    "http".into(),
                    "--port".into(),
                    port.to_string(),
                    "--root".into(),
                    WWW_DIR_IN_IMAGE.into(),
                ];
                if let Some(s) = selftest {
                    v.push("--selftest".into());
                    v.push(format!("{},{}", s.requests, s.connections));
                    if let Some(o) = from_outside {
                        v.push("--selftest-trigger".into());
                        v.push(o.trigger_port.to_string());
                    }
                }
                v
            }
            WorkloadSpec::HttpOutside { port, .. } => vec![
                "http".into(),
                "--port".into(),
                port.to_string(),
                "--root".into(),
                WWW_DIR_IN_IMAGE.into(),
            ],
            WorkloadSpec::Oltp { rows, transactions } => vec![
                "oltp".into(),
                "--dir".into(),
                DATA_DIR_IN_IMAGE.into(),
                "--rows".into(),
                rows.to_string(),
                "--transactions".into(),
                transactions.to_string(),
            ],
            WorkloadSpec::Nginx { .. } => vec!["service".into(), "nginx".into()],
            WorkloadSpec::Mariadb { init_at_start, .. } => {
                let mut v = vec!["service".into(), "mariadb".into()];
                if *init_at_start {
                    v.push("--init".into());
                }
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for k in WorkloadKind::ALL {
            assert_eq!(k.name().parse::<WorkloadKind>().unwrap(), k);
        }
        assert_eq!(
            "redis".parse::<WorkloadKind>(),
            Err(UnknownWorkload("redis".into()))
        );
    }

    #[test]
    fn args_name_the_subcommand_first() {
        for k in WorkloadKind::ALL {
            assert_eq!(WorkloadSpec::default_for(k).to_args()[0], k.name());
        }
        let a = WorkloadSpec::default_for(WorkloadKind::Http).to_args();
        assert!(a.windows(2).any(|w| w[0] == "--selftest" && w[1] == "2000,4"));
        assert!(!a.iter().any(|w| w == "--selftest-trigger"));
        let a = WorkloadSpec::for_bench(WorkloadKind::Http).to_args();
        assert!(a
            .windows(2)
            .any(|w| w[0] == "--selftest-trigger" && w[1] == "8081"));
    }

    #[test]
    fn http_is_reached_from_outside_unless_stripped() {
        assert!(!WorkloadSpec::default_for(WorkloadKind::Http).reached_from_outside());
        let http = WorkloadSpec::for_bench(WorkloadKind::Http);
        assert!(http.reached_from_outside());
        assert!(http.exits_by_itself());
        let inside = http.without_outside();
        assert!(!inside.reached_from_outside());
        assert!(!inside.to_args().iter().any(|a| a == "--selftest-trigger"));
        assert!(inside.to_args().iter().any(|a| a == "--selftest"));
        // Density: served until stopped, reached from outside, no trigger (nothing to start).
        let density = WorkloadSpec::density_for(WorkloadKind::Http);
        assert!(density.reached_from_outside());
        assert!(!density.exits_by_itself());
        assert!(!density.to_args().iter().any(|a| a.starts_with("--selftest")));
        assert_eq!(WorkloadSpec::density_for(WorkloadKind::Idle), WorkloadSpec::Idle);
        // Old results files (no from_outside) still read.
        let old: WorkloadSpec = serde_json::from_str(
            r#"{"workload":"http","port":8080,"selftest":{"requests":10,"connections":2}}"#,
        )
        .unwrap();
        assert!(!old.reached_from_outside());
        let json = serde_json::to_string(&inside).unwrap();
        assert!(!json.contains("from_outside"), "{json}");
    }

    #[test]
    fn http_outside_serves_until_stopped_without_a_selftest() {
        let k: WorkloadKind = "http-outside".parse().unwrap();
        assert_eq!(k.name(), "http-outside");
        let s = WorkloadSpec::default_for(k);
        assert_eq!(s.kind(), k);
        assert!(!s.exits_by_itself());
        let a = s.to_args();
        assert_eq!(a[0], "http");
        assert!(!a.iter().any(|w| w == "--selftest"));
    }

    #[test]
    fn services_run_under_the_supervisor_and_are_reached_from_outside() {
        for name in ["nginx", "mariadb"] {
            let k: WorkloadKind = name.parse().unwrap();
            assert!(k.is_service() && !WorkloadKind::ALL.contains(&k));
            let s = WorkloadSpec::default_for(k);
            assert_eq!(s.kind(), k);
            assert!(s.reached_from_outside() && !s.exits_by_itself());
            assert_eq!(s.to_args(), vec!["service".to_string(), name.to_string()]);
        }
        let WorkloadSpec::Mariadb {
            port,
            tables,
            table_size,
            threads,
            duration_s,
            ..
        } = WorkloadSpec::default_for(WorkloadKind::Mariadb)
        else {
            panic!("mariadb spec");
        };
        let init = WorkloadSpec::Mariadb {
            port,
            init_at_start: true,
            tables,
            table_size,
            threads,
            duration_s,
        };
        assert_eq!(init.to_args().last().map(String::as_str), Some("--init"));
        assert!(!WorkloadSpec::default_for(WorkloadKind::Http).reached_from_outside());
    }
}
