//! `report.json`: a digest of what the report shows (recomputed summaries, figures with captions),
//! for tools that want the numbers without re-deriving them. The results file stays the source.

use serde_json::{json, Value};

use super::{Exporter, Report};
use crate::model;
use crate::ReportError;

pub struct Json;

impl Exporter for Json {
    fn file_name(&self) -> &'static str {
        "report.json"
    }

    fn export(&self, report: &Report<'_>) -> Result<Vec<u8>, ReportError> {
        let r = report.model.results;
        let cells: Vec<Value> = r
            .benchmarks
            .iter()
            .map(|c| {
                let summary: serde_json::Map<String, Value> = model::metric_names(c)
                    .into_iter()
                    .filter_map(|m| model::summary(c, m).map(|s| (m.to_string(), json!(s))))
                    .collect();
                json!({
                    "backend": c.backend,
                    "workload": c.workload,
                    "isolation": c.isolation,
                    "emulated": c.isolation.is_emulated(),
                    "skipped": c.skipped,
                    "failures": c.failures.len(),
                    "summary": summary,
                })
            })
            .collect();
        let figures: Vec<Value> = report
            .figures
            .iter()
            .map(|f| json!({"name": f.name, "title": f.title, "caption": f.caption}))
            .collect();
        let digest = json!({
            "schema_version": r.schema_version,
            "command": r.command,
            "host": r.host,
            "started_at": r.started_at,
            "partial": r.partial,
            "cells": cells,
            "density": r.density,
            "figures": figures,
        });
        serde_json::to_vec_pretty(&digest).map_err(|e| ReportError::Json {
            reason: e.to_string(),
        })
    }
}
