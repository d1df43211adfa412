//! `--confinement` means the same for the built-in runtime and runc: at each level, the workload's
//! process as the host sees it (`/proc/<pid>/status`, `/proc/<pid>/limits`, and its root through
//! `/proc/<pid>/root`) has the same capabilities, no_new_privs, seccomp mode, open-files limit,
//! masked and read-only paths under both. Needs root, runc and the default image.

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use harness::backends::container::ContainerBackend;
    use harness::backends::runc::RuncBackend;
    use harness::runner::RunOptions;
    use harness::{Backend, Confinement};
    use workload::WorkloadSpec;

    /// What the host sees of the confinement of process `pid`.
    fn observe(pid: i32) -> Vec<(String, String)> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mut seen: Vec<(String, String)> = [
            "CapEff",
            "CapPrm",
            "CapBnd",
            "CapInh",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
        ]
        .iter()
        .map(|k| {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .unwrap_or("missing")
                .trim();
            (k.to_string(), v.to_string())
        })
        .collect();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let nofile = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        seen.push(("nofile".into(), nofile));
        let root = format!("/proc/{pid}/root");
        let timer_list = std::fs::read(format!("{root}/proc/timer_list")).map_or(0, |b| b.len());
        seen.push(("timer_list_empty".into(), (timer_list == 0).to_string()));
        let ro = nix::sys::statvfs::statvfs(format!("{root}/proc/sys").as_str())
            .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
            .unwrap();
        seen.push(("proc_sys_read_only".into(), ro.to_string()));
        seen
    }

    fn observe_on(
        backend: &dyn Backend,
        image: &Path,
        level: Confinement,
        tag: &str,
    ) -> Vec<(String, String)> {
        let opts = RunOptions {
            confinement: level,
            ready_timeout: Duration::from_secs(20),
            ..RunOptions::default()
        };
        let name = format!("cvbench-{}-parity-{tag}-{}", backend.name(), std::process::id());
        let spec = opts.launch_spec(image, &WorkloadSpec::Idle, &name, Instant::now());
        let mut instance = backend.launch(&spec).unwrap();
        let pids = instance.host_pids();
        let seen = observe(*pids.first().expect("a container process"));
        instance.finish(Duration::from_secs(10)).unwrap();
        instance.destroy().unwrap();
        seen
    }

    #[test]
    fn both_runtimes_confine_alike_at_every_level() {
        let root = tempfile::tempdir().unwrap();
        let runc = RuncBackend::with_root(root.path());
        let container = ContainerBackend::with_state_root(&root.path().join("state"));
        for b in [&runc as &dyn Backend, &container] {
            if let Err(u) = b.check_host() {
                println!("skipped: {u}");
                return;
            }
        }
        let image = match rootfs::default_image(&root.path().join("cache")) {
            Ok(image) => image.dir,
            Err(e) => {
                println!("skipped: no default image: {e}");
                return;
            }
        };
        runc.prepare(&image).unwrap();
        container.prepare(&image).unwrap();
        for level in Confinement::ALL {
            let ours = observe_on(&container, &image, level, level.name());
            let theirs = observe_on(&runc, &image, level, level.name());
            assert_eq!(ours, theirs, "at --confinement {level}: built-in vs runc");
            let get = |k: &str| ours.iter().find(|(n, _)| n == k).unwrap().1.as_str();
            match level {
                Confinement::None => assert_eq!(get("NoNewPrivs"), "0"),
                Confinement::OciDefault => {
                    assert_eq!(get("CapEff"), "0000000020000420");
                    assert_eq!(get("timer_list_empty"), "true");
                    assert_eq!(get("proc_sys_read_only"), "true");
                }
                Confinement::Docker => {
                    assert_eq!(get("CapEff"), "00000000a80425fb");
                    assert_eq!(get("Seccomp"), "2");
                }
            }
        }
    }
}
