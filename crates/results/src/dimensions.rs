//! What identifies a host in a fleet, and what identifies a series across hosts.
//!
//! A results file records `host.dimensions`: the [`BUILTIN`] facts detected on the host plus the
//! user's `--label key=value` pairs. A series is one backend × workload × workload configuration on
//! one dimension set ([`SeriesKey`]); `bench merge` matches series across hosts on
//! [`config_hash`] and never pools samples of different dimension sets (Firecracker's `ab_test.py`
//! and Phoronix's `merge-results` work the same way).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::schema::{BenchmarkResult, HostInfo};

/// The detected dimensions, in the order reports list them.
pub const BUILTIN: [&str; 6] = [
    "hostname",
    "cpu_model",
    "host_kernel",
    "arch",
    "kvm",
    "cgroup_version",
];

/// The pseudo-dimension naming a merged file's source host (its `HostSection::id`).
pub const HOST: &str = "host";

/// Longest accepted label key (as a Kubernetes label name).
pub const MAX_KEY_LEN: usize = 63;
/// Longest accepted label value.
pub const MAX_VALUE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {0:?} is not key=value (e.g. instance=m7i.metal)")]
    NoEquals(String),
    #[error(
        "label key {0:?} is invalid: use 1-63 characters [a-z0-9._-], starting and ending with a \
         letter or digit"
    )]
    BadKey(String),
    #[error("label key {0:?} is a detected dimension or reserved; choose another name")]
    Reserved(String),
    #[error("label {key:?} has an empty value, a control character or more than 256 characters")]
    BadValue { key: String },
    #[error("label key {0:?} given twice")]
    Duplicate(String),
}

/// Parses one `--label key=value`, checking the key's syntax and that it does not shadow a detected
/// dimension.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| LabelError::NoEquals(text.to_string()))?;
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key.chars().all(ok_char)
        || !edge(key.chars().next())
        || !edge(key.chars().last())
    {
        return Err(LabelError::BadKey(key.to_string()));
    }
    if BUILTIN.contains(&key) || key == HOST {
        return Err(LabelError::Reserved(key.to_string()));
    }
    if value.is_empty() || value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(LabelError::BadValue { key: key.to_string() });
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses every `--label`, refusing a key given twice.
pub fn parse_labels(texts: &[String]) -> Result<BTreeMap<String, String>, LabelError> {
    let mut labels = BTreeMap::new();
    for text in texts {
        let (k, v) = parse_label(text)?;
        if labels.insert(k.clone(), v).is_some() {
            return Err(LabelError::Duplicate(k));
        }
    }
    Ok(labels)
}

impl HostInfo {
    /// The detected dimensions from this record's fields (no user labels).
    pub fn builtin_dimensions(&self) -> BTreeMap<String, String> {
        [
            ("hostname", &self.hostname),
            ("cpu_model", &self.cpu_model),
            ("host_kernel", &self.kernel),
            ("arch", &self.arch),
            ("kvm", &self.kvm),
            ("cgroup_version", &self.cgroup_version),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// This host's dimensions: the recorded ones, or for a file written before they were recorded,
    /// those its fields give.
    pub fn dimensions(&self) -> BTreeMap<String, String> {
        if self.dimensions.is_empty() {
            self.builtin_dimensions()
        } else {
            self.dimensions.clone()
        }
    }

    /// Records the dimensions: the detected ones plus `labels` (already validated by
    /// [`parse_labels`], so none shadows a detected one).
    pub fn set_dimensions(&mut self, labels: &BTreeMap<String, String>) {
        let mut dims = self.builtin_dimensions();
        dims.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.dimensions = dims;
    }
}

/// A stable hash of a workload's configuration: SHA-256 over the canonical JSON (keys sorted, no
/// whitespace) of `{"spec": .., "workload": ..}`, first 16 hex digits. Equal configurations hash
/// equal on every host and every cvbench build; any parameter change changes it.
pub fn config_hash(workload: &str, spec: &serde_json::Value) -> String {
    let mut canonical = String::new();
    write_canonical(
        &serde_json::json!({ "workload": workload, "spec": spec }),
        &mut canonical,
    );
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(k) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

impl BenchmarkResult {
    /// [`config_hash`] of this cell's workload and its parameters.
    pub fn config_hash(&self) -> String {
        config_hash(&self.workload, &self.workload_spec)
    }

    /// The series this cell belongs to on `host`.
    pub fn series_key(&self, host: &HostInfo) -> SeriesKey {
        SeriesKey {
            dimensions: host.dimensions(),
            backend: self.backend.clone(),
            workload: self.workload.clone(),
            config_hash: self.config_hash(),
        }
    }
}

/// What one series is: samples with equal keys may be compared; different keys never pooled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub dimensions: BTreeMap<String, String>,
    pub backend: String,
    pub workload: String,
    pub config_hash: String,
}

/// A new unique run id: `<UTC yyyymmddThhmmssZ>-<hostname>-<8 random hex digits>`.
pub fn new_run_id(hostname: &str, now: std::time::SystemTime) -> String {
    let stamp: String = crate::schema::rfc3339_utc(now)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stamp}-{host}-{:08x}", rand::thread_rng().next_u32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_validated_with_clear_errors() {
        assert_eq!(
            parse_label("instance=m7i.metal"),
            Ok(("instance".into(), "m7i.metal".into()))
        );
        assert_eq!(parse_label("site=a=b"), Ok(("site".into(), "a=b".into())));
        assert!(matches!(parse_label("site"), Err(LabelError::NoEquals(_))));
        for bad in ["=x", "Site=x", "-a=x", "a-=x", "a b=x", "ä=x"] {
            assert!(matches!(parse_label(bad), Err(LabelError::BadKey(_))), "{bad}");
        }
        let long = format!("{}=x", "a".repeat(64));
        assert!(matches!(parse_label(&long), Err(LabelError::BadKey(_))));
        assert!(matches!(parse_label("hostname=x"), Err(LabelError::Reserved(_))));
        assert!(matches!(parse_label("host=x"), Err(LabelError::Reserved(_))));
        assert!(matches!(parse_label("site="), Err(LabelError::BadValue { .. })));
        assert!(matches!(
            parse_label("site=a\nb"),
            Err(LabelError::BadValue { .. })
        ));
        let err = parse_labels(&["a=1".into(), "a=2".into()]).unwrap_err();
        assert_eq!(err, LabelError::Duplicate("a".into()));
        assert!(err.to_string().contains("\"a\""));
    }

    #[test]
    fn config_hash_is_stable_and_key_order_independent() {
        let a = config_hash("oltp", &json!({"rows": 5, "transactions": 7}));
        let b: serde_json::Value = serde_json::from_str(r#"{"transactions":7,"rows":5}"#).unwrap();
        assert_eq!(a, config_hash("oltp", &b));
        // Pinned: a change of the hash function would split every stored series.
        assert_eq!(a, config_hash("oltp", &json!({"transactions": 7, "rows": 5})));
        assert_eq!(a.len(), 16);
        // sha256 of {"spec":"Idle","workload":"idle"}, checked with sha256sum.
        assert_eq!(config_hash("idle", &json!("Idle")), "e03d93e7c8caf436");
        assert_ne!(a, config_hash("oltp", &json!({"rows": 6, "transactions": 7})));
        assert_ne!(a, config_hash("http", &json!({"rows": 5, "transactions": 7})));
    }

    #[test]
    fn dimensions_come_from_fields_for_old_files_and_include_labels() {
        let mut host: HostInfo = serde_json::from_value(json!({
            "hostname": "h", "kernel": "6.1", "cpu_model": "cpu", "cores": 2,
            "memory_bytes": 1, "cgroup_version": "v2", "kvm": "none", "os": "Debian"
        }))
        .unwrap();
        let dims = host.dimensions();
        assert_eq!(dims["host_kernel"], "6.1");
        assert!(!dims.contains_key("arch"), "unknown arch is not a dimension");
        host.arch = "x86_64".into();
        host.set_dimensions(&BTreeMap::from([("site".to_string(), "a".to_string())]));
        let dims = host.dimensions();
        assert_eq!(dims["site"], "a");
        assert_eq!(dims["arch"], "x86_64");
        assert_eq!(dims.len(), 7);
    }

    #[test]
    fn run_ids_are_unique_and_name_the_host() {
        let now = std::time::SystemTime::UNIX_EPOCH;
        let a = new_run_id("node 1", now);
        let b = new_run_id("node 1", now);
        assert!(a.starts_with("19700101T000000Z-node_1-"), "{a}");
        assert_ne!(a, b);
    }
}
