//! The nested-KVM layer: the microVM's whole Linux path, seen on a host without hardware KVM.
//!
//! `scripts/nested-kvm.sh` boots an L1 Linux under QEMU's TCG with AMD SVM and nested paging
//! emulated; `kvm_amd` there gives a `/dev/kvm` that runs a stock guest kernel as hardware KVM does.
//! In L1 (`nested_kvm_l1.sh`): `bench run --backend microvm` for idle, http and oltp, `bench compare
//! --backends microvm,qemu --workloads http-outside` (wrk from the client namespace to each guest), the
//! hardware-KVM-gated test binaries (so they execute instead of skipping), an oltp guest through the
//! VMM alone with a scratch disk kept for inspection, a panicking guest, a guest whose workload
//! cannot start, and `bench cleanup`. This test checks what that left in the job directory.
//!
//! Figures from L1 are emulated twice over: nothing here looks at a time except that it exists.
//! Skips (printing `skipped: <reason>`) when QEMU, busybox-static, the L1 kernel (fetched by
//! `scripts/setup.sh --packages`) or the guest kernel are missing.

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use harness::metrics;
    use harness::results::{KvmFlavour, ResultsFile};
    use testkit::Requirement;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn debug_dir() -> PathBuf {
        workspace().join("target/x86_64-unknown-linux-gnu/debug")
    }

    fn on_path(program: &str) -> bool {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
    }

    /// What this host lacks to run the layer, and why, if anything.
    fn unavailable() -> Option<(Requirement, String)> {
        if !testkit::is_root() {
            return Some((
                Requirement::Root,
                "needs root (QEMU's 9p share, /var/cache/cvbench)".into(),
            ));
        }
        if !on_path("qemu-system-x86_64") {
            return Some((
                Requirement::Package("qemu-system-x86"),
                "qemu-system-x86_64 not installed (scripts/setup.sh --packages)".into(),
            ));
        }
        if !Path::new("/bin/busybox").is_file() {
            return Some((
                Requirement::Package("busybox-static"),
                "busybox-static not installed (scripts/setup.sh --packages)".into(),
            ));
        }
        let env = std::env::var_os(microvm::kernel::GUEST_KERNEL_ENV);
        if microvm::kernel::locate_guest_kernel(
            env.as_deref(),
            Path::new(microvm::kernel::DEFAULT_KERNEL_CACHE),
        )
        .is_none()
        {
            return Some((
                Requirement::GuestKernel,
                "no guest kernel built (guest/kernel/build.sh)".into(),
            ));
        }
        for bin in [
            "bench",
            "cvbench-vmm",
            "cvbench-guest-init",
            "cvbench-workload",
            "cvbench-testproc",
        ] {
            if !debug_dir().join(bin).is_file() {
                return Some((
                    Requirement::Binaries,
                    format!("{bin} not built (cargo build --workspace --bins)"),
                ));
            }
        }
        None
    }

    /// The test executables of `args` (a `cargo test --no-run` selection), by target name.
    fn test_binaries(args: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .args(["test", "--no-run", "--quiet", "--message-format=json"])
            .args(args)
            .current_dir(workspace())
            .output()
            .map_err(|e| format!("running {cargo}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo test --no-run {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut found = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
                continue;
            }
            if let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) {
                found.push((name.to_string(), PathBuf::from(exe)));
            }
        }
        Ok(found)
    }

    /// Copies `exe` into `dir` as `name` without debug info (it crosses a 9p share into L1's RAM).
    fn stage_binary(exe: &Path, dir: &Path, name: &str) {
        let dest = dir.join(name);
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&dest)
            .arg(exe)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(exe, &dest).unwrap();
        }
    }

    fn read(job: &Path, name: &str) -> String {
        std::fs::read_to_string(job.join("out").join(name)).unwrap_or_else(|e| format!("<{name}: {e}>"))
    }

    fn rc(job: &Path, name: &str) -> Option<i32> {
        read(job, &format!("{name}.rc")).trim().parse().ok()
    }

    /// The checks on one `bench run` results file; every problem is pushed onto `failures`.
    fn check_run(job: &Path, workload: &str, failures: &mut Vec<String>) {
        let log = read(job, &format!("{workload}.log"));
        if rc(job, workload) != Some(0) {
            failures.push(format!(
                "bench run {workload} exited {:?}: {log}",
                rc(job, workload)
            ));
            return;
        }
        let results: ResultsFile = match serde_json::from_str(&read(job, &format!("{workload}.json"))) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{workload}.json unreadable: {e}"));
                return;
            }
        };
        if results.host.kvm != "nested-svm-tcg" {
            failures.push(format!(
                "{workload}: host kvm is {:?}, not nested-svm-tcg",
                results.host.kvm
            ));
        }
        let Some(cell) = results.benchmarks.first() else {
            failures.push(format!("{workload}: no benchmark in the results"));
            return;
        };
        if cell.skipped.is_some() || !cell.failures.is_empty() {
            failures.push(format!(
                "{workload}: skipped {:?}, failures {:?}",
                cell.skipped, cell.failures
            ));
        }
        if cell.isolation.kvm != KvmFlavour::NestedSvmTcg || !cell.isolation.is_emulated() {
            failures.push(format!(
                "{workload}: isolation {:?}, not nested and emulated",
                cell.isolation
            ));
        }
        for (label, value) in [("emulated", "true"), ("nested", "svm-tcg")] {
            if cell.labels.get(label).map(String::as_str) != Some(value) {
                failures.push(format!(
                    "{workload}: label {label} is {:?}",
                    cell.labels.get(label)
                ));
            }
        }
        let measured: Vec<_> = cell.runs.iter().filter(|r| !r.warmup).collect();
        if measured.len() != 2 {
            failures.push(format!("{workload}: {} measured runs, wanted 2", measured.len()));
        }
        for run in measured {
            // The phase events (VM created, first vCPU entry, the boot-timer write) and READY.
            for phase in [
                "start_to_vm_created_ms",
                "start_to_first_vcpu_entry_ms",
                "start_to_guest_init_ms",
                "start_to_ready_ms",
            ] {
                if !run.metrics.get(phase).is_some_and(|v| v.is_finite() && *v > 0.0) {
                    failures.push(format!("{workload} run {}: no {phase}", run.index));
                }
            }
            // Each phase follows the one before: VM created, first vCPU entry, guest init, READY.
            let times: Vec<f64> = [
                "start_to_vm_created_ms",
                "start_to_first_vcpu_entry_ms",
                "start_to_guest_init_ms",
                "start_to_ready_ms",
            ]
            .iter()
            .filter_map(|p| run.metrics.get(*p).copied())
            .collect();
            if times.windows(2).any(|w| w[0] > w[1]) {
                failures.push(format!(
                    "{workload} run {}: phases out of order: {times:?}",
                    run.index
                ));
            }
            // The idle workload waits until stopped and prints no RESULT; the others end with a
            // RESULT and then the guest's reset (any other stop fails the run in the harness).
            let wants_result = workload != "idle";
            if wants_result != run.workload_result.is_some() {
                failures.push(format!(
                    "{workload} run {}: RESULT {:?}",
                    run.index, run.workload_result
                ));
            }
        }
    }

    /// `bench compare --backends microvm,qemu --workloads http-outside` in L1: each VM's guest
    /// answered wrk in the client namespace, and every from-outside figure is there.
    fn check_outside(job: &Path, failures: &mut Vec<String>) {
        let log = read(job, "outside.log");
        if rc(job, "outside") != Some(0) {
            failures.push(format!(
                "bench compare http-outside exited {:?}: {log}",
                rc(job, "outside")
            ));
            return;
        }
        let results: ResultsFile = match serde_json::from_str(&read(job, "outside/results.json")) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("outside/results.json unreadable: {e}: {log}"));
                return;
            }
        };
        for backend in ["microvm", "qemu"] {
            let Some(cell) = results
                .benchmarks
                .iter()
                .find(|c| c.backend == backend && c.workload == "http-outside")
            else {
                failures.push(format!("http-outside: no {backend} cell: {log}"));
                continue;
            };
            if cell.skipped.is_some() || !cell.failures.is_empty() || cell.runs.is_empty() {
                failures.push(format!(
                    "http-outside {backend}: skipped {:?}, failures {:?}, {} runs",
                    cell.skipped,
                    cell.failures,
                    cell.runs.len()
                ));
            }
            for run in &cell.runs {
                let m = &run.metrics;
                let positive = |name: &str| m.get(name).is_some_and(|v| v.is_finite() && *v > 0.0);
                for name in [
                    metrics::START_TO_NETWORK_READY_MS,
                    metrics::START_TO_READY_MS,
                    metrics::START_TO_FIRST_RESPONSE_MS,
                    metrics::OUTSIDE_TCP_CONNECT_US,
                    metrics::OUTSIDE_REQUESTS_PER_S,
                    metrics::OUTSIDE_BYTES_PER_S,
                    metrics::OUTSIDE_LATENCY_P50_US,
                    metrics::OUTSIDE_LATENCY_P99_US,
                ] {
                    if !positive(name) {
                        failures.push(format!(
                            "http-outside {backend} run {}: no {name}: {m:?}",
                            run.index
                        ));
                    }
                }
                if m.get(metrics::OUTSIDE_ERRORS) != Some(&0.0) {
                    failures.push(format!(
                        "http-outside {backend} run {}: wrk errors {m:?}",
                        run.index
                    ));
                }
                // The network is set up before the VM starts; the first response follows READY.
                let at = |name: &str| m.get(name).copied().unwrap_or(f64::NAN);
                if !(at(metrics::START_TO_NETWORK_READY_MS) <= at(metrics::START_TO_READY_MS)
                    && at(metrics::START_TO_READY_MS) <= at(metrics::START_TO_FIRST_RESPONSE_MS))
                {
                    failures.push(format!(
                        "http-outside {backend} run {}: phases out of order: {m:?}",
                        run.index
                    ));
                }
            }
        }
    }

    #[test]
    fn microvm_linux_path_in_nested_kvm() {
        if let Some((requirement, reason)) = unavailable() {
            testkit::skip(requirement, reason);
            return;
        }
        let job_dir = tempfile::Builder::new()
            .prefix("cvbench-nested-test-")
            .tempdir()
            .unwrap();
        let job = job_dir.path();
        let tests = job.join("tests");
        let filters = job.join("tests-filter");
        std::fs::create_dir_all(&tests).unwrap();
        std::fs::create_dir_all(&filters).unwrap();

        // The hardware-KVM-gated tests: the microvm crate's KVM tests and unit tests, and the
        // harness's Linux-guest microvm backend test.
        let mut binaries = test_binaries(&[
            "-p",
            "microvm",
            "--lib",
            "--test",
            "kvm_probe",
            "--test",
            "linux_boot",
        ])
        .unwrap();
        binaries.extend(
            test_binaries(&["-p", "harness", "--lib"])
                .unwrap()
                .into_iter()
                .map(|(name, exe)| (format!("{name}-lib"), exe)),
        );
        for (name, exe) in &binaries {
            stage_binary(exe, &tests, name);
        }
        std::fs::write(
            filters.join("harness-lib"),
            "backends::microvm::tests::linux_guest_reaches_ready_on_hardware_kvm \
             backends::microvm::tests::linux_guest_serves_http_to_the_client_namespace_on_hardware_kvm --exact",
        )
        .unwrap();
        // kvm_probe runs the VMM from the path it was compiled with (CARGO_BIN_EXE_cvbench-vmm).
        let vmm = debug_dir().join("cvbench-vmm");
        std::fs::write(
            job.join("links"),
            format!("{} /opt/cvbench/bin/cvbench-vmm\n", vmm.display()),
        )
        .unwrap();

        let l1_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nested_kvm_l1.sh");
        let mut cmd = Command::new(workspace().join("scripts/nested-kvm.sh"));
        cmd.args(["--no-fetch", "--profile", "debug", "--timeout", "1200", "--job"])
            .arg(job)
            .arg("--script")
            .arg(&l1_script);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; the script (and through setpriv its
        // QEMU) is killed if this test process dies, so a killed test leaves no L1 running.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "nested-kvm.sh took {:.0} s: {stderr}",
            started.elapsed().as_secs_f64()
        );
        if out.status.code() == Some(3) {
            // A package or the L1 kernel is missing: scripts/setup.sh --packages provides both.
            testkit::skip(Requirement::Package("linux-image-amd64"), stderr.trim());
            return;
        }
        let serial = std::fs::read_to_string(job.join("serial.log")).unwrap_or_default();
        let serial_tail: String = {
            let lines: Vec<&str> = serial.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        assert!(out.status.success(), "L1 did not finish: {stderr}\n{serial_tail}");
        // The script's QEMU is gone.
        if let Ok(pid) = std::fs::read_to_string(job.join("qemu.pid")) {
            let pid = pid.trim();
            assert!(
                !Path::new("/proc").join(pid).join("exe").exists()
                    || std::fs::read_link(Path::new("/proc").join(pid).join("exe"))
                        .is_ok_and(|e| !e.to_string_lossy().contains("qemu")),
                "the L1 QEMU (pid {pid}) still runs"
            );
        }

        let mut failures = Vec::new();
        // The gated test binaries executed (none skipped for want of hardware KVM) and passed.
        for (name, _) in &binaries {
            let log = read(job, &format!("test-{name}.log"));
            if rc(job, &format!("test-{name}")) != Some(0) || !log.contains("test result: ok") {
                failures.push(format!("test binary {name} failed in L1:\n{log}"));
            }
            // What L1 is for: nothing may skip for want of (hardware) KVM. Other skips are shown.
            let skips: Vec<&str> = log.lines().filter(|l| l.contains("skipped:")).collect();
            let kvm_skips: Vec<&&str> = skips
                .iter()
                .filter(|l| {
                    ["kvm", "pvm", "vmx", "svm", "hardware"]
                        .iter()
                        .any(|w| l.to_lowercase().contains(w))
                })
                .collect();
            if !kvm_skips.is_empty() {
                failures.push(format!(
                    "test binary {name} skipped for want of KVM in L1: {kvm_skips:?}"
                ));
            }
            if skips.len() > kvm_skips.len() {
                println!("test binary {name} in L1 also skipped: {skips:?}");
            }
            if !log.contains(" passed;") || log.contains(" 0 passed;") {
                failures.push(format!("test binary {name} ran no test in L1:\n{log}"));
            }
        }

        for workload in ["idle", "http", "oltp"] {
            check_run(job, workload, &mut failures);
        }
        // oltp's database lands on each instance's scratch disk: it holds more than idle's.
        let disk_bytes = |workload: &str| -> Vec<f64> {
            serde_json::from_str::<ResultsFile>(&read(job, &format!("{workload}.json")))
                .ok()
                .and_then(|r| r.benchmarks.into_iter().next())
                .map(|c| {
                    c.runs
                        .iter()
                        .filter_map(|r| r.metrics.get("instance_disk_bytes").copied())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (idle_disk, oltp_disk) = (disk_bytes("idle"), disk_bytes("oltp"));
        let idle_max = idle_disk.iter().copied().fold(0.0, f64::max);
        if oltp_disk.is_empty() || idle_disk.is_empty() || oltp_disk.iter().any(|&b| b <= idle_max) {
            failures.push(format!(
                "oltp scratch disks ({oltp_disk:?} bytes) do not hold more than idle's ({idle_disk:?})"
            ));
        }

        check_outside(job, &mut failures);

        // An image without its workload: refused while preparing, before any VM.
        let empty = read(job, "empty.log");
        if rc(job, "empty") != Some(1) || !empty.contains("/bin/cvbench-workload is not in the image") {
            failures.push(format!(
                "an image without its workload: exit {:?}, wanted 1 refusing it in prepare: {empty}",
                rc(job, "empty")
            ));
        }
        // A guest whose workload dies before READY: bench fails the run with guest init's report of it.
        let broken = read(job, "broken.log");
        if rc(job, "broken") != Some(1)
            || !broken.contains("the workload failed: workload: /bin/cvbench-workload exited with status 127")
        {
            failures.push(format!(
                "a workload dying before READY: exit {:?}, wanted 1 with guest init's report of the exit: {broken}",
                rc(job, "broken")
            ));
        }

        // The oltp guest through the VMM alone: two vCPUs up, 192 MiB seen, the guest reset, and
        // the durable writes on the scratch disk.
        let console = read(job, "vmm-oltp.console");
        let events = read(job, "vmm-oltp.events");
        if rc(job, "vmm-oltp") != Some(0) || !events.contains("guest_reset") {
            failures.push(format!(
                "VMM oltp run exited {:?} without a guest reset: {events}\n{console}",
                rc(job, "vmm-oltp")
            ));
        }
        if !console.contains("CVBENCH READY oltp") || !console.contains("CVBENCH RESULT") {
            failures.push(format!(
                "VMM oltp run: no READY/RESULT on the console:\n{console}"
            ));
        }
        // The VMM's i8042 answers Linux's CTR read (as Firecracker's does): without it the driver
        // polls the controller for half a second of every boot.
        if console.contains("i8042: Can't read CTR") {
            failures.push(format!("the guest's i8042 probe timed out:\n{console}"));
        }
        if !console.contains("Brought up 1 node, 2 CPUs") {
            failures.push(format!(
                "VMM oltp run with --vcpus 2: the guest did not bring up 2 CPUs:\n{console}"
            ));
        }
        // 192 MiB of guest RAM mapped, and the kernel's total (RAM less the e820 holes below 1 MiB)
        // above what the 128 MiB default would give.
        if !events.contains("+0xc000000") {
            failures.push(format!(
                "VMM oltp run with 192 MiB: guest RAM is not 0xc000000 bytes: {events}"
            ));
        }
        let total_kib = console.lines().find_map(|l| {
            l.split_once("Memory: ")?
                .1
                .split_once('/')?
                .1
                .split_once("K ")?
                .0
                .parse::<u64>()
                .ok()
        });
        if !total_kib.is_some_and(|k| k > 160 * 1024 && k <= 192 * 1024) {
            failures.push(format!(
                "VMM oltp run with 192 MiB: the kernel saw {total_kib:?} KiB:\n{console}"
            ));
        }
        if read(job, "image-disks").lines().count() != 1 {
            failures.push(format!(
                "image disks after the bench runs: {}",
                read(job, "image-disks")
            ));
        }
        if rc(job, "fsck").is_none_or(|c| c > 1) {
            failures.push(format!(
                "e2fsck of the scratch disk: {:?} {}",
                rc(job, "fsck"),
                read(job, "fsck.log")
            ));
        }
        let stat = read(job, "db.stat");
        let size = stat
            .split_whitespace()
            .skip_while(|w| *w != "Size:")
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if size < 4096 || read(job, "db.head") != "SQLite format 3\0" {
            failures.push(format!(
                "the oltp database is not on the scratch disk (size {size}, head {:?}): {stat}",
                read(job, "db.head")
            ));
        }

        // A kernel panic (no root disk) ends in a reset, which the VMM reports and stops on.
        let panic_console = read(job, "vmm-panic.console");
        let panic_events = read(job, "vmm-panic.events");
        if !panic_console.contains("Kernel panic") || !panic_events.contains("guest_reset") {
            failures.push(format!(
                "a panicking guest did not end in a reset: {panic_events}\n{panic_console}"
            ));
        }

        // Nothing of cvbench is left in L1.
        let cleanup = read(job, "cleanup.log");
        if rc(job, "cleanup") != Some(0) || cleanup.trim() != "nothing to clean up" {
            failures.push(format!("bench cleanup in L1 found something: {cleanup}"));
        }
        for left in ["run-left", "procs-left", "mounts-left", "net-left"] {
            let text = read(job, left);
            if !text.trim().is_empty() {
                failures.push(format!("{left} in L1: {text}"));
            }
        }

        if !failures.is_empty() && std::env::var_os("CVBENCH_NESTED_KEEP").is_some() {
            println!("job directory kept: {}", job_dir.keep().display());
        }
        assert!(
            failures.is_empty(),
            "{} problem(s) in the nested-KVM layer:\n{}\n--- L1 console tail ---\n{serial_tail}",
            failures.len(),
            failures.join("\n")
        );
    }
}
