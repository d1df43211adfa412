//! Measures the launch path on this host, outside the harness: create→rootfs ready, create→exec and
//! create→`CVBENCH READY` of an idle container over N runs, next to the namespace floor
//! (`unshare -pmuin --fork true`, spawned and waited for the same way).
//!
//! `cargo run -p container --release --example launch_latency -- [RUNS] [TESTPROC]` (root). TESTPROC
//! defaults to `cvbench-testproc` next to the example's directory (build it with
//! `cargo build -p container --release --bins`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use container::{Container, ContainerConfig, ContainerDeps, LineEvent, OutputLines};

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
    let testproc = match args.get(2) {
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
    let (mut rootfs, mut exec, mut ready, mut create) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        let config = ContainerConfig::new(
            &format!("latency-{}-{i}", std::process::id()),
            &image,
            vec!["/bin/cvbench-workload".into(), "idle".into()],
        );
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
    std::fs::remove_dir_all(&image)?;
    report("create() (dirs, cgroup, state)", create);
    report("create->rootfs_ready", rootfs);
    report("create->exec", exec);
    report("create->READY", ready);
    report("unshare -pmuin --fork true", floor);
    Ok(())
}
