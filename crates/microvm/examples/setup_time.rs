//! Measures the VMM's own cost with the probe guest, one `cvbench-vmm` process per run:
//! process spawn → VM created / first vCPU entry / boot timer (CLOCK_MONOTONIC, from the VMM's event
//! lines), and, with the guest halted after READY, the VMM's PSS, guest RAM resident and overhead.
//!
//! `cargo run --release -p microvm --example setup_time -- [runs] [path/to/cvbench-vmm]`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use microvm::events::monotonic_now_ns;
use microvm::{probe, EventKind, VmEvent};

/// Nearest-rank percentile of sorted samples (the harness's stats module does the real statistics;
/// this example only needs a quick summary).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let target = p / 100.0 * (sorted.len() - 1) as f64;
    let rank = (0..sorted.len())
        .find(|&i| i as f64 >= target.round())
        .unwrap_or(sorted.len() - 1);
    sorted[rank]
}

fn smaps_kib(pid: u32, start: u64) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss_total = smaps
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut inside = false;
    let mut guest_pss = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((from, _)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            inside = u64::from_str_radix(from, 16).ok() == Some(start);
        } else if inside && first == "Pss:" {
            guest_pss = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    (pss_total.unwrap_or(0), guest_pss)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let vmm = args.get(2).cloned().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .join("cvbench-vmm")
            .display()
            .to_string()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = probe::write_payload(dir.path()).expect("payload");
    let disk = dir.path().join("disk.img");
    let (mut created, mut entry, mut timer, mut pss, mut overhead, mut guest) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        std::fs::write(&disk, probe::disk_image("measure", 2048)).expect("disk");
        let halt = run % 3 == 0; // every third run is held after READY for the memory figures
        let start_ns = monotonic_now_ns();
        let mut child = Command::new(&vmm)
            .arg("--kernel")
            .arg(&kernel)
            .args(["--memory-mib", "16", "--disk"])
            .arg(&disk)
            .args(if halt {
                vec!["--cmdline", probe::HALT_FLAG]
            } else {
                vec![]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cvbench-vmm");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ram_addr = 0;
        for line in stderr.lines().map_while(Result::ok) {
            let Some(event) = VmEvent::parse_line(&line) else {
                continue;
            };
            let ms = (event.monotonic_ns - start_ns) as f64 / 1e6;
            match event.kind {
                EventKind::VmCreatedKernelLoaded {
                    guest_ram_host_addr, ..
                } => {
                    ram_addr = guest_ram_host_addr;
                    created.push(ms)
                }
                EventKind::FirstVcpuEntry => entry.push(ms),
                EventKind::BootTimer { .. } => {
                    timer.push(ms);
                    if halt {
                        let mut line = String::new();
                        while !line.contains(probe::READY_LINE) {
                            line.clear();
                            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                                break;
                            }
                        }
                        let (total, guest_pss) = smaps_kib(child.id(), ram_addr);
                        pss.push(total as f64);
                        guest.push(guest_pss as f64);
                        overhead.push(total.saturating_sub(guest_pss) as f64);
                        let _ = Command::new("kill")
                            .arg("-TERM")
                            .arg(child.id().to_string())
                            .status();
                    }
                }
                _ => {}
            }
        }
        let _ = child.wait();
    }
    for (name, values, unit) in [
        ("spawn -> vm_created_kernel_loaded", &mut created, "ms"),
        ("spawn -> first_vcpu_entry", &mut entry, "ms"),
        ("spawn -> boot_timer", &mut timer, "ms"),
        ("VMM PSS", &mut pss, "KiB"),
        ("guest RAM PSS", &mut guest, "KiB"),
        ("VMM overhead (PSS - guest RAM)", &mut overhead, "KiB"),
    ] {
        values.sort_by(f64::total_cmp);
        if values.is_empty() {
            println!("{name}: no samples");
            continue;
        }
        println!(
            "{name}: n={} p50={:.3} {unit} p90={:.3} {unit} min={:.3} max={:.3}",
            values.len(),
            percentile(values, 50.0),
            percentile(values, 90.0),
            values[0],
            values[values.len() - 1]
        );
    }
    let timer_minus_entry: Vec<f64> = timer.iter().zip(&entry).map(|(t, e)| t - e).collect();
    let mut sorted = timer_minus_entry;
    sorted.sort_by(f64::total_cmp);
    if !sorted.is_empty() {
        println!(
            "first_vcpu_entry -> boot_timer: p50={:.3} ms",
            percentile(&sorted, 50.0)
        );
    }
}
