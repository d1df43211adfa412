//! The metric registry: every figure cvbench records, with its unit as a typed [`Quantity`], whether
//! lower or higher is better, whether it is a startup phase, and how it is labelled. Readers
//! (`report`, `cli`, `check`) look a name up here instead of guessing from its suffix, and format a
//! value through [`Quantity::format`] — the one formatter of the workspace.
//!
//! Names are stored in results files as they are written here; the workload's own figures carry the
//! prefix [`WORKLOAD_PREFIX`] (`workload.requests_per_s`). A name missing from the registry (a new
//! workload figure, a file from a newer cvbench) is shown as a plain number ([`Quantity::Plain`]),
//! never given a unit guessed from its name.

/// Startup phases, measured from the moment the harness asked for the instance.
pub const START_TO_ROOTFS_READY_MS: &str = "start_to_rootfs_ready_ms";
/// Container: the child applied `--confinement` (masked/read-only paths, rlimits, capabilities,
/// no_new_privs, seccomp), right before exec.
pub const START_TO_CONFINED_MS: &str = "start_to_confined_ms";
pub const START_TO_EXEC_MS: &str = "start_to_exec_ms";
/// The instance's network namespace and veth configured (before its process runs).
pub const START_TO_NETWORK_READY_MS: &str = "start_to_network_ready_ms";
/// The first HTTP 200 seen from the client network namespace (polled with backoff after READY).
pub const START_TO_FIRST_RESPONSE_MS: &str = "start_to_first_response_ms";
pub const START_TO_VM_CREATED_MS: &str = "start_to_vm_created_ms";
pub const START_TO_FIRST_VCPU_ENTRY_MS: &str = "start_to_first_vcpu_entry_ms";
pub const START_TO_GUEST_INIT_MS: &str = "start_to_guest_init_ms";
/// A container engine (docker, podman) created the container (`docker create` returned).
pub const START_TO_CREATED_MS: &str = "start_to_created_ms";
/// The workload printed `CVBENCH READY`: the end of every startup.
pub const START_TO_READY_MS: &str = "start_to_ready_ms";

/// Memory and disk of one ready instance.
pub const PSS_BYTES: &str = "pss_bytes";
pub const CGROUP_MEMORY_BYTES: &str = "cgroup_memory_bytes";
/// PSS of the processes that run the instance without being it: `runc run`, the container engine's
/// shim or conmon, and for daemon-managed containers the daemons (dockerd, containerd). A daemon
/// serves every instance, so its share is counted whole in each instance's figure.
pub const RUNTIME_PSS_BYTES: &str = "runtime_pss_bytes";
/// PSS of the container engine's daemons alone (dockerd + containerd): shared by all its instances,
/// included in [`RUNTIME_PSS_BYTES`].
pub const DAEMON_PSS_BYTES: &str = "daemon_pss_bytes";
pub const GUEST_RAM_RESIDENT_BYTES: &str = "guest_ram_resident_bytes";
pub const VMM_OVERHEAD_BYTES: &str = "vmm_overhead_bytes";
pub const INSTANCE_DISK_BYTES: &str = "instance_disk_bytes";

/// Prefix of the figures a workload reports in its `CVBENCH RESULT` line.
pub const WORKLOAD_PREFIX: &str = "workload.";
/// Figures of the load driven from outside (`wrk` in the client namespace, over the veth): measured
/// by the harness, not reported by the workload, hence their own prefix.
pub const OUTSIDE_PREFIX: &str = "outside.";
pub const OUTSIDE_REQUESTS_PER_S: &str = "outside.requests_per_s";
pub const OUTSIDE_BYTES_PER_S: &str = "outside.bytes_per_s";
pub const OUTSIDE_LATENCY_P50_US: &str = "outside.latency_p50_us";
pub const OUTSIDE_LATENCY_P90_US: &str = "outside.latency_p90_us";
pub const OUTSIDE_LATENCY_P99_US: &str = "outside.latency_p99_us";
/// Median of a few TCP connects from the client namespace.
pub const OUTSIDE_TCP_CONNECT_US: &str = "outside.tcp_connect_us";
/// wrk's socket errors plus non-2xx/3xx responses.
pub const OUTSIDE_ERRORS: &str = "outside.errors";
/// The cell label (of an `http` cell reached from outside) saying how its `outside.*` figures were
/// obtained, or `missing: <why>` when the backend or host has no network path.
pub const OUTSIDE_LOAD_LABEL: &str = "outside_load";
/// A real daemon (nginx, MariaDB) first answered from the client namespace: an HTTP 200, or a MySQL
/// handshake, login and `SELECT 1`.
pub const START_TO_SERVICE_READY_MS: &str = "start_to_service_ready_ms";
/// PSS of a service workload's daemon processes alone (`nginx` master and workers, `mariadbd`),
/// without the cvbench supervisor that `pss_bytes` also counts.
pub const SERVICE_PSS_BYTES: &str = "service_pss_bytes";
/// `sysbench oltp_read_write` against MariaDB from the client namespace.
pub const OUTSIDE_SYSBENCH_TPS: &str = "outside.sysbench_tps";
pub const OUTSIDE_SYSBENCH_QPS: &str = "outside.sysbench_qps";
pub const OUTSIDE_SYSBENCH_P95_MS: &str = "outside.sysbench_p95_ms";
/// sysbench's ignored (retried) errors.
pub const OUTSIDE_SYSBENCH_ERRORS: &str = "outside.sysbench_errors";
/// Wall time of `sysbench prepare` (tables created and loaded) on the fresh instance.
pub const OUTSIDE_SYSBENCH_PREPARE_S: &str = "outside.sysbench_prepare_s";
pub const WORKLOAD_REQUESTS_PER_S: &str = "workload.requests_per_s";
pub const WORKLOAD_TPS: &str = "workload.tps";
pub const WORKLOAD_OPS_PER_S: &str = "workload.ops_per_s";
pub const WORKLOAD_BYTES_PER_S: &str = "workload.bytes_per_s";
pub const WORKLOAD_LATENCY_P50_US: &str = "workload.latency_p50_us";
pub const WORKLOAD_LATENCY_P99_US: &str = "workload.latency_p99_us";
pub const WORKLOAD_ERRORS: &str = "workload.errors";
pub const WORKLOAD_REQUESTS: &str = "workload.requests";
pub const WORKLOAD_CONNECTIONS: &str = "workload.connections";
pub const WORKLOAD_ROWS: &str = "workload.rows";
pub const WORKLOAD_TRANSACTIONS: &str = "workload.transactions";
pub const WORKLOAD_DURATION_S: &str = "workload.duration_s";
pub const WORKLOAD_LOAD_S: &str = "workload.load_s";

/// The results name of a figure the workload reported as `name` (`tps` -> `workload.tps`).
pub fn workload_metric(name: &str) -> String {
    format!("{WORKLOAD_PREFIX}{name}")
}

/// The name a workload reports a figure under in its RESULT line (`workload.tps` -> `tps`).
pub fn workload_figure(metric: &str) -> &str {
    metric.strip_prefix(WORKLOAD_PREFIX).unwrap_or(metric)
}

/// A unit of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Milliseconds,
    Microseconds,
}

/// What a rate counts per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Request,
    Transaction,
    Operation,
}

/// What a number measures, and so how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A duration, recorded in the given unit.
    Time(TimeUnit),
    /// A byte count (shown as B, KiB, MiB or GiB by magnitude).
    Bytes,
    /// Bytes per second (shown in MiB/s).
    ByteRate,
    /// Events per second: the workload's throughput.
    Rate(Event),
    /// A number of things (rows, requests, errors).
    Count,
    /// A dimensionless ratio (`1.25×`).
    Ratio,
    /// A figure the registry does not know: a plain number, no unit.
    Plain,
}

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * KIB;
const GIB: f64 = MIB * KIB;

impl Quantity {
    /// The unit of [`Quantity::scaled`] values, for axis labels: `ms`, `MiB`, `tx/s`; empty for
    /// counts and plain numbers.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Time(TimeUnit::Seconds) => "s",
            Quantity::Time(TimeUnit::Milliseconds) => "ms",
            Quantity::Time(TimeUnit::Microseconds) => "µs",
            Quantity::Bytes => "MiB",
            Quantity::ByteRate => "MiB/s",
            Quantity::Rate(Event::Transaction) => "tx/s",
            Quantity::Rate(Event::Request | Event::Operation) => "/s",
            Quantity::Ratio => "×",
            Quantity::Count | Quantity::Plain => "",
        }
    }

    /// A recorded value in the unit of [`Quantity::unit`] (bytes become MiB).
    pub fn scaled(self, v: f64) -> f64 {
        match self {
            Quantity::Bytes | Quantity::ByteRate => v / MIB,
            _ => v,
        }
    }

    /// [`Quantity::scaled`] without its unit, precision chosen by magnitude (`1234`, `123.4`,
    /// `12.34`, `0.123`); `–` for a value that is not finite.
    pub fn format_number(self, v: f64) -> String {
        number(self.scaled(v))
    }

    /// A value with its unit: `2.50 ms`, `250.0 µs`, `1.50 MiB`, `512 B`, `1234 /s`, `7.00`.
    /// Byte counts pick B, KiB, MiB or GiB by magnitude.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return number(v);
        }
        match self {
            Quantity::Bytes => bytes(v),
            Quantity::Ratio => format!("{v:.2}×"),
            _ => match self.unit() {
                "" => self.format_number(v),
                unit => format!("{} {unit}", self.format_number(v)),
            },
        }
    }
}

/// A number, precision chosen by magnitude.
fn number(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "–".to_string()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A byte count in B, KiB, MiB or GiB, by magnitude.
fn bytes(v: f64) -> String {
    let a = v.abs();
    if a >= GIB {
        format!("{:.2} GiB", v / GIB)
    } else if a >= MIB {
        format!("{} MiB", number(v / MIB))
    } else if a >= KIB {
        format!("{} KiB", number(v / KIB))
    } else {
        format!("{v:.0} B")
    }
}

/// Whether a smaller or a larger value is the better one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
    /// A parameter or a count that describes the run rather than rates it (rows, connections).
    Neither,
}

/// Where a metric belongs: tables and the terminal list startup first, then memory and disk, then
/// the workload's own figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Startup,
    Memory,
    Disk,
    /// The workload's headline figures: throughput and latency.
    Workload,
    /// What the workload reports about its own run (sizes, durations, counts): in the results and
    /// the terminal, not in the report's tables.
    WorkloadDetail,
}

/// One registered metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name in results files.
    pub name: &'static str,
    pub quantity: Quantity,
    pub direction: Direction,
    pub group: Group,
    /// How charts and captions name it (`ready`, `PSS`, `requests / s`).
    pub label: &'static str,
}

impl Metric {
    /// Whether this is a startup phase (`start_to_*_ms`): what `bench check` compares.
    pub fn is_startup(&self) -> bool {
        self.group == Group::Startup
    }
}

const fn entry(
    name: &'static str,
    quantity: Quantity,
    direction: Direction,
    group: Group,
    label: &'static str,
) -> Metric {
    Metric {
        name,
        quantity,
        direction,
        group,
        label,
    }
}

const MS: Quantity = Quantity::Time(TimeUnit::Milliseconds);
const US: Quantity = Quantity::Time(TimeUnit::Microseconds);
const SECS: Quantity = Quantity::Time(TimeUnit::Seconds);
use Direction::{HigherIsBetter as Higher, LowerIsBetter as Lower, Neither};

/// Every metric cvbench knows.
pub const REGISTRY: &[Metric] = &[
    entry(
        START_TO_NETWORK_READY_MS,
        MS,
        Lower,
        Group::Startup,
        "network_ready",
    ),
    entry(
        START_TO_ROOTFS_READY_MS,
        MS,
        Lower,
        Group::Startup,
        "rootfs_ready",
    ),
    entry(START_TO_CONFINED_MS, MS, Lower, Group::Startup, "confined"),
    entry(START_TO_EXEC_MS, MS, Lower, Group::Startup, "exec"),
    entry(
        OUTSIDE_REQUESTS_PER_S,
        Quantity::Rate(Event::Request),
        Higher,
        Group::Workload,
        "requests / s from outside",
    ),
    entry(
        OUTSIDE_BYTES_PER_S,
        Quantity::ByteRate,
        Higher,
        Group::Workload,
        "transfer / s from outside",
    ),
    entry(
        OUTSIDE_LATENCY_P50_US,
        US,
        Lower,
        Group::Workload,
        "p50 from outside",
    ),
    entry(
        OUTSIDE_LATENCY_P90_US,
        US,
        Lower,
        Group::Workload,
        "p90 from outside",
    ),
    entry(
        OUTSIDE_LATENCY_P99_US,
        US,
        Lower,
        Group::Workload,
        "p99 from outside",
    ),
    entry(
        OUTSIDE_TCP_CONNECT_US,
        US,
        Lower,
        Group::Workload,
        "TCP connect from outside",
    ),
    entry(
        OUTSIDE_ERRORS,
        Quantity::Count,
        Lower,
        Group::WorkloadDetail,
        "errors from outside",
    ),
    entry(
        START_TO_SERVICE_READY_MS,
        MS,
        Lower,
        Group::Startup,
        "service_ready",
    ),
    entry(
        OUTSIDE_SYSBENCH_TPS,
        Quantity::Rate(Event::Transaction),
        Higher,
        Group::Workload,
        "sysbench transactions / s",
    ),
    entry(
        OUTSIDE_SYSBENCH_QPS,
        Quantity::Rate(Event::Operation),
        Higher,
        Group::Workload,
        "sysbench queries / s",
    ),
    entry(
        OUTSIDE_SYSBENCH_P95_MS,
        MS,
        Lower,
        Group::Workload,
        "sysbench p95",
    ),
    entry(
        OUTSIDE_SYSBENCH_ERRORS,
        Quantity::Count,
        Lower,
        Group::WorkloadDetail,
        "sysbench ignored errors",
    ),
    entry(
        OUTSIDE_SYSBENCH_PREPARE_S,
        SECS,
        Lower,
        Group::WorkloadDetail,
        "sysbench prepare",
    ),
    entry(START_TO_VM_CREATED_MS, MS, Lower, Group::Startup, "vm_created"),
    entry(
        START_TO_FIRST_VCPU_ENTRY_MS,
        MS,
        Lower,
        Group::Startup,
        "first_vcpu_entry",
    ),
    entry(START_TO_GUEST_INIT_MS, MS, Lower, Group::Startup, "guest_init"),
    entry(START_TO_CREATED_MS, MS, Lower, Group::Startup, "created"),
    entry(START_TO_READY_MS, MS, Lower, Group::Startup, "ready"),
    entry(
        START_TO_FIRST_RESPONSE_MS,
        MS,
        Lower,
        Group::Startup,
        "first_response",
    ),
    entry(PSS_BYTES, Quantity::Bytes, Lower, Group::Memory, "PSS"),
    entry(
        SERVICE_PSS_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "daemon PSS (nginx / mariadbd)",
    ),
    entry(
        CGROUP_MEMORY_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "cgroup memory",
    ),
    entry(
        RUNTIME_PSS_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "runtime PSS",
    ),
    entry(
        DAEMON_PSS_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "daemon PSS (shared)",
    ),
    entry(
        GUEST_RAM_RESIDENT_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "guest RAM resident",
    ),
    entry(
        VMM_OVERHEAD_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Memory,
        "VMM overhead",
    ),
    entry(
        INSTANCE_DISK_BYTES,
        Quantity::Bytes,
        Lower,
        Group::Disk,
        "layer per instance",
    ),
    entry(
        WORKLOAD_REQUESTS_PER_S,
        Quantity::Rate(Event::Request),
        Higher,
        Group::Workload,
        "requests / s",
    ),
    entry(
        WORKLOAD_TPS,
        Quantity::Rate(Event::Transaction),
        Higher,
        Group::Workload,
        "transactions / s",
    ),
    entry(
        WORKLOAD_OPS_PER_S,
        Quantity::Rate(Event::Operation),
        Higher,
        Group::Workload,
        "operations / s",
    ),
    entry(
        WORKLOAD_BYTES_PER_S,
        Quantity::ByteRate,
        Higher,
        Group::Workload,
        "bytes / s",
    ),
    entry(
        WORKLOAD_LATENCY_P50_US,
        US,
        Lower,
        Group::Workload,
        "latency_p50_us",
    ),
    entry(
        WORKLOAD_LATENCY_P99_US,
        US,
        Lower,
        Group::Workload,
        "latency_p99_us",
    ),
    entry(
        WORKLOAD_ERRORS,
        Quantity::Count,
        Lower,
        Group::WorkloadDetail,
        "errors",
    ),
    entry(
        WORKLOAD_REQUESTS,
        Quantity::Count,
        Neither,
        Group::WorkloadDetail,
        "requests",
    ),
    entry(
        WORKLOAD_CONNECTIONS,
        Quantity::Count,
        Neither,
        Group::WorkloadDetail,
        "connections",
    ),
    entry(
        WORKLOAD_ROWS,
        Quantity::Count,
        Neither,
        Group::WorkloadDetail,
        "rows",
    ),
    entry(
        WORKLOAD_TRANSACTIONS,
        Quantity::Count,
        Neither,
        Group::WorkloadDetail,
        "transactions",
    ),
    entry(
        WORKLOAD_DURATION_S,
        SECS,
        Neither,
        Group::WorkloadDetail,
        "duration",
    ),
    entry(WORKLOAD_LOAD_S, SECS, Neither, Group::WorkloadDetail, "load time"),
];

/// The registered metric called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Metric> {
    REGISTRY.iter().find(|m| m.name == name)
}

/// The group an unregistered name sorts in: a workload figure with the workload details, anything
/// else with memory and disk.
fn unknown_group(name: &str) -> Group {
    if name.starts_with(WORKLOAD_PREFIX) {
        Group::WorkloadDetail
    } else {
        Group::Memory
    }
}

/// The unit of `name`'s values; [`Quantity::Plain`] for a name the registry does not know.
pub fn quantity(name: &str) -> Quantity {
    find(name).map_or(Quantity::Plain, |m| m.quantity)
}

/// `name`'s value with its unit (see [`Quantity::format`]).
pub fn format(name: &str, v: f64) -> String {
    quantity(name).format(v)
}

/// Whether `name` is a registered startup phase.
pub fn is_startup(name: &str) -> bool {
    find(name).is_some_and(Metric::is_startup)
}

/// The group `name` sorts in (see [`Group`]).
pub fn group(name: &str) -> Group {
    find(name).map_or_else(|| unknown_group(name), |m| m.group)
}

/// How `name` is labelled: the registry's label, else the name itself.
pub fn label(name: &str) -> &str {
    find(name).map_or(name, |m| m.label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_by_their_registered_quantity() {
        assert_eq!(format(START_TO_READY_MS, 2.5), "2.50 ms");
        assert_eq!(format(PSS_BYTES, 1_572_864.0), "1.50 MiB");
        assert_eq!(format(INSTANCE_DISK_BYTES, 12288.0), "12.00 KiB");
        assert_eq!(format(INSTANCE_DISK_BYTES, 512.0), "512 B");
        assert_eq!(format(PSS_BYTES, 3.0 * GIB), "3.00 GiB");
        assert_eq!(format(WORKLOAD_BYTES_PER_S, 2.0 * MIB), "2.00 MiB/s");
        assert_eq!(format(WORKLOAD_REQUESTS_PER_S, 12345.4), "12345 /s");
        assert_eq!(format(WORKLOAD_LATENCY_P99_US, 250.0), "250.0 µs");
        assert_eq!(format(WORKLOAD_TPS, 0.5), "0.500 tx/s");
        assert_eq!(format(WORKLOAD_ROWS, 7.0), "7.00");
        assert_eq!(format(WORKLOAD_DURATION_S, 1.25), "1.25 s");
        assert_eq!(format(START_TO_READY_MS, f64::NAN), "–");
        assert_eq!(Quantity::Ratio.format(1.234), "1.23×");
    }

    #[test]
    fn unknown_names_are_plain_numbers_not_guessed_from_their_suffix() {
        for name in ["workload.sync_ms", "workload.cache_bytes", "start_to_nowhere_ms"] {
            assert_eq!(quantity(name), Quantity::Plain, "{name}");
            assert!(!is_startup(name), "{name}");
        }
        assert_eq!(format("workload.cache_bytes", 2048.0), "2048");
        assert_eq!(group("workload.cache_bytes"), Group::WorkloadDetail);
        assert_eq!(label("workload.cache_bytes"), "workload.cache_bytes");
        assert_eq!(label(PSS_BYTES), "PSS");
    }

    #[test]
    fn registry_names_are_unique_and_workload_figures_prefixed() {
        for (i, m) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[i + 1..].iter().all(|o| o.name != m.name),
                "{} registered twice",
                m.name
            );
            let startup = m.name.starts_with("start_to_") && m.name.ends_with("_ms");
            assert_eq!(m.is_startup(), startup, "{}", m.name);
            if m.group >= Group::Workload {
                assert!(
                    m.name.starts_with(WORKLOAD_PREFIX) || m.name.starts_with(OUTSIDE_PREFIX),
                    "{}",
                    m.name
                );
            }
        }
        assert_eq!(workload_metric("tps"), WORKLOAD_TPS);
        assert_eq!(workload_figure(WORKLOAD_TPS), "tps");
    }
}
