//! A deterministic stand-in backend: fixed phase durations, memory and disk figures and workload
//! results, and failures on demand (run k fails, never ready, exits before ready, unavailable). Unit
//! tests use it directly; `bench --backend mock` (hidden) uses it so CLI tests are deterministic and
//! need neither root nor an image. From the command line it is configured through `CVBENCH_MOCK`,
//! e.g. `CVBENCH_MOCK="fail=1,3;ready-ms=4.5"` (see [`MockConfig::parse`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use workload::{WorkloadResult, WorkloadSpec};

use crate::metrics::{
    workload_figure, CGROUP_MEMORY_BYTES, START_TO_EXEC_MS, START_TO_READY_MS, WORKLOAD_LATENCY_P50_US,
    WORKLOAD_OPS_PER_S,
};
use crate::results::{Isolation, IsolationKind};

use crate::backend::{
    Backend, BackendError, DiskProbe, Instance, LaunchSpec, MemoryProbe, PhaseMark, SharedImage, Unavailable,
};

/// Environment variable read by [`MockBackend::from_env`].
pub const MOCK_ENV: &str = "CVBENCH_MOCK";

/// What the mock does. Launch `k` (0-based, counted per backend value) reports
/// `ready_ms + step_ms * (k % 5)` so summaries have a spread while staying deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub exec_ms: f64,
    pub ready_ms: f64,
    pub step_ms: f64,
    pub pss_bytes: u64,
    pub disk_bytes: u64,
    pub shared_image_bytes: u64,
    /// Launch numbers that fail with a setup error.
    pub fail_launches: Vec<u32>,
    /// Every launch waits out its ready timeout and fails.
    pub never_ready: bool,
    /// Every launch fails as if the workload exited before READY.
    pub exit_before_ready: bool,
    pub fail_memory_probe: bool,
    /// The memory probe finds the (self-ending) workload already gone.
    pub ended_before_memory_probe: bool,
    pub fail_destroy: bool,
    /// `check_host` fails with this reason.
    pub unavailable: Option<String>,
    /// Real time each launch takes (so a run can be interrupted part-way in CLI tests).
    pub launch_sleep_ms: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            exec_ms: 1.25,
            ready_ms: 2.5,
            step_ms: 0.25,
            pss_bytes: 1_572_864,
            disk_bytes: 8192,
            shared_image_bytes: 4_194_304,
            fail_launches: Vec::new(),
            never_ready: false,
            exit_before_ready: false,
            fail_memory_probe: false,
            ended_before_memory_probe: false,
            fail_destroy: false,
            unavailable: None,
            launch_sleep_ms: 0,
        }
    }
}

impl MockConfig {
    /// Parses `;`-separated directives: `never-ready`, `exit-before-ready`, `fail-destroy`,
    /// `fail-memory-probe`, `fail=1,3`, `unavailable=<reason>`, `exec-ms=<f>`, `ready-ms=<f>`,
    /// `step-ms=<f>`, `pss-bytes=<n>`, `disk-bytes=<n>`, `launch-sleep-ms=<n>`.
    pub fn parse(text: &str) -> Result<MockConfig, String> {
        let mut c = MockConfig::default();
        for directive in text.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (key, value) = directive
                .split_once('=')
                .map_or((directive, None), |(k, v)| (k.trim(), Some(v.trim())));
            let need = |v: Option<&'_ str>| -> Result<String, String> {
                v.map(str::to_string)
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            let float = |v: Option<&str>| -> Result<f64, String> {
                need(v)?.parse::<f64>().map_err(|e| format!("{key}: {e}"))
            };
            let int = |v: Option<&str>| -> Result<u64, String> {
                need(v)?.parse::<u64>().map_err(|e| format!("{key}: {e}"))
            };
            match key {
                "never-ready" => c.never_ready = true,
                "exit-before-ready" => c.exit_before_ready = true,
                "fail-destroy" => c.fail_destroy = true,
                "fail-memory-probe" => c.fail_memory_probe = true,
                "unavailable" => c.unavailable = Some(need(value)?),
                "fail" => {
                    c.fail_launches = need(value)?
                        .split(',')
                        .map(|k| k.trim().parse::<u32>().map_err(|e| format!("fail: {k:?}: {e}")))
                        .collect::<Result<_, _>>()?;
                }
                "exec-ms" => c.exec_ms = float(value)?,
                "ready-ms" => c.ready_ms = float(value)?,
                "step-ms" => c.step_ms = float(value)?,
                "pss-bytes" => c.pss_bytes = int(value)?,
                "disk-bytes" => c.disk_bytes = int(value)?,
                "launch-sleep-ms" => c.launch_sleep_ms = int(value)?,
                other => return Err(format!("unknown directive {other:?}")),
            }
        }
        Ok(c)
    }
}

/// What the mock did, for assertions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MockLog {
    pub launched: Vec<String>,
    pub destroyed: Vec<String>,
}

#[derive(Debug)]
pub struct MockBackend {
    config: MockConfig,
    launches: AtomicU32,
    log: Arc<Mutex<MockLog>>,
}

impl MockBackend {
    pub fn new(config: MockConfig) -> Self {
        MockBackend {
            config,
            launches: AtomicU32::new(0),
            log: Arc::default(),
        }
    }

    /// Configured from `CVBENCH_MOCK`; a malformed value makes the backend unavailable with the reason.
    pub fn from_env() -> Self {
        let text = std::env::var(MOCK_ENV).unwrap_or_default();
        match MockConfig::parse(&text) {
            Ok(config) => MockBackend::new(config),
            Err(e) => MockBackend::new(MockConfig {
                unavailable: Some(format!("invalid {MOCK_ENV}={text:?}: {e}")),
                ..MockConfig::default()
            }),
        }
    }

    pub fn log(&self) -> MockLog {
        lock(&self.log).clone()
    }
}

fn lock(log: &Mutex<MockLog>) -> MutexGuard<'_, MockLog> {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for MockBackend {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn isolation(&self) -> Isolation {
        Isolation::host_kernel(IsolationKind::Container)
    }

    fn check_host(&self) -> Result<(), Unavailable> {
        match &self.config.unavailable {
            Some(reason) => Err(Unavailable {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![("mock".to_string(), "true".to_string())]
    }

    fn prepare(&self, image_dir: &Path) -> Result<SharedImage, BackendError> {
        Ok(SharedImage {
            bytes: self.config.shared_image_bytes,
            description: format!("mock image for {}", image_dir.display()),
        })
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Box<dyn Instance>, BackendError> {
        let k = self.launches.fetch_add(1, Ordering::SeqCst);
        let c = &self.config;
        if c.launch_sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(c.launch_sleep_ms));
        }
        if c.fail_launches.contains(&k) {
            return Err(BackendError::setup(
                "mock",
                format!("launch {k} fails as configured"),
            ));
        }
        if c.exit_before_ready {
            return Err(BackendError::ExitedBeforeReady {
                backend: "mock".into(),
                status: crate::backend::ChildState::Exited(1),
                output: "mock workload exited".into(),
            });
        }
        if c.never_ready {
            std::thread::sleep(spec.ready_timeout);
            return Err(BackendError::ReadyTimeout {
                backend: "mock".into(),
                timeout: spec.ready_timeout,
                output: String::new(),
            });
        }
        lock(&self.log).launched.push(spec.instance_name.clone());
        let step = c.step_ms * f64::from(k % 5);
        let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
        Ok(Box::new(MockInstance {
            name: spec.instance_name.clone(),
            workload: spec.workload.clone(),
            phases: vec![
                PhaseMark {
                    name: START_TO_EXEC_MS.into(),
                    since_request: ms(c.exec_ms + step),
                },
                PhaseMark {
                    name: START_TO_READY_MS.into(),
                    since_request: ms(c.ready_ms + step),
                },
            ],
            launch_number: k,
            config: c.clone(),
            log: Arc::clone(&self.log),
        }))
    }
}

struct MockInstance {
    name: String,
    workload: WorkloadSpec,
    phases: Vec<PhaseMark>,
    launch_number: u32,
    config: MockConfig,
    log: Arc<Mutex<MockLog>>,
}

impl Instance for MockInstance {
    fn phases(&self) -> Vec<PhaseMark> {
        self.phases.clone()
    }

    fn host_pids(&self) -> Vec<i32> {
        Vec::new()
    }

    fn memory(&self) -> Result<MemoryProbe, BackendError> {
        if self.config.fail_memory_probe {
            return Err(BackendError::setup("mock", "memory probe fails as configured"));
        }
        if self.config.ended_before_memory_probe {
            return Err(BackendError::EndedBeforeMemoryProbe {
                backend: "mock".into(),
                instance: self.name.clone(),
            });
        }
        Ok(MemoryProbe {
            pss_bytes: self.config.pss_bytes,
            extra: vec![(CGROUP_MEMORY_BYTES.into(), self.config.pss_bytes * 2)],
        })
    }

    fn disk(&self) -> Result<DiskProbe, BackendError> {
        Ok(DiskProbe {
            instance_bytes: self.config.disk_bytes,
        })
    }

    fn finish(&mut self, _timeout: Duration) -> Result<Option<WorkloadResult>, BackendError> {
        if !self.workload.exits_by_itself() {
            return Ok(None);
        }
        let metrics = BTreeMap::from([
            (
                workload_figure(WORKLOAD_OPS_PER_S).to_string(),
                1000.0 + f64::from(self.launch_number % 5),
            ),
            (workload_figure(WORKLOAD_LATENCY_P50_US).to_string(), 250.0),
        ]);
        Ok(Some(WorkloadResult {
            workload: self.workload.kind().name().to_string(),
            metrics,
            notes: BTreeMap::new(),
        }))
    }

    fn destroy(self: Box<Self>) -> Result<(), BackendError> {
        lock(&self.log).destroyed.push(self.name.clone());
        if self.config.fail_destroy {
            return Err(BackendError::Teardown {
                backend: "mock".into(),
                reason: "destroy fails as configured".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        let c = MockConfig::parse("fail=1, 3; ready-ms=4.5 ;never-ready;unavailable=no kvm").unwrap();
        assert_eq!(c.fail_launches, vec![1, 3]);
        assert_eq!(c.ready_ms, 4.5);
        assert!(c.never_ready);
        assert_eq!(c.unavailable.as_deref(), Some("no kvm"));
        assert_eq!(MockConfig::parse("").unwrap(), MockConfig::default());
    }

    #[test]
    fn bad_directives_are_rejected() {
        assert!(MockConfig::parse("fly").unwrap_err().contains("fly"));
        assert!(MockConfig::parse("fail=x").is_err());
        assert!(MockConfig::parse("ready-ms").is_err());
    }

    #[test]
    fn phases_are_deterministic_per_launch_number() {
        let b = MockBackend::new(MockConfig::default());
        let spec = crate::runner::RunOptions::default().launch_spec(
            Path::new("/img"),
            &WorkloadSpec::Idle,
            "n",
            std::time::Instant::now(),
        );
        let first = b.launch(&spec).unwrap();
        let second = b.launch(&spec).unwrap();
        let ready = |i: &dyn Instance| i.phases()[1].ms();
        assert!((ready(first.as_ref()) - 2.5).abs() < 1e-6);
        assert!((ready(second.as_ref()) - 2.75).abs() < 1e-6);
    }
}
