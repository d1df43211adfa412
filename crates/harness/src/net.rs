//! The client side of a served workload, made by the harness: one network namespace per harness run
//! (`cvbench-client-<pid>`) that holds the load generator, and per instance a named network namespace
//! (`cvbench-net-<pid>-<slot>`) joined to it by a point-to-point veth (`cvbench-<slot>` in the client
//! namespace, `eth0` in the instance's). Addresses are a /30 of 198.18.0.0/15 (the RFC 2544
//! benchmarking range) per slot: `.1` on the client end, `.2` on the instance end. Nothing is created
//! in the host's own network namespace, and there is no route out: traffic never leaves namespaces
//! cvbench made.
//!
//! Everything is made with `ip` from iproute2 (`ip netns add` bind-mounts the namespace under
//! `/run/netns`). Every namespace is recorded under `<run dir>/net/` *before* it is created (the
//! record names the owning harness pid and the namespace), so `bench cleanup` finds what a killed
//! harness left ([`cleanup`]). Slots are allocated by creating `slot-<n>` with `O_EXCL`: two
//! concurrent harnesses can never get the same slot, so their addresses never collide.
//!
//! The values own what they made: dropping a [`ClientNs`] or an [`InstanceNet`] deletes the
//! namespace (which deletes the veth in it, and so its peer) and then its record.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cleanup::{CleanupReport, CleanupScope};

/// Where named network namespaces are bind-mounted (`ip netns`).
pub const NETNS_DIR: &str = "/run/netns";
/// The benchmarking range 198.18.0.0/15.
pub const RANGE_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// /30 slots in the /15: 2^17 addresses / 4.
pub const SLOTS: u32 = 1 << 15;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("`ip {args}` failed ({status}): {stderr}")]
    Ip {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("all {SLOTS} address slots under {0} are taken")]
    Exhausted(PathBuf),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

/// Runs `ip <args>`; an error carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(io("running ip (iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `commands` in namespace `netns` with one `ip -n <netns> -batch -`.
pub fn ip_batch(netns: &str, commands: &[String]) -> Result<(), NetError> {
    use std::process::Stdio;
    let mut child = Command::new("ip")
        .args(["-n", netns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("running ip (iproute2)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.join("\n").as_bytes())
            .map_err(io("writing ip's batch"))?;
    }
    let out = child.wait_with_output().map_err(io("waiting for ip"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: format!("-n {netns} -batch: {}", commands.join("; ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `ip` and root are there (what networking needs).
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("networking needs root (network namespaces and veths)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("`ip` (iproute2) is not installed".into()),
    }
}

/// The addresses of slot `n`: (client end, instance end), both in a /30.
pub fn slot_addresses(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(RANGE_BASE) + (slot % SLOTS) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// `<run dir>/net`.
pub fn net_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("net")
}

/// A record: the owning pid and the namespace name, one a line.
fn write_record(file: &mut fs::File, netns: &str) -> std::io::Result<()> {
    writeln!(file, "{}\n{netns}", std::process::id())
}

fn read_record(path: &Path) -> Option<(i32, String)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let netns = lines.next()?.trim().to_string();
    valid_netns_name(&netns).then_some((pid, netns))
}

/// Only names cvbench makes, so a cleanup can never be steered at someone else's namespace.
fn valid_netns_name(name: &str) -> bool {
    name.starts_with("cvbench-")
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Takes the lowest free slot under `dir` (creating `slot-<n>` with `O_EXCL`, recording `netns` in
/// it). Concurrent callers, in this process or another, never get the same slot.
pub fn allocate_slot(dir: &Path, netns: impl Fn(u32) -> String) -> Result<(u32, PathBuf), NetError> {
    // A concurrent run's teardown may prune the (empty) directory between creating it and
    // creating a slot in it: start again then, a few times.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_allocate_slot(dir, &netns) {
            Err(NetError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < 8 => {}
            other => return other,
        }
    }
}

fn try_allocate_slot(dir: &Path, netns: &impl Fn(u32) -> String) -> Result<(u32, PathBuf), NetError> {
    crate::rundir::create_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
    for slot in 0..SLOTS {
        let path = dir.join(format!("slot-{slot}"));
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                if let Err(e) = write_record(&mut f, &netns(slot)) {
                    let _ = fs::remove_file(&path);
                    return Err(io(format!("writing {}", path.display()))(e));
                }
                return Ok((slot, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(format!("creating {}", path.display()))(e)),
        }
    }
    Err(NetError::Exhausted(dir.to_path_buf()))
}

/// The client namespace for a plan: made (under `/run/cvbench/net`) when one of `workloads` is
/// reached from outside, `None` otherwise. Fails when networking is unavailable (not root, no
/// `ip`, no `wrk`) and `http-outside` needs it; for `http` (whose outside figures are an addition
/// to the self-test) it is `None` then, and [`unavailable_reason`] says why.
pub fn for_workloads<'a>(
    workloads: impl IntoIterator<Item = &'a workload::WorkloadSpec>,
) -> Result<Option<Network>, NetError> {
    let workloads: Vec<&workload::WorkloadSpec> = workloads.into_iter().collect();
    // Asked for by name: these cannot run without the client namespace (nginx and mariadb are only
    // ever reached from it).
    let required = workloads
        .iter()
        .any(|w| matches!(w, workload::WorkloadSpec::HttpOutside { .. }) || w.kind().is_service());
    if !workloads.iter().any(|w| w.reached_from_outside()) {
        return Ok(None);
    }
    if workloads
        .iter()
        .any(|w| matches!(w, workload::WorkloadSpec::Mariadb { .. }))
        && !crate::services::sysbench_available()
    {
        return Err(io("mariadb")(std::io::Error::other(
            "`sysbench` is not installed (apt-get install sysbench)",
        )));
    }
    if let Some(reason) = unavailable_reason() {
        if !required {
            return Ok(None);
        }
        return Err(io("http-outside")(std::io::Error::other(reason)));
    }
    Network::create(Path::new(crate::rundir::RUN_ROOT)).map(Some)
}

/// Why this host cannot load a workload from outside (not root, no `ip`, no `wrk`); `None` when it
/// can.
pub fn unavailable_reason() -> Option<String> {
    if let Err(reason) = available() {
        return Some(reason);
    }
    (!wrk_available()).then(|| "`wrk` is not installed (apt-get install wrk)".to_string())
}

/// The client namespace of this harness run. Cheap to clone; the namespace goes when the last clone
/// (the run's, and every [`InstanceNet`]'s) is dropped.
#[derive(Debug, Clone)]
pub struct Network {
    client: Arc<ClientNs>,
}

impl PartialEq for Network {
    fn eq(&self, other: &Self) -> bool {
        self.client.name == other.client.name
    }
}

#[derive(Debug)]
struct ClientNs {
    name: String,
    record: PathBuf,
    dir: PathBuf,
}

impl Drop for ClientNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = fs::remove_file(&self.record);
        // The last run out removes `<run dir>/net` (and an empty run dir): only empty directories
        // go, and only under /run/cvbench, so a concurrent run's records are never touched.
        crate::rundir::prune(&self.dir);
    }
}

impl Network {
    /// Makes `cvbench-client-<pid>` (loopback up), recorded under `<run dir>/net` first.
    pub fn create(run_dir: &Path) -> Result<Network, NetError> {
        available().map_err(|reason| NetError::Io {
            context: "networking".into(),
            source: std::io::Error::other(reason),
        })?;
        let dir = net_dir(run_dir);
        let pid = std::process::id();
        let name = format!("cvbench-client-{pid}");
        let record = dir.join(format!("client-{pid}"));
        // As in allocate_slot: a concurrent teardown may prune the empty directory in between.
        let mut attempts = 0;
        let mut f = loop {
            attempts += 1;
            crate::rundir::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
            match fs::File::create(&record) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 8 => {}
                other => break other.map_err(io(format!("creating {}", record.display())))?,
            }
        };
        write_record(&mut f, &name).map_err(io(format!("writing {}", record.display())))?;
        let client = ClientNs { name, record, dir };
        ip(&["netns", "add", &client.name])?;
        ip(&["-n", &client.name, "link", "set", "lo", "up"])?;
        Ok(Network {
            client: Arc::new(client),
        })
    }

    /// The client namespace's name (`ip netns exec <name> ...`).
    pub fn client_name(&self) -> &str {
        &self.client.name
    }

    /// A named namespace for one instance, with `eth0` up at the instance end of a fresh slot and
    /// loopback up; the client end is up in the client namespace.
    pub fn attach(&self) -> Result<InstanceNet, NetError> {
        self.attach_into(None)
    }

    /// As [`Network::attach`], into the network namespace process `pid` already has (named with
    /// `ip netns attach`, so the veth is configured there): for an engine whose containers cannot
    /// join a namespace by path but can join another container's (docker's holder container).
    pub fn attach_to_process(&self, pid: i32) -> Result<InstanceNet, NetError> {
        self.attach_into(Some(pid))
    }

    fn attach_into(&self, process: Option<i32>) -> Result<InstanceNet, NetError> {
        let pid = std::process::id();
        let (slot, record) = allocate_slot(&self.client.dir, |slot| format!("cvbench-net-{pid}-{slot}"))?;
        let (client_addr, addr) = slot_addresses(slot);
        let inst = InstanceNet {
            netns: format!("cvbench-net-{pid}-{slot}"),
            record,
            link: format!("cvbench-{slot}"),
            client_addr,
            addr,
            network: self.clone(),
        };
        match process {
            None => ip(&["netns", "add", &inst.netns])?,
            Some(p) => ip(&["netns", "attach", &inst.netns, &p.to_string()])?,
        }
        let c = self.client_name();
        let client_cidr = format!("{client_addr}/30");
        let inst_cidr = format!("{addr}/30");
        // One `ip` per namespace, its commands in batch mode.
        ip_batch(
            c,
            &[
                format!(
                    "link add {} type veth peer name eth0 netns {}",
                    inst.link, inst.netns
                ),
                format!("addr add {client_cidr} dev {}", inst.link),
                format!("link set {} up", inst.link),
            ],
        )?;
        ip_batch(
            &inst.netns,
            &[
                format!("addr add {inst_cidr} dev eth0"),
                "link set eth0 up".to_string(),
                "link set lo up".to_string(),
            ],
        )?;
        Ok(inst)
    }

    /// Runs `f` on a thread that joined the client namespace (only that thread moves).
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetError> {
        let path = Path::new(NETNS_DIR).join(&self.client.name);
        let ns = fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        std::thread::Builder::new()
            .name("cvbench-client-ns".into())
            .spawn(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io("joining the client namespace")(e.into()))?;
                Ok(f())
            })
            .map_err(io("starting a thread"))?
            .join()
            .map_err(|_| io("client thread")(std::io::Error::other("panicked")))?
    }
}

/// One instance's network: its namespace (a path for runc's config.json or the built-in runtime's
/// setns), its address, and the veth to the client namespace.
#[derive(Debug)]
pub struct InstanceNet {
    netns: String,
    record: PathBuf,
    link: String,
    pub client_addr: Ipv4Addr,
    pub addr: Ipv4Addr,
    network: Network,
}

impl InstanceNet {
    /// `/run/netns/<name>`.
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }

    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    /// The client-side veth's name.
    pub fn link(&self) -> &str {
        &self.link
    }

    pub fn network(&self) -> &Network {
        &self.network
    }
}

impl Drop for InstanceNet {
    fn drop(&mut self) {
        // The veth pair goes now, synchronously: a namespace is destroyed asynchronously once its
        // last reference goes, so its eth0 (and the peer) may outlive `ip netns del` for a while,
        // and the slot's link name must be free before the slot is.
        let _ = ip(&["-n", self.network.client_name(), "link", "del", &self.link]);
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = fs::remove_file(&self.record);
    }
}

/// `<run dir>/net/wrk-<pid>-<address>.lua`: a wrk script while it runs.
const WRK_SCRIPT_PREFIX: &str = "wrk-";

/// The harness pid in a wrk script's name.
fn wrk_script_owner(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix(WRK_SCRIPT_PREFIX)?.strip_suffix(".lua")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Removes namespaces recorded under `<run dir>/net` whose harness is gone (or all with `force`
/// through the scope's `keep`).
pub fn cleanup(scope: &CleanupScope) -> CleanupReport {
    let mut report = CleanupReport::default();
    let dir = net_dir(&scope.roots.run_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return report;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(pid) = wrk_script_owner(&entry.file_name().to_string_lossy()) {
            if !(scope.keep)(&format!("cvbench-net-{pid}-0")) {
                match fs::remove_file(&path) {
                    Ok(()) => report.removed.push(format!("wrk script {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.problems.push(format!("removing {}: {e}", path.display())),
                }
            }
            continue;
        }
        let Some((pid, netns)) = read_record(&path) else {
            continue;
        };
        // `keep` reads the owner from a `-<pid>-<index>` suffix.
        if (scope.keep)(&format!("cvbench-net-{pid}-0")) {
            report.in_use.push(format!("network namespace {netns}"));
            continue;
        }
        let ns = Path::new(NETNS_DIR).join(&netns);
        if ns.exists() {
            match ip(&["netns", "del", &netns]) {
                Ok(()) => report.removed.push(format!("network namespace {netns}")),
                Err(e) => {
                    report.problems.push(format!("network namespace {netns}: {e}"));
                    continue;
                }
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.problems.push(format!("removing {}: {e}", path.display())),
        }
    }
    if scope.exclusive && fs::remove_dir(&dir).is_ok() {
        report.removed.push(format!("empty directory {}", dir.display()));
    }
    report
}

/// What the load from outside measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutsideFigures {
    pub requests_per_s: f64,
    pub bytes_per_s: f64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: f64,
}

/// One `GET path` on a fresh connection; `Ok(true)` on a `200`.
pub fn get_ok(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<bool> {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

/// Polls `GET path` with backoff (1 ms doubling to 50 ms) until a `200`; the instant it was seen.
pub fn first_response(addr: SocketAddr, path: &str, deadline: Instant) -> Result<Instant, String> {
    let mut pause = Duration::from_millis(1);
    let mut last: String;
    loop {
        match get_ok(addr, path, Duration::from_secs(1)) {
            Ok(true) => return Ok(Instant::now()),
            Ok(false) => last = "a response other than 200".into(),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() + pause > deadline {
            return Err(format!("no HTTP 200 from {addr}{path}: {last}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The median of `n` TCP connects to `addr`, in µs.
pub fn connect_latency_us(addr: SocketAddr, n: usize) -> std::io::Result<f64> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        drop(s);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN))
}

/// `wrk` on PATH?
pub fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// Runs `wrk -t1 -c<connections> -d<duration> --latency` in the client namespace.
pub fn run_wrk(
    network: &Network,
    addr: SocketAddrV4,
    path: &str,
    connections: u32,
    duration: Duration,
) -> Result<OutsideFigures, String> {
    let url = format!("http://{addr}{path}");
    let out = Command::new("ip")
        .args(["netns", "exec", network.client_name(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--latency", &url])
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {} {}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("unrecognised wrk output: {}", text.trim()))
}

/// The files the `http` self-test walks: regular files directly in the image's `/srv/www`, sorted
/// by name, as `/name` with their sizes (the order `cvbench-workload http --selftest` requests
/// them in).
pub fn www_files(image_dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let root = image_dir.join(workload::spec::WWW_DIR_IN_IMAGE.trim_start_matches('/'));
    let mut files = Vec::new();
    for entry in fs::read_dir(&root)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                files.push((format!("/{name}"), meta.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Body bytes of the first `requests` requests of the walk over `files` (request `k` asks for file
/// `k mod len`).
pub fn walk_bytes(files: &[(String, u64)], requests: u32) -> u64 {
    (0..requests as usize)
        .filter_map(|k| files.get(k % files.len().max(1)).map(|f| f.1))
        .sum()
}

/// The wrk script of [`run_wrk_walk`]: request `k` asks for `paths[k mod len]`. The script defines
/// no `response` hook (with one, wrk copies every body into Lua, which made the client, not the
/// path, the bottleneck: about 4 000 against 10 000 requests/s over the same loopback). Instead,
/// with one request in flight per connection, the `requests + connections`-th call of `request`
/// comes right after the `requests`-th response: there the thread stops and interrupts wrk's main
/// thread (which otherwise sleeps out `-d`). `done` prints one `CVBENCH-WRK {json}` line with the
/// completed responses, non-2xx/3xx and socket errors, the time from the first request to that
/// point (CLOCK_MONOTONIC through LuaJIT's FFI) and wrk's latency percentiles.
pub fn walk_script(paths: &[String], requests: u32, connections: u32) -> String {
    let files: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.replace(['"', '\\'], "")))
        .collect();
    format!(
        r#"-- written by cvbench: the http self-test's load, driven from outside
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} cvbench_timespec;
int clock_gettime(int clock, cvbench_timespec *tp);
int getpid(void);
int tgkill(int tgid, int tid, int sig);
]]
local ts = ffi.new("cvbench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end
local files = {{ {files} }}
local last = {requests} + {connections}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
sent = 0; t0 = nil; t1 = nil
function request()
  if t0 == nil then t0 = now_us() end
  sent = sent + 1
  if sent == last then
    t1 = now_us()
    wrk.thread:stop()
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, 2)
  end
  return wrk.format("GET", files[((sent - 1) % #files) + 1])
end
function done(summary, latency, requests)
  local el = 0
  for _, t in ipairs(threads) do
    local a, z = t:get("t0"), t:get("t1")
    if a and z and z - a > el then el = z - a end
  end
  local s = summary.errors
  io.write(string.format('CVBENCH-WRK {{"completed":%d,"non_2xx":%d,"socket_errors":%d,"elapsed_us":%.1f,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f}}\n',
    summary.requests, s.status, s.connect + s.read + s.write + s.timeout, el,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"#,
        files = files.join(", ")
    )
}

/// The line [`walk_script`]'s `done` prints.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct WalkLine {
    completed: f64,
    non_2xx: f64,
    socket_errors: f64,
    elapsed_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
}

/// Parses the output of a [`run_wrk_walk`] of `requests` requests over `connections` whose bodies
/// add up to `body_bytes`: the figures, or why they are not usable (no line, no elapsed time, or
/// fewer completed responses than `requests - connections`: wrk's `-d` cap ran out). The stop point
/// is the `requests + connections`-th request, which a reconnect (a request sent again) can bring
/// forward by a response or two: the rate is what completed over the time measured, the bytes the
/// walk's mean body at that rate.
pub fn parse_walk(
    text: &str,
    (requests, connections): (u32, u32),
    body_bytes: u64,
) -> Result<OutsideFigures, String> {
    let json = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("CVBENCH-WRK "))
        .ok_or_else(|| format!("wrk printed no CVBENCH-WRK line: {}", text.trim()))?;
    let w: WalkLine =
        serde_json::from_str(json).map_err(|e| format!("unreadable CVBENCH-WRK line {json}: {e}"))?;
    if w.completed < f64::from(requests.saturating_sub(connections).max(1)) {
        return Err(format!(
            "wrk saw {} of {requests} responses before its time limit",
            w.completed
        ));
    }
    if w.elapsed_us.is_nan() || w.elapsed_us <= 0.0 {
        return Err(format!("wrk measured no elapsed time: {json}"));
    }
    let secs = w.elapsed_us / 1e6;
    #[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
    let mean_body = body_bytes as f64 / f64::from(requests.max(1));
    let rate = w.completed / secs;
    Ok(OutsideFigures {
        requests_per_s: rate,
        bytes_per_s: mean_body * rate,
        latency_p50_us: w.p50_us,
        latency_p90_us: w.p90_us,
        latency_p99_us: w.p99_us,
        errors: w.non_2xx + w.socket_errors,
    })
}

/// The `http` self-test's load from the client namespace: `wrk -t1 -c<connections>`, `requests`
/// requests walking `files` round-robin (see [`walk_script`]), at most `limit` long. The script is
/// written beside the namespace records (removed on return).
pub fn run_wrk_walk(
    network: &Network,
    addr: SocketAddrV4,
    files: &[(String, u64)],
    requests: u32,
    connections: u32,
    limit: Duration,
) -> Result<OutsideFigures, String> {
    if files.is_empty() {
        return Err("no files to request".into());
    }
    let paths: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
    // Beside the namespace records, named after this harness: `bench cleanup` removes it when a
    // killed harness left it.
    let script = network.client.dir.join(format!(
        "{WRK_SCRIPT_PREFIX}{}-{}.lua",
        std::process::id(),
        addr.ip()
    ));
    fs::write(&script, walk_script(&paths, requests, connections))
        .map_err(|e| format!("writing {}: {e}", script.display()))?;
    let out = Command::new("ip")
        .args(["netns", "exec", network.client_name(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", limit.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .output();
    let _ = fs::remove_file(&script);
    let out = out.map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {} {}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_walk(&text, (requests, connections), walk_bytes(files, requests))
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`) in µs.
fn wrk_time_us(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// A wrk size (`615.23KB`, `1.2MB`, `12B`) in bytes (wrk's units are powers of 1024).
fn wrk_bytes(s: &str) -> Option<f64> {
    let units = [
        ("TB", 1u64 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ];
    units.iter().find_map(|(u, scale)| {
        s.strip_suffix(u)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|v| v * *scale as f64)
    })
}

/// Parses `wrk --latency` output.
pub fn parse_wrk(text: &str) -> Option<OutsideFigures> {
    let mut f = OutsideFigures::default();
    let (mut rps, mut tps, mut p50, mut p90, mut p99) = (None, None, None, None, None);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["Transfer/sec:", v] => tps = wrk_bytes(v),
            ["50%", v] => p50 = wrk_time_us(v),
            ["90%", v] => p90 = wrk_time_us(v),
            ["99%", v] => p99 = wrk_time_us(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => f.errors += n.parse::<f64>().unwrap_or(0.0),
            ["Socket", "errors:", rest @ ..] => {
                f.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<f64>().ok())
                    .sum::<f64>();
            }
            _ => {}
        }
    }
    f.requests_per_s = rps?;
    f.bytes_per_s = tps?;
    f.latency_p50_us = p50?;
    f.latency_p90_us = p90?;
    f.latency_p99_us = p99?;
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn slots_are_disjoint_slash_30s_in_the_benchmarking_range() {
        assert_eq!(
            slot_addresses(0),
            (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(
            slot_addresses(1),
            (Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(198, 18, 0, 6))
        );
        let (c, i) = slot_addresses(SLOTS - 1);
        assert_eq!(
            (c, i),
            (Ipv4Addr::new(198, 19, 255, 253), Ipv4Addr::new(198, 19, 255, 254))
        );
    }

    #[test]
    fn concurrent_allocators_never_share_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| allocate_slot(&d, |s| format!("cvbench-net-1-{s}")).unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<u32> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let distinct: BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(all.len(), 200);
        assert_eq!(distinct.len(), 200, "a slot was handed out twice");
        // Freed slots are reused.
        fs::remove_file(dir.path().join("slot-7")).unwrap();
        assert_eq!(
            allocate_slot(dir.path(), |s| format!("cvbench-net-1-{s}"))
                .unwrap()
                .0,
            7
        );
        let rec = read_record(&dir.path().join("slot-7")).unwrap();
        assert_eq!(rec, (std::process::id() as i32, "cvbench-net-1-7".to_string()));
    }

    #[test]
    fn wrk_scripts_name_their_harness() {
        assert_eq!(wrk_script_owner("wrk-4242-198.18.0.2.lua"), Some(4242));
        assert_eq!(wrk_script_owner("wrk-x-198.18.0.2.lua"), None);
        assert_eq!(wrk_script_owner("slot-3"), None);
        assert_eq!(wrk_script_owner("wrk-4242-198.18.0.2.txt"), None);
    }

    #[test]
    fn cleanup_removes_dead_harnesses_wrk_scripts_only() {
        let dir = tempfile::tempdir().unwrap();
        let roots = crate::cleanup::CleanupRoots {
            run_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let net = net_dir(dir.path());
        fs::create_dir_all(&net).unwrap();
        fs::write(net.join("wrk-11-198.18.0.2.lua"), "-- dead").unwrap();
        fs::write(net.join("wrk-22-198.18.0.6.lua"), "-- alive").unwrap();
        let keep = |name: &str| name == "cvbench-net-22-0";
        let report = cleanup(&CleanupScope {
            roots: &roots,
            keep: &keep,
            exclusive: false,
        });
        assert!(!net.join("wrk-11-198.18.0.2.lua").exists());
        assert!(net.join("wrk-22-198.18.0.6.lua").exists());
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(report.problems.is_empty(), "{report:?}");
    }

    #[test]
    fn records_naming_foreign_namespaces_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slot-0");
        fs::write(&p, "1\nsomeone-elses\n").unwrap();
        assert_eq!(read_record(&p), None);
        fs::write(&p, "1\ncvbench-net-1-0/../x\n").unwrap();
        assert_eq!(read_record(&p), None);
    }

    #[test]
    fn the_walk_script_names_the_files_and_where_to_stop() {
        let s = walk_script(&["/1k.bin".into(), "/index.html".into()], 2000, 4);
        assert!(s.contains(r#"local files = { "/1k.bin", "/index.html" }"#), "{s}");
        assert!(s.contains("local last = 2000 + 4"));
        // No response hook: wrk would copy every body into Lua.
        assert!(!s.contains("function response"));
        // A quote in a name cannot break out of the Lua string.
        let s = walk_script(&["/a\"b.bin".into()], 1, 1);
        assert!(s.contains(r#"{ "/ab.bin" }"#), "{s}");
    }

    #[test]
    fn walk_output_parses_and_short_runs_are_refused() {
        let text = "Running 30s test @ http://198.18.0.2:8080/
  2002 requests in 64.31ms, 33.92MB read
CVBENCH-WRK {\"completed\":2002,\"non_2xx\":1,\"socket_errors\":2,\"elapsed_us\":100000.0,\"p50_us\":100.0,\"p90_us\":132.0,\"p99_us\":168.0}
";
        let f = parse_walk(text, (2000, 4), 3_000_000).unwrap();
        assert_eq!(f.requests_per_s, 20020.0);
        assert_eq!(f.bytes_per_s, 1500.0 * 20020.0);
        assert_eq!(
            (f.latency_p50_us, f.latency_p90_us, f.latency_p99_us),
            (100.0, 132.0, 168.0)
        );
        assert_eq!(f.errors, 3.0);
        let short = parse_walk(text, (3000, 4), 1).unwrap_err();
        assert!(short.contains("2002 of 3000"), "{short}");
        // A response short of the stop point (a reconnect) still counts as the run.
        assert!(parse_walk(text, (2003, 4), 1).is_ok());
        assert!(parse_walk("Requests/sec: 1\n", (1, 1), 1).is_err());
        let zero = text.replace("100000.0", "0.0");
        assert!(parse_walk(&zero, (2000, 4), 1).is_err());
    }

    #[test]
    fn the_walk_counts_the_bytes_of_the_files_it_asks_for() {
        let files = vec![("/a".to_string(), 10), ("/b".to_string(), 1000)];
        assert_eq!(walk_bytes(&files, 0), 0);
        assert_eq!(walk_bytes(&files, 3), 10 + 1000 + 10);
        assert_eq!(walk_bytes(&[], 5), 0);
    }

    #[test]
    fn www_files_are_the_sorted_regular_files_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("srv/www");
        fs::create_dir_all(www.join("sub")).unwrap();
        for (f, n) in [("4k.bin", 4), ("1k.bin", 1), ("index.html", 2)] {
            fs::write(www.join(f), vec![b'x'; n]).unwrap();
        }
        assert_eq!(
            www_files(dir.path()).unwrap(),
            vec![
                ("/1k.bin".to_string(), 1),
                ("/4k.bin".to_string(), 4),
                ("/index.html".to_string(), 2)
            ]
        );
        assert!(www_files(&dir.path().join("nothing")).is_err());
    }

    #[test]
    fn wrk_latency_output_parses() {
        let text = "Running 2s test @ http://198.18.0.2:8080/4k.bin
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   210.51us  100.02us   3.11ms   95.00%
    Req/Sec    18.01k     1.00k   19.00k    70.00%
  Latency Distribution
     50%  198.00us
     75%  220.00us
     90%    1.25ms
     99%    2.00s
  35840 requests in 2.00s, 150.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  17920.12
Transfer/sec:     75.00MB
";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.requests_per_s, 17920.12);
        assert_eq!(f.bytes_per_s, 75.0 * 1048576.0);
        assert_eq!(f.latency_p50_us, 198.0);
        assert_eq!(f.latency_p90_us, 1250.0);
        assert_eq!(f.latency_p99_us, 2e6);
        assert_eq!(f.errors, 7.0);
        assert_eq!(parse_wrk("Requests/sec: 1\n"), None);
    }
}
