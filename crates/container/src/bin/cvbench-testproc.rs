//! A tiny static program the container integration tests run inside containers. Each subcommand
//! prints what it observed on stdout, one `key value` line at a time:
//!
//! - `alloc <mib>`: allocates and touches memory 1 MiB at a time, printing `allocated <n>`;
//! - `forkbomb`: forks sleeping children until fork fails, then prints `fork-failed <errno-name> <n>`;
//! - `ps`: prints `self <pid>` and `pids <p1> <p2> ...` from `/proc`;
//! - `write <path>`: writes `<path>` and prints `wrote <path>`;
//! - `hostname`: prints `hostname <nodename>`;
//! - `ids`: prints `uid <uid>` and `uid_map <map>`;
//! - `net`: prints `ifaces <names>` (from `/proc/net/dev`) and `lo <up|down>`;
//! - `idle` (also under the name cvbench-workload): prints `CVBENCH READY idle`, exits 0 on SIGTERM;
//! - `stubborn`: prints `CVBENCH READY stubborn` and waits without a SIGTERM handler;
//! - `http` (under the name cvbench-workload): prints `CVBENCH READY http` and exits 0 without a
//!   `CVBENCH RESULT` line — a self-ending workload that reports nothing;
//! - `exit <code>`: exits with `<code>` after printing `exiting`;
//! - `read <path>`: prints `read <path> <bytes>` (how many bytes it read, up to 1 MiB) or
//!   `read-failed <path> <errno>`;
//! - `confinement`: prints `CapEff`, `CapPrm`, `CapBnd`, `CapInh`, `CapAmb`, `NoNewPrivs` and
//!   `Seccomp` as `/proc/self/status` shows them, and `nofile <soft> <hard>`;
//! - `keyctl`: calls `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)` (which Docker's
//!   seccomp profile denies) and prints `keyctl ok` or `keyctl errno <n>`;
//! - `thread`: starts a thread (glibc tries `clone3`, then `clone`) and prints `thread ok` or
//!   `thread-failed <error>`.

use std::io::Write;

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn alloc(mib: usize) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        // Touch every page so the memory is really charged.
        blocks.push(vec![1u8; 1 << 20]);
        if i % 8 == 0 {
            out(&format!("allocated {i}"));
        }
    }
    out(&format!("allocated-all {}", blocks.len()));
}

fn forkbomb() {
    let mut n = 0u32;
    loop {
        // SAFETY: the child only calls pause/_exit (async-signal-safe); this process is
        // single-threaded.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause just waits for a signal.
                unsafe { libc::pause() };
            },
            -1 => {
                let e = std::io::Error::last_os_error();
                let name = match e.raw_os_error() {
                    Some(libc::EAGAIN) => "EAGAIN".to_string(),
                    Some(other) => format!("errno{other}"),
                    None => "unknown".to_string(),
                };
                out(&format!("fork-failed {name} {n}"));
                return;
            }
            _ => n += 1,
        }
        if n > 100_000 {
            out("fork-never-failed");
            return;
        }
    }
}

fn ps() {
    out(&format!("self {}", std::process::id()));
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    out(&format!(
        "pids {}",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    ));
}

fn net() {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let names: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    out(&format!("ifaces {}", names.join(" ")));
    // SAFETY: plain socket/ioctl on a zeroed ifreq naming "lo"; fd is closed below.
    let up = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        libc::close(fd);
        rc == 0 && (i32::from(req.ifr_ifru.ifru_flags) & libc::IFF_UP) != 0
    };
    out(&format!("lo {}", if up { "up" } else { "down" }));
}

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

fn idle() {
    // SAFETY: installs an async-signal-safe handler.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    out("CVBENCH READY idle");
    loop {
        // SAFETY: pause just waits for a signal.
        unsafe { libc::pause() };
    }
}

fn read(path: &str) {
    use std::io::Read;
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            match f.take(1 << 20).read_to_end(&mut buf) {
                Ok(n) => out(&format!("read {path} {n}")),
                Err(e) => out(&format!("read-failed {path} {}", e.raw_os_error().unwrap_or(0))),
            }
        }
        Err(e) => out(&format!("read-failed {path} {}", e.raw_os_error().unwrap_or(0))),
    }
}

fn confinement() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for key in [
        "CapEff",
        "CapPrm",
        "CapBnd",
        "CapInh",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map_or("missing", str::trim);
        out(&format!("{key} {value}"));
    }
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => out(&format!("nofile {soft} {hard}")),
        Err(e) => out(&format!("nofile-failed {e}")),
    }
}

fn keyctl() {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: keyctl with integer arguments only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    };
    if rc < 0 {
        out(&format!(
            "keyctl errno {}",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        ));
    } else {
        out("keyctl ok");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    match cmd {
        "alloc" => alloc(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024)),
        "forkbomb" => forkbomb(),
        "ps" => ps(),
        "write" => {
            let path = args.get(2).map(String::as_str).unwrap_or("/written");
            match std::fs::write(path, b"written inside\n") {
                Ok(()) => out(&format!("wrote {path}")),
                Err(e) => {
                    out(&format!("write-failed {path} {e}"));
                    std::process::exit(1);
                }
            }
        }
        "hostname" => {
            let name = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            out(&format!("hostname {name}"));
        }
        "net" => net(),
        "ids" => {
            // SAFETY: getuid cannot fail.
            out(&format!("uid {}", unsafe { libc::getuid() }));
            let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
            out(&format!(
                "uid_map {}",
                map.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        "idle" => idle(),
        "read" => read(args.get(2).map(String::as_str).unwrap_or("/proc/kcore")),
        "confinement" => confinement(),
        "keyctl" => keyctl(),
        "thread" => match std::thread::Builder::new().spawn(|| 7).map(|h| h.join()) {
            Ok(Ok(7)) => out("thread ok"),
            Ok(_) => out("thread-failed join"),
            Err(e) => out(&format!("thread-failed {e}")),
        },
        "http" => out("CVBENCH READY http"),
        "stubborn" => {
            out("CVBENCH READY stubborn");
            loop {
                // SAFETY: pause just waits for a signal.
                unsafe { libc::pause() };
            }
        }
        "exit" => {
            out("exiting");
            eprintln!("exiting on request");
            std::process::exit(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0));
        }
        other => {
            eprintln!("cvbench-testproc: unknown subcommand {other:?}");
            std::process::exit(2);
        }
    }
}
