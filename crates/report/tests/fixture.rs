//! A results file built in code: three backends that ran (one emulated), one skipped, three
//! workloads, density curves and failures — every chart has something to draw. Samples are
//! generated deterministically (no randomness, no files).

use std::collections::BTreeMap;

use results::isolation::{Isolation, IsolationKind, KvmFlavour};
use results::metrics::*;
use results::schema::{
    BenchmarkResult, DensityBasis, DensityPoint, DensityResult, HostInfo, ResultsFile, RunFailure, RunRecord,
    ToolInfo,
};
use workload::{WorkloadKind, WorkloadSpec};

pub const HOSTNAME: &str = "fixture-host";

/// Deterministic spread: `center × (1 + amp × s(i))` with `s` cycling through [-1, 1].
fn spread(center: f64, amp: f64, i: u32) -> f64 {
    let s = f64::from((i * 7) % 11) / 5.0 - 1.0;
    center * (1.0 + amp * s)
}

/// The microVM of the fixture: emulated, as on a PVM host.
const MICROVM: Isolation = Isolation::vm(IsolationKind::MicroVm, KvmFlavour::Pvm);

fn cell(backend: &str, isolation: Isolation, kind: WorkloadKind, runs: u32, scale: f64) -> BenchmarkResult {
    let mut c = BenchmarkResult::new(
        backend,
        isolation,
        &WorkloadSpec::default_for(kind),
        BTreeMap::new(),
    );
    let vm = isolation.kind.is_vm();
    c.shared_image_bytes = Some(if vm { 48 << 20 } else { 6 << 20 });
    for i in 0..runs + 1 {
        let mut m = BTreeMap::new();
        if vm {
            m.insert(
                START_TO_FIRST_VCPU_ENTRY_MS.to_string(),
                spread(9.0 * scale, 0.05, i),
            );
            m.insert(START_TO_GUEST_INIT_MS.to_string(), spread(180.0 * scale, 0.08, i));
            m.insert(
                START_TO_READY_MS.to_string(),
                spread(230.0 * scale, 0.08, i) + if i == 4 { 90.0 } else { 0.0 },
            );
            m.insert(PSS_BYTES.to_string(), spread(40.0 * 1048576.0, 0.02, i));
            m.insert(GUEST_RAM_RESIDENT_BYTES.to_string(), 37.0 * 1048576.0);
            m.insert(VMM_OVERHEAD_BYTES.to_string(), 3.0 * 1048576.0);
            m.insert(INSTANCE_DISK_BYTES.to_string(), 4.0 * 1048576.0);
        } else {
            m.insert(START_TO_EXEC_MS.to_string(), spread(2.2 * scale, 0.1, i));
            m.insert(START_TO_READY_MS.to_string(), spread(3.1 * scale, 0.1, i));
            m.insert(PSS_BYTES.to_string(), spread(1.6 * 1048576.0, 0.03, i));
            m.insert(CGROUP_MEMORY_BYTES.to_string(), spread(2.4 * 1048576.0, 0.03, i));
            if isolation.kind == IsolationKind::OciRuntime {
                m.insert(RUNTIME_PSS_BYTES.to_string(), 6.5 * 1048576.0);
            }
            m.insert(INSTANCE_DISK_BYTES.to_string(), 12288.0);
        }
        match kind {
            WorkloadKind::Http => {
                m.insert(
                    WORKLOAD_REQUESTS_PER_S.to_string(),
                    spread(21000.0 / scale, 0.05, i),
                );
                m.insert(
                    WORKLOAD_LATENCY_P50_US.to_string(),
                    spread(160.0 * scale, 0.05, i),
                );
                m.insert(WORKLOAD_LATENCY_P99_US.to_string(), spread(900.0 * scale, 0.1, i));
            }
            WorkloadKind::Oltp => {
                m.insert(WORKLOAD_TPS.to_string(), spread(850.0 / scale, 0.05, i));
                m.insert(
                    WORKLOAD_LATENCY_P50_US.to_string(),
                    spread(1100.0 * scale, 0.05, i),
                );
                m.insert(
                    WORKLOAD_LATENCY_P99_US.to_string(),
                    spread(3100.0 * scale, 0.1, i),
                );
            }
            WorkloadKind::HttpOutside => {
                m.insert(
                    results::metrics::OUTSIDE_REQUESTS_PER_S.to_string(),
                    spread(40000.0 / scale, 0.05, i),
                );
                m.insert(
                    results::metrics::OUTSIDE_LATENCY_P99_US.to_string(),
                    spread(3000.0 * scale, 0.1, i),
                );
            }
            WorkloadKind::Nginx | WorkloadKind::Mariadb => {
                m.insert(
                    results::metrics::START_TO_SERVICE_READY_MS.to_string(),
                    spread(700.0 * scale, 0.1, i),
                );
            }
            WorkloadKind::Idle => {}
        }
        c.runs.push(RunRecord {
            index: i,
            warmup: i == 0,
            metrics: m,
            workload_result: None,
        });
    }
    c
}

fn curve(backend: &str, isolation: Isolation, n: u32, per_mib: f64, launch_ms: f64) -> DensityResult {
    let mut points = Vec::new();
    let mut before = 0u64;
    for k in 1..=n {
        // Truncation to whole bytes is intended.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let total = (f64::from(k) * per_mib * 1048576.0) as u64;
        let vm = backend.starts_with("microvm");
        // The host loses three times the PSS: the kernel's part (page tables, slab, KVM) is 2/3.
        let used = total * 3;
        points.push(DensityPoint {
            instances: k,
            launch_ms: spread(launch_ms, 0.1, k),
            total_pss_bytes: total,
            host_mem_available_bytes: (20u64 << 30) - used,
            marginal_pss_bytes: i64::try_from(total - before).unwrap_or(0),
            host_used_bytes: i64::try_from(used).ok(),
            host_kernel_bytes: i64::try_from(total * 2).ok(),
            cgroup_memory_bytes: (!vm).then_some(total * 2),
            guest_ram_bytes: vm.then_some(total / 2),
        });
        before = total;
    }
    let last_used = points
        .last()
        .and_then(|p| p.host_used_bytes)
        .map_or(1.0, |b| b as f64);
    let last = points.last().map_or(1.0, |p| p.total_pss_bytes as f64);
    DensityResult {
        backend: backend.to_string(),
        isolation,
        workload: "idle".to_string(),
        labels: BTreeMap::new(),
        instances_per_gib: Some(f64::from(n) / (last_used / (1u64 << 30) as f64)),
        basis: DensityBasis::PssPlusKernel,
        instances_per_gib_pss: Some(f64::from(n) / (last / (1u64 << 30) as f64)),
        host_id: None,
        points,
        stop_reason: format!("max: {n} instances"),
    }
}

pub fn results(runs: u32) -> ResultsFile {
    let host = HostInfo {
        hostname: HOSTNAME.to_string(),
        kernel: "6.1.0-fixture".to_string(),
        cpu_model: "Fixture CPU @ 2.0GHz".to_string(),
        cores: 2,
        memory_bytes: 24 << 30,
        cgroup_version: "hybrid".to_string(),
        kvm: "pvm".to_string(),
        os: "Debian GNU/Linux 12 (bookworm)".to_string(),
        arch: String::new(),
        dimensions: Default::default(),
    };
    let tool = ToolInfo {
        name: "cvbench".to_string(),
        version: "0.1.0".to_string(),
        git_revision: Some("abcdef123456".to_string()),
        argv: vec!["bench".into(), "compare".into()],
    };
    let mut f = ResultsFile::new("compare", tool, host);
    let container = Isolation::host_kernel(IsolationKind::Container);
    let runc = Isolation::host_kernel(IsolationKind::OciRuntime);
    let qemu = Isolation::vm(IsolationKind::OtherVmm, KvmFlavour::Tcg);
    for kind in WorkloadKind::ALL {
        f.benchmarks.push(cell("container", container, kind, runs, 1.0));
        f.benchmarks.push(cell("runc", runc, kind, runs, 7.0));
        if kind == WorkloadKind::Idle {
            f.benchmarks.push(cell("microvm", MICROVM, kind, runs, 1.0));
        }
        let mut skipped =
            BenchmarkResult::new("qemu", qemu, &WorkloadSpec::default_for(kind), BTreeMap::new());
        skipped.skipped = Some("qemu-system-x86_64 not installed".to_string());
        f.benchmarks.push(skipped);
    }
    f.benchmarks[1].failures.push(RunFailure {
        index: 3,
        error: "runc: the workload was not ready after 10s".into(),
    });
    f.density.push(curve("container", container, 30, 1.7, 3.4));
    f.density.push(curve("microvm", MICROVM, 12, 41.0, 240.0));
    f
}
