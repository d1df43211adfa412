//! `report.csv`: one row per backend × workload × metric with the summary statistics, the shape
//! hyperfine's `--export-csv` gives (one row per command: mean, stddev, median, min, max), for
//! spreadsheets and pandas. Values are in the unit the metric's name carries (`_ms`, `_bytes`, per
//! second), as recorded; skipped cells and metrics with no sample have no row.

use super::{Exporter, Report};
use crate::model;
use crate::ReportError;

pub struct Csv;

/// The header row.
pub const COLUMNS: [&str; 17] = [
    "backend",
    "workload",
    "isolation",
    "kvm",
    "emulated",
    "metric",
    "n",
    "mean",
    "stddev",
    "median",
    "median_ci95_low",
    "median_ci95_high",
    "p90",
    "p99",
    "min",
    "max",
    "outliers",
];

impl Exporter for Csv {
    fn file_name(&self) -> &'static str {
        "report.csv"
    }

    fn export(&self, report: &Report<'_>) -> Result<Vec<u8>, ReportError> {
        let mut out = COLUMNS.join(",");
        out.push('\n');
        for cell in &report.model.results.benchmarks {
            let word = |v: serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
            let isolation = word(serde_json::json!(cell.isolation.kind));
            let kvm = word(serde_json::json!(cell.isolation.kvm));
            for metric in model::metric_names(cell) {
                let Some(s) = model::summary(cell, metric) else {
                    continue;
                };
                let fields = [
                    field(&cell.backend),
                    field(&cell.workload),
                    field(&isolation),
                    field(&kvm),
                    cell.isolation.is_emulated().to_string(),
                    field(metric),
                    s.n.to_string(),
                    num(s.mean),
                    num(s.sd),
                    num(s.p50),
                    num(s.median_ci95[0]),
                    num(s.median_ci95[1]),
                    num(s.p90),
                    num(s.p99),
                    num(s.min),
                    num(s.max),
                    s.outliers.len().to_string(),
                ];
                out.push_str(&fields.join(","));
                out.push('\n');
            }
        }
        Ok(out.into_bytes())
    }
}

/// RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Shortest round-tripping decimal; empty for a non-finite value.
fn num(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("container"), "container");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(f64::NAN), "");
    }
}
