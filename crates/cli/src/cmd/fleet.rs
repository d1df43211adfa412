//! Flags shared by `run`, `compare` and `density` for runs across a fleet: `--label key=value`
//! (recorded in `host.dimensions`) and `--record-failures` (exit 0, failures only in the file, for
//! a Kubernetes init container that must not be retried forever).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use harness::results::{HostInfo, ResultsFile, ToolInfo};

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// A dimension of this host recorded in the results, e.g. `--label instance=m7i.metal`
    /// (repeatable; keys: lowercase letters, digits, `.`, `_`, `-`).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    pub labels: Vec<(String, String)>,
    /// Exit 0 even when runs failed or the backend is unavailable: the failures are recorded in the
    /// results file only (for a Kubernetes init container, which the kubelet would retry forever).
    #[arg(long, alias = "exit-zero")]
    pub record_failures: bool,
}

fn label(text: &str) -> Result<(String, String), String> {
    results::dimensions::parse_label(text).map_err(|e| e.to_string())
}

impl FleetArgs {
    /// The labels as a map, refusing a key given twice.
    pub fn label_map(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.labels {
            if map.insert(k.clone(), v.clone()).is_some() {
                return Err(super::UsageError(
                    results::dimensions::LabelError::Duplicate(k.clone()).to_string(),
                )
                .into());
            }
        }
        Ok(map)
    }

    /// This host with its dimensions (detected facts plus the labels).
    pub fn host(&self) -> anyhow::Result<HostInfo> {
        let labels = self.label_map()?;
        harness::host::detect_with_labels(&labels).context("detecting the host")
    }

    /// A new results file for `command` on this host, with a fresh run id.
    pub fn results_file(&self, command: &str) -> anyhow::Result<ResultsFile> {
        let host = self.host()?;
        let mut results = ResultsFile::new(command, ToolInfo::current(std::env::args().collect()), host);
        results.run_id =
            results::dimensions::new_run_id(&results.host.hostname, std::time::SystemTime::now());
        Ok(results)
    }

    /// The exit status for `outcome`: with `--record-failures`, a failure is said on stderr and the
    /// status is 0 (an interruption keeps its 130/143).
    pub fn outcome(&self, outcome: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
        match outcome {
            Err(e) if self.record_failures => {
                eprintln!(
                    "bench: {} (recorded in the results file; exit 0 for --record-failures)",
                    super::one_line(&format!("{e:#}"))
                );
                Ok(ExitCode::SUCCESS)
            }
            other => other,
        }
    }
}
