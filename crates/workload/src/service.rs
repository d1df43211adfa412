//! `cvbench-workload service <nginx|mariadb> [--init]`: a small supervisor (PID 1 in a container)
//! that starts one of the services image's real daemons the way its Debian package starts it, and
//! stops it on SIGTERM/SIGINT.
//!
//! It prints `CVBENCH READY <daemon>` as soon as the daemon's process is started: that only says
//! "the daemon was launched". Whether the *service* is ready is decided by the harness from outside
//! the instance (an HTTP 200, a MySQL handshake and `SELECT 1`), never by this program.
//!
//! If the daemon ends before it is asked to, the supervisor prints `CVBENCH ERROR` with the daemon's
//! exit status and its last log lines (everything it wrote to stdout/stderr, where Debian's configs
//! send the start-up errors of both daemons when they run in the foreground) and exits 1.
//!
//! What each daemon's package does and this reproduces:
//! - nginx: systemd runs `/usr/sbin/nginx -g 'daemon on; master_process on;'`; in the foreground
//!   (as the official image does) that is `nginx -g 'daemon off;'` with `/etc/nginx` as installed.
//!   The master stays root and its workers drop to `www-data` (nginx.conf's `user`).
//! - mariadb: `mariadb.service` creates `/run/mysqld` (mysql, 0755) and runs `/usr/sbin/mariadbd` as
//!   `User=mysql`; so does this, with `setgroups([])`, `setgid`, `setuid` before the exec.
//!   `--init` first runs `mariadb-install-db` into the empty [`MARIADB_INIT_DATADIR`] (the official
//!   image's first start) and starts the server on it with the client login from
//!   [`MARIADB_USERS_SQL`] as `--init-file`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use workload::spec::MARIADB_INIT_DATADIR;

use crate::args::{Daemon, ServiceArgs};
use crate::signals::TerminationSignals;

/// The SQL the services image ran at build time to create the client login; also the `--init-file`
/// of a first start with `--init`. Idempotent.
pub const MARIADB_USERS_SQL: &str = "/etc/mysql/cvbench-users.sql";
/// Log lines kept for the error of a daemon that ended early.
const KEPT_LINES: usize = 20;
/// How long the daemon may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A user from `/etc/passwd` (parsed by hand: the binary is static, so no NSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// `name`'s uid and gid in `passwd` (the text of `/etc/passwd`).
pub fn account(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then_some(())?;
        Some(Account {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

fn mysql_account() -> anyhow::Result<Account> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    account(&passwd, "mysql")
        .context("no user mysql in /etc/passwd: is this the services image (--image services)?")
}

/// The daemon's command line, as its package starts it (see the module docs).
pub fn daemon_command(daemon: Daemon, init: bool) -> Vec<String> {
    match daemon {
        Daemon::Nginx => vec!["/usr/sbin/nginx".into(), "-g".into(), "daemon off;".into()],
        Daemon::Mariadb => {
            let mut v = vec!["/usr/sbin/mariadbd".to_string()];
            if init {
                v.push(format!("--datadir={MARIADB_INIT_DATADIR}"));
                v.push(format!("--init-file={MARIADB_USERS_SQL}"));
            }
            v
        }
    }
}

pub fn run(args: &ServiceArgs, signals: TerminationSignals) -> anyhow::Result<()> {
    let argv = daemon_command(args.daemon, args.init);
    if !std::path::Path::new(&argv[0]).exists() {
        bail!(
            "{} is not in this image: the {} workload runs the services image (--image services)",
            argv[0],
            args.daemon.name()
        );
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if args.daemon == Daemon::Mariadb {
        let mysql = mysql_account()?;
        runtime_dir("/run/mysqld", mysql)?;
        if args.init {
            install_db()?;
        }
        // systemd's User=mysql: std calls setgroups([]), setgid, setuid in this order.
        cmd.uid(mysql.uid).gid(mysql.gid);
    }
    unblock_signals_in_child(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("starting {}", argv[0]))?;
    let log = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
    keep_lines(child.stdout.take(), &log);
    keep_lines(child.stderr.take(), &log);
    crate::output::ready(args.daemon.name()).context("writing READY")?;

    let pid = Pid::from_raw(i32::try_from(child.id()).context("daemon pid")?);
    let (tx, rx) = mpsc::channel::<Event>();
    let waiter = tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                let _ = tx.send(Event::Stop(signal));
            }
        })
        .context("starting the signal thread")?;
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("daemon".into())
        .spawn(move || {
            let status = child.wait();
            let _ = waiter.send(Event::Exited);
            let _ = done_tx.send(status);
        })
        .context("starting the wait thread")?;

    match rx.recv() {
        Ok(Event::Stop(signal)) => {
            let _ = kill(pid, Signal::SIGTERM);
            if done_rx.recv_timeout(STOP_GRACE).is_err() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
                bail!(
                    "{} did not stop within {STOP_GRACE:?} of {signal}; killed",
                    args.daemon.name()
                );
            }
            Ok(())
        }
        Ok(Event::Exited) | Err(_) => {
            let status = done_rx
                .recv_timeout(Duration::from_secs(1))
                .map(|s| s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))
                .unwrap_or_else(|_| "unknown status".into());
            // Let the readers drain what the daemon wrote last.
            std::thread::sleep(Duration::from_millis(50));
            bail!(
                "{} exited before it was stopped ({status}); last log lines: {}",
                args.daemon.name(),
                last_lines(&log)
            )
        }
    }
}

enum Event {
    Stop(Signal),
    Exited,
}

/// systemd's `RuntimeDirectory=`: `/run` is the instance's own, so the directory is made per start.
fn runtime_dir(path: &str, owner: Account) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(owner.uid)),
        Some(nix::unistd::Gid::from_raw(owner.gid)),
    )
    .with_context(|| format!("chown mysql {path}"))
}

/// The official image's first start: `mariadb-install-db` into an empty data directory.
fn install_db() -> anyhow::Result<()> {
    let mut cmd = Command::new("/usr/bin/mariadb-install-db");
    cmd.args([
        "--user=mysql",
        &format!("--datadir={MARIADB_INIT_DATADIR}"),
        "--skip-test-db",
        "--auth-root-authentication-method=socket",
    ]);
    unblock_signals_in_child(&mut cmd);
    let out = cmd.output().context("running mariadb-install-db")?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let tail: Vec<&str> = text.lines().rev().take(KEPT_LINES).collect();
        bail!(
            "mariadb-install-db failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

/// The child must not inherit the supervisor's blocked SIGTERM/SIGINT (see `signals`), or it could
/// never be stopped.
fn unblock_signals_in_child(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls pthread_sigmask,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.add(Signal::SIGINT);
            set.thread_unblock().map_err(std::io::Error::from)
        });
    }
}

/// Copies the daemon's lines to our stderr and keeps the last [`KEPT_LINES`] of them.
fn keep_lines(from: Option<impl std::io::Read + Send + 'static>, log: &Arc<Mutex<VecDeque<String>>>) {
    let Some(from) = from else { return };
    let log = Arc::clone(log);
    let _ = std::thread::Builder::new()
        .name("daemon-log".into())
        .spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(std::io::stderr(), "{line}");
                if let Ok(mut kept) = log.lock() {
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        });
}

fn last_lines(log: &Arc<Mutex<VecDeque<String>>>) -> String {
    match log.lock() {
        Ok(kept) if !kept.is_empty() => kept.iter().map(String::as_str).collect::<Vec<_>>().join(" | "),
        _ => "(none)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_passwd_text() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nmysql:x:101:102:MariaDB:/nonexistent:/bin/false\n";
        assert_eq!(account(passwd, "mysql"), Some(Account { uid: 101, gid: 102 }));
        assert_eq!(account(passwd, "www-data"), None);
        assert_eq!(account("mysql:x:abc:1:::\n", "mysql"), None);
    }

    #[test]
    fn daemons_start_in_the_foreground_as_packaged() {
        assert_eq!(
            daemon_command(Daemon::Nginx, false),
            ["/usr/sbin/nginx", "-g", "daemon off;"]
        );
        assert_eq!(daemon_command(Daemon::Mariadb, false), ["/usr/sbin/mariadbd"]);
        let init = daemon_command(Daemon::Mariadb, true);
        assert!(
            init.contains(&format!("--datadir={MARIADB_INIT_DATADIR}")),
            "{init:?}"
        );
    }
}
