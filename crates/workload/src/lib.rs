//! The identical workloads cvbench runs under every isolation mechanism, and the line protocol they
//! speak to whoever launched them (a container's stdout pipe, a VM's serial console).
//!
//! Only [`protocol`] and [`spec`] are the contract other crates rely on; the workloads themselves live
//! in the binary `cvbench-workload` (its modules sit beside this file: `main.rs`, `args.rs`,
//! `idle.rs`, `http/`, `oltp.rs`), which is statically linked so an image needs nothing else.
//!
//! # The binary
//!
//! Its arguments are exactly what [`WorkloadSpec::to_args`] produces:
//!
//! | invocation | what it does |
//! |---|---|
//! | `idle` | prints `CVBENCH READY idle`, then waits for SIGTERM or SIGINT and exits 0. |
//! | `http --port P --root DIR` | HTTP/1.1 static-file server on `0.0.0.0:P` for `DIR` (thread per connection, keep-alive and pipelining, bodies by `sendfile`, Content-Type by extension, 404 for missing files, 400 for malformed requests or paths leaving the root, which `openat2(RESOLVE_BENEATH)` also enforces). `CVBENCH READY http` once listening; serves until SIGTERM/SIGINT, then exits 0. With `--port 0` it announces the chosen port on stderr. |
//! | `http ... --selftest N,C` | as above, then drives N GETs over C keep-alive connections to `127.0.0.1:P`, round-robin over the regular files in `DIR`, checks each status (200) and body length, prints RESULT and exits 0 — or 1 if any request failed. Metrics: `requests_per_s`, `latency_p50_us`, `latency_p99_us`, `bytes_per_s`, `errors`, `requests`, `connections`, `duration_s`. |
//! | `oltp --dir D --rows R --transactions T` | creates `D` if needed, (re)creates `D/sbtest.db` (SQLite, bundled), loads `sbtest1` with R rows in one transaction, prints `CVBENCH READY oltp`, runs T sysbench `oltp_read_write` transactions with durable commits (`journal_mode=WAL`, `synchronous=FULL`), prints RESULT and exits 0. Metrics: `tps`, `latency_p50_us`, `latency_p99_us`, `rows`, `transactions`, `load_s`, `duration_s`; notes: `journal_mode`, `synchronous`, `sqlite_version`, `mix`. The database stays in `D`. |
//! | `service nginx` / `service mariadb [--init]` | a supervisor for the services image's real daemons: starts `nginx -g 'daemon off;'` or `mariadbd` as user `mysql` (with `--init`, `mariadb-install-db` into an empty data directory first), prints `CVBENCH READY <daemon>` once the daemon is *launched* (whether the service answers is decided by the harness from outside), relays the daemon's output to stderr, stops it on SIGTERM/SIGINT and exits 0; a daemon that ends by itself makes it print `CVBENCH ERROR` with the exit status and the daemon's last log lines and exit 1. |
//!
//! Defaults when an option is omitted: `--port 8080`, `--root /srv/www`, `--dir /var/lib/cvbench`,
//! `--rows 10000`, `--transactions 200`. Latency percentiles interpolate linearly between ranks.
//!
//! # Signals
//!
//! In a container the workload is PID 1 of its pid namespace, where the kernel drops signals left
//! at their default action. The binary blocks SIGTERM and SIGINT before starting any thread and
//! collects them with `sigwait`, so a stop request works there too: `idle` and a serving `http`
//! exit 0; a run that ends by itself (`oltp`, `http --selftest`) interrupted early prints
//! `CVBENCH ERROR ... interrupted by SIGTERM` and exits `128 + signo`.
//!
//! # Failures
//!
//! A run failure prints one line on stderr and `CVBENCH ERROR <text>` on stdout and exits 1; a usage
//! error does the same (plus the usage text on stderr) and exits 2. See [`protocol`] for the line
//! formats.

pub mod protocol;
pub mod spec;

pub use protocol::{parse_line, ProtocolError, ProtocolLine, WorkloadResult};
pub use spec::{WorkloadKind, WorkloadSpec};
