//! Published figures that a reader will hold our measurements against: quoted, never measured here,
//! each with its source and the conditions it was obtained under. The report prints them in their
//! own table, beside the rows measured on this host for the same backend where there is one, and
//! never mixes them into a chart or a statistic.

use results::metrics::{START_TO_READY_MS, VMM_OVERHEAD_BYTES};

/// One quoted figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    /// The cvbench backend the figure is about, when cvbench has one (for the "measured here" column).
    pub backend: Option<&'static str>,
    /// The metric of that backend's idle cell shown beside the quote.
    pub metric: &'static str,
    pub subject: &'static str,
    pub figure: &'static str,
    pub source: &'static str,
    pub conditions: &'static str,
}

/// The anchors, in the order the report lists them.
pub const ANCHORS: [Anchor; 6] = [
    Anchor {
        backend: None,
        metric: START_TO_READY_MS,
        subject: "youki",
        figure: "111.5 ms create + start + delete",
        source: "youki README (containers/youki), benchmark section",
        conditions: "youki's own create/start/delete benchmark on its authors' machine; includes delete, which cvbench's start → READY does not",
    },
    Anchor {
        backend: Some("runc"),
        metric: START_TO_READY_MS,
        subject: "runc",
        figure: "224.6 ms create + start + delete",
        source: "youki README (containers/youki), benchmark section",
        conditions: "same benchmark and machine as the youki row",
    },
    Anchor {
        backend: Some("crun"),
        metric: START_TO_READY_MS,
        subject: "crun",
        figure: "47.3 ms create + start + delete",
        source: "youki README (containers/youki), benchmark section",
        conditions: "same benchmark and machine as the youki row",
    },
    Anchor {
        backend: Some("microvm"),
        metric: START_TO_READY_MS,
        subject: "Firecracker",
        figure: "≤ 125 ms to guest /sbin/init",
        source: "Firecracker SPECIFICATION.md (a specification target, not a measurement)",
        conditions: "from the InstanceStart API call, on a bare-metal host with hardware KVM, minimal guest kernel",
    },
    Anchor {
        backend: Some("microvm"),
        metric: VMM_OVERHEAD_BYTES,
        subject: "Firecracker",
        figure: "≤ 5 MiB VMM memory overhead",
        source: "Firecracker SPECIFICATION.md (a specification target, not a measurement)",
        conditions: "VMM process memory beyond guest RAM, per microVM",
    },
    Anchor {
        backend: None,
        metric: START_TO_READY_MS,
        subject: "Kata Containers",
        figure: "about 18 MB shim PSS",
        source: "as quoted in cvbench's issue on peers (Kata metrics)",
        conditions: "PSS of the Kata shim process per pod; not re-checked against Kata's own documentation",
    },
];
