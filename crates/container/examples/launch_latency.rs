//! Measures the launch path on this host, outside the harness: create→rootfs ready, create→exec and
//! create→`CVBENCH READY` of an idle container over N runs, next to the namespace floor
//! (`unshare -pmuin --fork true`, spawned and waited for the same way).
//!
//! `cargo run -p container --release --example launch_latency -- [RUNS] [TESTPROC] [LEVELS]` (root).
//! TESTPROC defaults to `cvbench-testproc` next to the example's directory (build it with
//! `cargo build -p container --release --bins`); LEVELS is a comma-separated list of confinement
//! levels (default `oci-default`), measured in turn within each run so that host load drifts over
//! all of them alike.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use container::{Confinement, Container, ContainerConfig, ContainerDeps, LineEvent, OutputLines};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank; the index is in range by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<28} n={:<3} p50 {:>7.3} ms  p90 {:>7.3} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0)
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(50);
    let levels: Vec<Confinement> = args
        .get(3)
        .map_or("oci-default", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let testproc = match args.get(2).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("cvbench-testproc"))
            .ok_or("cannot locate cvbench-testproc")?,
    };
    let image = std::env::temp_dir().join(format!("cvbench-latency-image-{}", std::process::id()));
    std::fs::create_dir_all(image.join("bin"))?;
    for d in ["proc", "dev", "tmp"] {
        std::fs::create_dir_all(image.join(d))?;
    }
    std::fs::copy(&testproc, image.join("bin/cvbench-workload"))?;
    let deps = ContainerDeps::host()?;
    let mut per_level: Vec<[Vec<f64>; 6]> = levels.iter().map(|_| Default::default()).collect();
    for (i, l) in (0..runs + 3).flat_map(|i| (0..levels.len()).map(move |l| (i, l))) {
        let [create, rootfs, confined, exec, ready, confine_step] = &mut per_level[l];
        let mut config = ContainerConfig::new(
            &format!("latency-{}-{i}-{l}", std::process::id()),
            &image,
            vec!["/bin/cvbench-workload".into(), "idle".into()],
        );
        config.confinement = levels[l];
        let request = Instant::now();
        let mut c = Container::create(config, deps.clone())?;
        let created = Instant::now();
        c.start()?;
        let mut lines = OutputLines::new(c.take_stdout().ok_or("no stdout")?);
        let at = match lines.next_line(Some(Instant::now() + Duration::from_secs(10)))? {
            LineEvent::Line { at, .. } => at,
            other => return Err(format!("no READY: {other:?}").into()),
        };
        let ev = c.events();
        if i >= 3 {
            let ms = |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - request).as_secs_f64() * 1e3);
            create.push(ms(Some(created)));
            rootfs.push(ms(ev.rootfs_ready));
            if let (Some(r), Some(c)) = (ev.rootfs_ready, ev.confined) {
                confined.push(ms(Some(c)));
                confine_step.push((c - r).as_secs_f64() * 1e3);
            }
            exec.push(ms(ev.exec));
            ready.push(ms(Some(at)));
        }
        c.stop(Duration::from_secs(1))?;
        c.destroy()?;
    }
    let mut floor = Vec::new();
    for i in 0..runs + 3 {
        let t = Instant::now();
        let status = std::process::Command::new("unshare")
            .args(["-pmuin", "--fork", "true"])
            .status()?;
        if !status.success() {
            return Err(format!("unshare failed: {status}").into());
        }
        if i >= 3 {
            floor.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (clone_ms, fork_ms) = spawn_strategies(runs)?;
    std::fs::remove_dir_all(&image)?;
    for (level, [create, rootfs, confined, exec, ready, confine_step]) in levels.iter().zip(per_level) {
        println!("--confinement {level}");
        report("create() (dirs, cgroup, state)", create);
        report("create->rootfs_ready", rootfs);
        if !confined.is_empty() {
            report("create->confined", confined);
            report("rootfs_ready->confined", confine_step);
        }
        report("create->exec", exec);
        report("create->READY", ready);
    }
    report("unshare -pmuin --fork true", floor);
    report("spawn: one clone(ns flags)", clone_ms);
    report("spawn: fork+unshare+fork", fork_ms);
    Ok(())
}

/// The two ways to get a process into new namespaces, each measured from the call until the
/// namespaced process runs (its first byte on a pipe is read; no rootfs, no exec; reaping is not
/// timed): one `clone()` with every namespace flag, or `fork()` + `unshare()` + a second `fork()`
/// (the pid namespace only applies to children of the unsharing process).
fn spawn_strategies(runs: usize) -> Result<(Vec<f64>, Vec<f64>), Box<dyn std::error::Error>> {
    use nix::sys::wait::waitpid;
    use nix::unistd::{read, Pid};
    use std::os::fd::AsRawFd;
    let flags = container::spawn::NAMESPACE_FLAGS;
    let (mut by_clone, mut by_fork) = (Vec::new(), Vec::new());
    let mut byte = [0u8; 1];
    for i in 0..runs + 3 {
        let (r, w) = container::spawn::cloexec_pipe()?;
        let w_fd = w.as_raw_fd();
        let t = Instant::now();
        // SAFETY: fork-like clone; the child only calls write and _exit. This example is
        // single-threaded.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::c_ulong::from((flags | libc::SIGCHLD).unsigned_abs()),
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            // SAFETY: write one byte and _exit in the child.
            unsafe {
                libc::write(w_fd, b"x".as_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        let pid = i32::try_from(pid).map_err(|_| "clone failed")?;
        if pid < 0 {
            return Err(format!("clone failed: {}", std::io::Error::last_os_error()).into());
        }
        read(&r, &mut byte)?;
        let cloned = t.elapsed();
        drop((r, w));
        waitpid(Pid::from_raw(pid), None)?;

        let (r, w) = container::spawn::cloexec_pipe()?;
        let w_fd = w.as_raw_fd();
        let t = Instant::now();
        // SAFETY: single-threaded example; the children only make system calls and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: unshare/fork/write/waitpid/_exit in a single-threaded child.
            unsafe {
                if libc::unshare(flags) != 0 {
                    libc::_exit(1);
                }
                let inner = libc::fork();
                if inner == 0 {
                    libc::write(w_fd, b"x".as_ptr().cast(), 1);
                    libc::_exit(0);
                }
                let mut status = 0;
                libc::waitpid(inner, &mut status, 0);
                libc::_exit(0);
            }
        }
        read(&r, &mut byte)?;
        let forked = t.elapsed();
        drop((r, w));
        waitpid(Pid::from_raw(pid), None)?;
        if i >= 3 {
            by_clone.push(cloned.as_secs_f64() * 1e3);
            by_fork.push(forked.as_secs_f64() * 1e3);
        }
    }
    Ok((by_clone, by_fork))
}
