//! The real daemons of the services image (`nginx`, `mariadb`), seen from the client network
//! namespace: when the *service* is ready, and the load of the real clients.
//!
//! - READY is decided from outside the instance: nginx answers `GET /` with 200; MariaDB completes
//!   a protocol handshake, a login and `SELECT 1` ([`mysql_select_1`], a small client written here
//!   rather than Debian's `mariadb` binary so that a poll costs one connection, not a process
//!   spawn, and so that it is tested against a local fake server). Polled with backoff (1 ms doubling
//!   to 50 ms); the instant of the first success is `start_to_service_ready_ms`.
//! - Load: `wrk` against nginx (the `outside.*` request figures), `sysbench oltp_read_write`
//!   (Debian's, MySQL driver) against MariaDB: `prepare` once per instance, then `run` with fixed
//!   tables, rows, threads and duration (`outside.sysbench_*`).
//! - A daemon that ends before it answers fails the run with the supervisor's error, which carries
//!   the daemon's last log lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use workload::spec::{MARIADB_DATABASE, MARIADB_PASSWORD, MARIADB_USER};
use workload::WorkloadSpec;

use crate::backend::{BackendError, Confinement, Instance};
use crate::metrics;
use crate::net::Network;
use crate::runner::{RunMeasurement, RunOptions};

/// The confinement a service workload's instance runs at. Both daemons start as root and drop to
/// their users (`www-data`, `mysql`) as their packages do, which needs `CAP_SETUID`, `CAP_SETGID`,
/// `CAP_CHOWN` and `CAP_DAC_OVERRIDE`: the OCI default spec (three capabilities) cannot start them,
/// so at `oci-default` they run at `docker`, what `docker run` gives them. The cell's
/// `confinement` label records the level actually applied.
pub fn confinement_for(requested: Confinement, spec: &WorkloadSpec) -> Confinement {
    if spec.kind().is_service() && requested == Confinement::OciDefault {
        Confinement::Docker
    } else {
        requested
    }
}

/// Backoff between polls: 1 ms doubling to 50 ms.
fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(Duration::from_millis(50))
}

/// Whether every process of the instance has ended (none listed, or all gone or zombies).
fn instance_gone(pids: &[i32]) -> bool {
    pids.iter().all(|pid| !crate::cleanup::process_running(*pid))
}

/// One MySQL-protocol session to `addr`: handshake, `mysql_native_password` login as `user`,
/// `SELECT 1` (the row must read `1`), `COM_QUIT`.
pub fn mysql_select_1(addr: SocketAddr, user: &str, password: &str, timeout: Duration) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (seq, greeting) = read_packet(&mut s)?;
    let hello = parse_greeting(&greeting)?;
    let mut response = Vec::with_capacity(128);
    // CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION |
    // CLIENT_PLUGIN_AUTH
    let caps: u32 = 0x1 | 0x200 | 0x2000 | 0x8000 | 0x8_0000;
    response.extend_from_slice(&caps.to_le_bytes());
    response.extend_from_slice(&(16u32 << 20).to_le_bytes());
    response.push(33); // utf8_general_ci
    response.extend_from_slice(&[0u8; 23]);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    let scramble = native_password(password.as_bytes(), &hello.salt);
    response.push(u8::try_from(scramble.len()).unwrap_or(0));
    response.extend_from_slice(&scramble);
    response.extend_from_slice(b"mysql_native_password\0");
    write_packet(&mut s, seq.wrapping_add(1), &response)?;
    let (mut seq, mut reply) = read_packet(&mut s)?;
    if reply.first() == Some(&0xfe) {
        // Auth switch request: plugin name NUL, then the new salt.
        let rest = &reply[1..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("malformed auth switch request")?;
        let plugin = String::from_utf8_lossy(&rest[..nul]).into_owned();
        if plugin != "mysql_native_password" {
            return Err(format!("the server asks for auth plugin {plugin}"));
        }
        let salt: Vec<u8> = rest[nul + 1..].iter().copied().take_while(|&b| b != 0).collect();
        write_packet(
            &mut s,
            seq.wrapping_add(1),
            &native_password(password.as_bytes(), &salt),
        )?;
        (seq, reply) = read_packet(&mut s)?;
    }
    let _ = seq;
    expect_ok(&reply, "login")?;
    let mut query = vec![0x03];
    query.extend_from_slice(b"SELECT 1");
    write_packet(&mut s, 0, &query)?;
    let (_, first) = read_packet(&mut s)?;
    if first.first() == Some(&0xff) {
        return Err(format!("SELECT 1: {}", server_error(&first)));
    }
    if first != [1] {
        return Err(format!("SELECT 1: expected one column, got {first:?}"));
    }
    // Column definition, EOF, row, EOF.
    let (_, _column) = read_packet(&mut s)?;
    let (_, eof) = read_packet(&mut s)?;
    if eof.first() != Some(&0xfe) {
        return Err("SELECT 1: no EOF after the column definition".into());
    }
    let (_, row) = read_packet(&mut s)?;
    if row != [1, b'1'] {
        return Err(format!("SELECT 1 returned {row:?}, not \"1\""));
    }
    let _ = write_packet(&mut s, 0, &[0x01]);
    Ok(())
}

struct Greeting {
    salt: Vec<u8>,
}

fn parse_greeting(p: &[u8]) -> Result<Greeting, String> {
    match p.first() {
        Some(0x0a) => {}
        Some(0xff) => return Err(format!("greeting: {}", server_error(p))),
        other => return Err(format!("greeting: protocol version {other:?}, expected 10")),
    }
    let nul = p[1..]
        .iter()
        .position(|&b| b == 0)
        .ok_or("greeting: no server version")?
        + 1;
    let mut i = nul + 1 + 4; // version NUL, connection id
    let part1 = p.get(i..i + 8).ok_or("greeting: short salt")?;
    let mut salt = part1.to_vec();
    i += 8 + 1 + 2 + 1 + 2 + 2; // salt, filler, caps low, charset, status, caps high
    let salt_len = usize::from(*p.get(i).ok_or("greeting: truncated")?);
    i += 1 + 10;
    let part2_len = salt_len.saturating_sub(8).max(13) - 1; // without its trailing NUL
    let part2 = p.get(i..i + part2_len).ok_or("greeting: short salt part 2")?;
    salt.extend_from_slice(part2);
    Ok(Greeting { salt })
}

/// `SHA1(password) XOR SHA1(salt + SHA1(SHA1(password)))`; empty for an empty password.
pub fn native_password(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(salt);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

fn server_error(p: &[u8]) -> String {
    // 0xff, code (2), optionally '#' + SQL state (5), message.
    let code = p.get(1..3).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let msg = p.get(3..).unwrap_or_default();
    let msg = if msg.first() == Some(&b'#') {
        msg.get(6..).unwrap_or_default()
    } else {
        msg
    };
    format!("server error {code}: {}", String::from_utf8_lossy(msg))
}

fn expect_ok(p: &[u8], what: &str) -> Result<(), String> {
    match p.first() {
        Some(0x00) => Ok(()),
        Some(0xff) => Err(format!("{what}: {}", server_error(p))),
        other => Err(format!("{what}: unexpected packet {other:?}")),
    }
}

fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).map_err(|e| format!("reading: {e}"))?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("reading: {e}"))?;
    Ok((head[3], body))
}

fn write_packet(s: &mut TcpStream, seq: u8, body: &[u8]) -> Result<(), String> {
    let len = u32::try_from(body.len()).map_err(|_| "packet too long".to_string())?;
    let mut p = Vec::with_capacity(body.len() + 4);
    p.extend_from_slice(&len.to_le_bytes()[..3]);
    p.push(seq);
    p.extend_from_slice(body);
    s.write_all(&p).map_err(|e| format!("writing: {e}"))
}

/// Polls `check` with backoff until it succeeds (the instant of that success), `deadline` passes,
/// or `gone` says the instance has ended.
pub fn poll_until(
    mut check: impl FnMut() -> Result<(), String>,
    gone: impl Fn() -> bool,
    deadline: Instant,
) -> Result<Instant, PollFailure> {
    let mut pause = Duration::from_millis(1);
    loop {
        let last = match check() {
            Ok(()) => return Ok(Instant::now()),
            Err(e) => e,
        };
        if gone() {
            return Err(PollFailure::Gone(last));
        }
        if Instant::now() + pause > deadline {
            return Err(PollFailure::Timeout(last));
        }
        std::thread::sleep(pause);
        pause = next_pause(pause);
    }
}

/// Why [`poll_until`] gave up, with the last check's error.
#[derive(Debug, Clone, PartialEq)]
pub enum PollFailure {
    Timeout(String),
    Gone(String),
}

/// The service's address and how it is checked.
fn target(spec: &WorkloadSpec, instance: &dyn Instance) -> Option<SocketAddrV4> {
    let ip = instance.address()?;
    match spec {
        WorkloadSpec::Nginx { port, .. } | WorkloadSpec::Mariadb { port, .. } => {
            Some(SocketAddrV4::new(ip, *port))
        }
        _ => None,
    }
}

/// For a service workload: waits until the service answers from the client namespace and records
/// `start_to_service_ready_ms`. A daemon that ended, or never answered, fails the run with the
/// supervisor's error (the daemon's last log lines) when there is one.
pub fn await_ready(
    backend: &str,
    instance: &mut dyn Instance,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    request: Instant,
    m: &mut RunMeasurement,
) -> Result<(), BackendError> {
    if !spec.kind().is_service() {
        return Ok(());
    }
    let failed = |reason: String| BackendError::WorkloadFailed {
        backend: backend.to_string(),
        reason,
    };
    let (Some(network), Some(addr)) = (opts.network.as_ref(), target(spec, instance)) else {
        return Err(failed(format!(
            "{} needs the instance attached to the client network namespace",
            spec.kind()
        )));
    };
    let deadline = request + opts.ready_timeout;
    let pids = instance.host_pids();
    let kind = spec.kind();
    let outcome = network
        .in_client(move || {
            let gone = || instance_gone(&pids);
            match kind {
                workload::WorkloadKind::Nginx => poll_until(
                    || match crate::net::get_ok(addr.into(), "/", Duration::from_secs(1)) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("GET / answered, but not 200".to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    gone,
                    deadline,
                ),
                _ => poll_until(
                    || {
                        mysql_select_1(
                            addr.into(),
                            MARIADB_USER,
                            MARIADB_PASSWORD,
                            Duration::from_secs(2),
                        )
                    },
                    gone,
                    deadline,
                ),
            }
        })
        .map_err(|e| failed(e.to_string()))?;
    match outcome {
        Ok(at) => {
            m.metrics.insert(
                metrics::START_TO_SERVICE_READY_MS.to_string(),
                at.saturating_duration_since(request).as_secs_f64() * 1e3,
            );
            Ok(())
        }
        Err(why) => {
            let (what, last) = match why {
                PollFailure::Gone(last) => ("ended before it answered".to_string(), last),
                PollFailure::Timeout(last) => (
                    format!("did not answer within {:?} of the launch", opts.ready_timeout),
                    last,
                ),
            };
            // The supervisor's error (the daemon's exit status and last log lines) is in the
            // instance's output; read it before the instance is stopped.
            let output = instance.last_output().filter(|o| !o.trim().is_empty());
            let stopped = instance.finish(Duration::from_secs(5));
            let mut reason = format!("{kind} at {addr} {what} (last check: {last})");
            if let Err(e) = stopped {
                reason.push_str(&format!("; {e}"));
            }
            match output {
                Some(o) => reason.push_str(&format!("; output: {}", tail_chars(&o, 1500))),
                None => reason.push_str("; the backend keeps no output of its workload"),
            }
            Err(failed(reason))
        }
    }
}

/// The last `n` characters of `s`.
fn tail_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    match s.char_indices().nth(count.saturating_sub(n)) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

/// The daemon's own processes among `pids`: those whose command name is `daemon`'s (nginx's master
/// and workers are all `nginx`; MariaDB's server is `mariadbd`), read from `proc_root`.
pub fn daemon_pids(proc_root: &std::path::Path, pids: &[i32], kind: workload::WorkloadKind) -> Vec<i32> {
    let comm = match kind {
        workload::WorkloadKind::Nginx => "nginx",
        workload::WorkloadKind::Mariadb => "mariadbd",
        _ => return Vec::new(),
    };
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                .is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// `service_pss_bytes`: PSS of the daemon's processes alone, taken once the service answers.
fn record_daemon_pss(instance: &dyn Instance, kind: workload::WorkloadKind, m: &mut RunMeasurement) {
    let pids = daemon_pids(std::path::Path::new("/proc"), &instance.host_pids(), kind);
    if pids.is_empty() {
        return;
    }
    // A process that exits between the listing and the read leaves no figure rather than a guess.
    if let Ok(bytes) = crate::probe::pss_bytes(&pids) {
        #[allow(clippy::cast_precision_loss)] // far below 2^53
        m.metrics
            .insert(metrics::SERVICE_PSS_BYTES.to_string(), bytes as f64);
    }
}

/// For a service workload, once it is ready and probed: the real client's load.
pub fn load(
    backend: &str,
    instance: &dyn Instance,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    m: &mut RunMeasurement,
) -> Result<(), BackendError> {
    let failed = |reason: String| BackendError::WorkloadFailed {
        backend: backend.to_string(),
        reason,
    };
    let (Some(network), Some(addr)) = (opts.network.as_ref(), target(spec, instance)) else {
        return Ok(());
    };
    record_daemon_pss(instance, spec.kind(), m);
    match spec {
        WorkloadSpec::Nginx {
            connections,
            duration_s,
            path,
            ..
        } => {
            let wrk = crate::net::run_wrk(
                network,
                addr,
                path,
                *connections,
                Duration::from_secs(u64::from(*duration_s)),
            )
            .map_err(failed)?;
            crate::runner::record_wrk(m, &wrk);
        }
        WorkloadSpec::Mariadb {
            tables,
            table_size,
            threads,
            duration_s,
            ..
        } => {
            let params = SysbenchParams {
                tables: *tables,
                table_size: *table_size,
                threads: *threads,
                duration_s: *duration_s,
            };
            let started = Instant::now();
            sysbench(network, addr, &params, "prepare")
                .map_err(|e| failed(format!("sysbench prepare: {e}")))?;
            m.metrics.insert(
                metrics::OUTSIDE_SYSBENCH_PREPARE_S.to_string(),
                started.elapsed().as_secs_f64(),
            );
            let out =
                sysbench(network, addr, &params, "run").map_err(|e| failed(format!("sysbench run: {e}")))?;
            let f = parse_sysbench(&out)
                .ok_or_else(|| failed(format!("unrecognised sysbench output: {}", out.trim())))?;
            for (name, v) in [
                (metrics::OUTSIDE_SYSBENCH_TPS, f.tps),
                (metrics::OUTSIDE_SYSBENCH_QPS, f.qps),
                (metrics::OUTSIDE_SYSBENCH_P95_MS, f.p95_ms),
                (metrics::OUTSIDE_SYSBENCH_ERRORS, f.errors),
            ] {
                m.metrics.insert(name.to_string(), v);
            }
        }
        _ => {}
    }
    Ok(())
}

/// sysbench's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SysbenchParams {
    pub tables: u32,
    pub table_size: u32,
    pub threads: u32,
    pub duration_s: u32,
}

/// `sysbench`'s argument vector for `command` (`prepare`, `run`).
pub fn sysbench_args(addr: SocketAddrV4, p: &SysbenchParams, command: &str) -> Vec<String> {
    vec![
        "oltp_read_write".into(),
        "--db-driver=mysql".into(),
        format!("--mysql-host={}", addr.ip()),
        format!("--mysql-port={}", addr.port()),
        format!("--mysql-user={MARIADB_USER}"),
        format!("--mysql-password={MARIADB_PASSWORD}"),
        format!("--mysql-db={MARIADB_DATABASE}"),
        format!("--tables={}", p.tables),
        format!("--table-size={}", p.table_size),
        format!(
            "--threads={}",
            if command == "prepare" {
                p.tables.min(p.threads).max(1)
            } else {
                p.threads
            }
        ),
        format!("--time={}", p.duration_s),
        "--percentile=95".into(),
        command.into(),
    ]
}

fn sysbench(
    network: &Network,
    addr: SocketAddrV4,
    p: &SysbenchParams,
    command: &str,
) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", network.client_name(), "sysbench"])
        .args(sysbench_args(addr, p, command))
        .output()
        .map_err(|e| format!("running sysbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        return Err(format!(
            "{} {} {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}

/// What `sysbench ... run` printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SysbenchFigures {
    pub tps: f64,
    pub qps: f64,
    pub p95_ms: f64,
    /// `ignored errors` (deadlocks sysbench retried).
    pub errors: f64,
}

/// Parses `sysbench oltp_read_write run` output.
pub fn parse_sysbench(text: &str) -> Option<SysbenchFigures> {
    let per_sec = |line: &str| -> Option<f64> {
        let open = line.find('(')?;
        line[open + 1..].split_whitespace().next()?.parse().ok()
    };
    let (mut tps, mut qps, mut p95, mut errors) = (None, None, None, 0.0);
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("transactions:") {
            tps = per_sec(rest);
        } else if let Some(rest) = t.strip_prefix("queries:") {
            qps = per_sec(rest);
        } else if let Some(rest) = t.strip_prefix("95th percentile:") {
            p95 = rest.trim().parse().ok();
        } else if let Some(rest) = t.strip_prefix("ignored errors:") {
            errors = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
        }
    }
    Some(SysbenchFigures {
        tps: tps?,
        qps: qps?,
        p95_ms: p95?,
        errors,
    })
}

/// Whether `sysbench` is on PATH.
pub fn sysbench_available() -> bool {
    Command::new("sysbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn services_run_at_docker_confinement_when_the_oci_default_cannot_start_them() {
        let nginx = WorkloadSpec::default_for(workload::WorkloadKind::Nginx);
        assert_eq!(
            confinement_for(Confinement::OciDefault, &nginx),
            Confinement::Docker
        );
        assert_eq!(confinement_for(Confinement::None, &nginx), Confinement::None);
        assert_eq!(
            confinement_for(Confinement::OciDefault, &WorkloadSpec::Idle),
            Confinement::OciDefault
        );
    }

    #[test]
    fn native_password_matches_the_known_vector() {
        // Salt of 20 'a's, password "pass": checked against the reference formula step by step.
        let salt = [b'a'; 20];
        let s = native_password(b"pass", &salt);
        let stage1 = Sha1::digest(b"pass");
        let mut h = Sha1::new();
        h.update(salt);
        h.update(Sha1::digest(stage1));
        let back: Vec<u8> = s.iter().zip(h.finalize().iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(back, stage1.to_vec());
        assert_eq!(s.len(), 20);
        assert!(native_password(b"", &salt).is_empty());
    }

    /// A fake MariaDB that greets, checks the login scramble, and answers `SELECT 1` with `row`.
    fn fake_server(password: &'static str, row: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let salt = *b"0123456789abcdefghij";
            let mut g = vec![0x0a];
            g.extend_from_slice(b"10.11.99-MariaDB-fake\0");
            g.extend_from_slice(&7u32.to_le_bytes());
            g.extend_from_slice(&salt[..8]);
            g.push(0);
            g.extend_from_slice(&0xf7feu16.to_le_bytes());
            g.push(33);
            g.extend_from_slice(&2u16.to_le_bytes());
            g.extend_from_slice(&0x81bfu16.to_le_bytes());
            g.push(21);
            g.extend_from_slice(&[0u8; 10]);
            g.extend_from_slice(&salt[8..]);
            g.push(0);
            g.extend_from_slice(b"mysql_native_password\0");
            write_packet(&mut s, 0, &g).unwrap();
            let (_, resp) = read_packet(&mut s).unwrap();
            // caps 4, max 4, charset 1, filler 23, user NUL, len, scramble
            let user_end = 32 + resp[32..].iter().position(|&b| b == 0).unwrap();
            let len = usize::from(resp[user_end + 1]);
            let scramble = &resp[user_end + 2..user_end + 2 + len];
            if scramble != native_password(password.as_bytes(), &salt).as_slice() {
                let mut err = vec![0xff];
                err.extend_from_slice(&1045u16.to_le_bytes());
                err.extend_from_slice(b"#28000Access denied");
                write_packet(&mut s, 2, &err).unwrap();
                return;
            }
            write_packet(&mut s, 2, &[0, 0, 0, 2, 0, 0, 0]).unwrap();
            let (_, q) = read_packet(&mut s).unwrap();
            assert_eq!(q, b"\x03SELECT 1");
            write_packet(&mut s, 1, &[1]).unwrap();
            write_packet(
                &mut s,
                2,
                b"\x03def\0\0\0\x011\0\x0c\x3f\0\x01\0\0\0\x08\x81\0\0\0\0",
            )
            .unwrap();
            write_packet(&mut s, 3, &[0xfe, 0, 0, 2, 0]).unwrap();
            write_packet(&mut s, 4, row).unwrap();
            write_packet(&mut s, 5, &[0xfe, 0, 0, 2, 0]).unwrap();
        });
        addr
    }

    #[test]
    fn the_ready_check_logs_in_and_reads_select_1() {
        let addr = fake_server("sbtest", &[1, b'1']);
        mysql_select_1(addr, "sbtest", "sbtest", Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_wrong_password_or_a_wrong_row_is_not_ready() {
        let addr = fake_server("other", &[1, b'1']);
        let err = mysql_select_1(addr, "sbtest", "sbtest", Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("1045") && err.contains("Access denied"), "{err}");
        let addr = fake_server("sbtest", &[1, b'2']);
        let err = mysql_select_1(addr, "sbtest", "sbtest", Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("not \"1\""), "{err}");
    }

    #[test]
    fn nothing_listening_is_not_ready() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(mysql_select_1(addr, "u", "p", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn polling_stops_at_the_first_success_or_when_the_instance_is_gone() {
        let mut n = 0;
        let at = poll_until(
            || {
                n += 1;
                if n < 4 {
                    Err(format!("try {n}"))
                } else {
                    Ok(())
                }
            },
            || false,
            Instant::now() + Duration::from_secs(10),
        );
        assert!(at.is_ok());
        assert_eq!(n, 4);
        let gone = poll_until(
            || Err("refused".into()),
            || true,
            Instant::now() + Duration::from_secs(10),
        );
        assert_eq!(gone, Err(PollFailure::Gone("refused".into())));
        let late = poll_until(|| Err("refused".into()), || false, Instant::now());
        assert_eq!(late, Err(PollFailure::Timeout("refused".into())));
    }

    #[test]
    fn a_process_that_is_gone_or_a_zombie_counts_as_gone() {
        assert!(instance_gone(&[]));
        assert!(!instance_gone(&[std::process::id() as i32]));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not yet reaped: a zombie once it exits.
        while !instance_gone(&[pid]) {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(instance_gone(&[pid]));
    }

    #[test]
    fn daemon_processes_are_picked_by_their_command_name() {
        let proc_root = tempfile::tempdir().unwrap();
        for (pid, comm) in [
            (10, "cvbench-workload"),
            (11, "nginx"),
            (12, "nginx"),
            (13, "mariadbd"),
        ] {
            let d = proc_root.path().join(pid.to_string());
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        }
        let all = [10, 11, 12, 13, 14];
        assert_eq!(
            daemon_pids(proc_root.path(), &all, workload::WorkloadKind::Nginx),
            [11, 12]
        );
        assert_eq!(
            daemon_pids(proc_root.path(), &all, workload::WorkloadKind::Mariadb),
            [13]
        );
        assert!(daemon_pids(proc_root.path(), &all, workload::WorkloadKind::Idle).is_empty());
    }

    #[test]
    fn sysbench_run_output_parses() {
        let text = "SQL statistics:
    queries performed:
        read:                            14000
        write:                           4000
        other:                           2000
        total:                           20000
    transactions:                        1000   (199.52 per sec.)
    queries:                             20000  (3990.40 per sec.)
    ignored errors:                      3      (0.60 per sec.)
    reconnects:                          0      (0.00 per sec.)

Latency (ms):
         min:                                    4.01
         avg:                                   10.01
         max:                                   60.10
         95th percentile:                       14.46
         sum:                                10010.00
";
        let f = parse_sysbench(text).unwrap();
        assert_eq!(
            f,
            SysbenchFigures {
                tps: 199.52,
                qps: 3990.40,
                p95_ms: 14.46,
                errors: 3.0
            }
        );
        assert_eq!(parse_sysbench("transactions: 1 (2.0 per sec.)\n"), None);
    }

    #[test]
    fn sysbench_gets_the_fixed_parameters() {
        let p = SysbenchParams {
            tables: 2,
            table_size: 10_000,
            threads: 4,
            duration_s: 5,
        };
        let a = sysbench_args(SocketAddrV4::new([198, 18, 0, 2].into(), 3306), &p, "run");
        for want in [
            "--mysql-host=198.18.0.2",
            "--tables=2",
            "--table-size=10000",
            "--threads=4",
            "--time=5",
            "--db-driver=mysql",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        assert_eq!(a.last().map(String::as_str), Some("run"));
        let prep = sysbench_args(SocketAddrV4::new([198, 18, 0, 2].into(), 3306), &p, "prepare");
        assert!(prep.iter().any(|x| x == "--threads=2"), "{prep:?}");
    }
}
