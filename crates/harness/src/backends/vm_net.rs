//! The network path of a VM instance (`microvm`, `qemu`), for a workload reached from outside.
//!
//! Topology. [`crate::net::Network::attach`] gives the instance what it gives a container: a named
//! namespace whose `eth0` is one end of a veth, the other end (`.1` of the slot's /30) in the client
//! namespace. For a VM, that namespace also gets a bridge [`BRIDGE_NAME`] joining `eth0` and a tap
//! [`TAP_NAME`], and the instance end's address (`.2`) moves off `eth0` to the guest's own `eth0`
//! (`cvbench.ip=<.2>/30 cvbench.gw=<.1>` on its kernel command line). Why a bridge there and not
//! routing: the guest then holds exactly the address the client namespace already reaches over
//! the same /30 as a container's, so the client side, the slots and their records, and `bench
//! cleanup` stay net.rs's, unchanged; no forwarding, proxy ARP or extra route is needed, and
//! nothing is added to the client namespace or the host's.
//!
//! The tap is made by the harness (a thread that joined the instance's namespace opens
//! `/dev/net/tun`) and handed to the VMM as an inherited descriptor (`--net-tap-fd`, QEMU's
//! `-netdev tap,fd=`), so the VMM itself stays in the host's namespace and needs no privilege to
//! join one. The tap is not persistent: the kernel deletes it when its last descriptor closes, that
//! is with the VMM (and the harness's copy, dropped with the instance). After a SIGKILLed harness
//! the VMM dies with it (PDEATHSIG), which takes the tap; `bench cleanup` kills a VMM that did not,
//! then removes the namespace from its record, and the bridge and veth with it. So no tap outlives
//! its instance, and a tap needs no record of its own.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::backend::{BackendError, LaunchSpec};
use crate::net::{self, InstanceNet};

/// The tap in the instance's namespace (names are per namespace: every instance has its own).
pub const TAP_NAME: &str = "cvtap0";
/// The bridge joining the tap and the veth's instance end in the instance's namespace.
pub const BRIDGE_NAME: &str = "cvbr0";
/// The veth's end in the instance's namespace (as [`crate::net::Network::attach`] names it).
const VETH_NAME: &str = "eth0";

/// A VM instance's network: its namespace and veth ([`InstanceNet`]) and the bridged tap the VMM
/// reads and writes. Dropping it closes the harness's copy of the tap, then removes the namespace.
#[derive(Debug)]
pub(super) struct VmNet {
    /// Declared first: closed before the namespace goes.
    tap: OwnedFd,
    net: InstanceNet,
}

impl VmNet {
    /// For a workload reached from outside with a client namespace given: the instance's namespace
    /// (see [`super::attach_network`]) with a bridged tap in it. `None` otherwise.
    pub fn attach(backend: &str, spec: &LaunchSpec) -> Result<Option<VmNet>, BackendError> {
        let Some(net) = super::attach_network(backend, spec)? else {
            return Ok(None);
        };
        let tap = bridged_tap(&net).map_err(|e| BackendError::setup(backend, format!("network: {e}")))?;
        Ok(Some(VmNet { tap, net }))
    }

    /// The guest's address as the client namespace reaches it.
    pub fn guest_addr(&self) -> std::net::Ipv4Addr {
        self.net.addr
    }

    /// The kernel words guest init configures `eth0` from (see `guest-init/src/net.rs`).
    pub fn guest_words(&self) -> Vec<String> {
        guest_words(self.net.addr, self.net.client_addr)
    }

    /// The guest's MAC address: unique per slot (its address in the low four bytes, locally
    /// administered), so guests never share one even where their veths meet on one bridge.
    pub fn mac(&self) -> String {
        guest_mac(self.net.addr)
    }

    /// Lets the child `cmd` spawns inherit the tap (it stays close-on-exec for every other child);
    /// the descriptor's number, which is the same in the child.
    pub fn pass_tap(&self, cmd: &mut Command) -> RawFd {
        let fd = self.tap.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
        // async-signal-safe; `fd` is open in the child because the parent holds it open (a fork
        // copies the table) for as long as `self` lives, which spans the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        fd
    }
}

/// `cvbench.ip=<instance end>/30 cvbench.gw=<client end>`.
fn guest_words(addr: std::net::Ipv4Addr, gateway: std::net::Ipv4Addr) -> Vec<String> {
    vec![format!("cvbench.ip={addr}/30"), format!("cvbench.gw={gateway}")]
}

/// `02:cb:` and the four bytes of `addr`.
pub fn guest_mac(addr: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:cb:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The `ip` commands, run in the instance's namespace once the tap exists, that bridge the tap and
/// the veth and move the instance end's address off the veth (it belongs to the guest now).
pub fn bridge_commands(veth_cidr: &str) -> Vec<String> {
    vec![
        format!("link add {BRIDGE_NAME} type bridge"),
        format!("addr del {veth_cidr} dev {VETH_NAME}"),
        format!("link set {VETH_NAME} master {BRIDGE_NAME}"),
        format!("link set {TAP_NAME} master {BRIDGE_NAME}"),
        format!("link set {TAP_NAME} up"),
        format!("link set {BRIDGE_NAME} up"),
    ]
}

/// Makes the tap in `net`'s namespace (from a thread that joined it) and bridges it to the veth.
fn bridged_tap(net: &InstanceNet) -> Result<OwnedFd, String> {
    let tap = in_netns(&net.netns_path(), || {
        microvm::devices::virtio::net::Tap::open(TAP_NAME)
            .map(OwnedFd::from)
            .map_err(|e| e.to_string())
    })??;
    // The number is passed on as is (`pass_tap`): never one of 0-2, which the child's stdio takes
    // before the tap's close-on-exec flag is cleared. `try_clone` duplicates to 3 or above.
    let tap = if tap.as_raw_fd() < 3 {
        tap.try_clone().map_err(|e| format!("duplicating the tap: {e}"))?
    } else {
        tap
    };
    net::ip_batch(net.netns_name(), &bridge_commands(&format!("{}/30", net.addr)))
        .map_err(|e| e.to_string())?;
    Ok(tap)
}

/// Runs `f` on a thread that joined the network namespace bound at `path` (only that thread moves).
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let ns = fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("cvbench-vm-netns".into())
        .spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("joining {shown}: {e}"))?;
            Ok(f())
        })
        .map_err(|e| format!("starting a thread: {e}"))?
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
}

/// What the VM backends' network tests share: the skips, and one `http-outside` run checked the
/// same way for every VM backend.
#[cfg(test)]
pub(super) mod testing {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use workload::WorkloadSpec;

    use crate::backend::Backend;
    use crate::metrics as mt;
    use crate::net;
    use crate::runner::{run_once, RunOptions};

    /// `true` (after a counted skip) when taps and namespaces cannot be made here.
    pub fn skip_without_networking() -> bool {
        if testkit::skip_unless_root("network namespaces, veths and taps") {
            return true;
        }
        if let Err(e) = net::available() {
            testkit::skip(testkit::Requirement::Package("iproute2"), e);
            return true;
        }
        if !Path::new("/dev/net/tun").exists() {
            testkit::skip(testkit::Requirement::Root, "no /dev/net/tun (modprobe tun)");
            return true;
        }
        false
    }

    /// [`skip_without_networking`], and `true` as well without `wrk` (the load from outside).
    pub fn skip_without_http_outside() -> bool {
        if skip_without_networking() {
            return true;
        }
        if !net::wrk_available() {
            testkit::skip(testkit::Requirement::Package("wrk"), "wrk is not installed");
            return true;
        }
        false
    }

    /// One `http-outside` run of `backend` (already prepared for `image_dir`) from a client
    /// namespace made under `run_root`. Checks what holds for every VM backend — requests were
    /// served without errors, the first response came after READY, the instance's namespace went
    /// with the instance — and returns the run's metrics for the backend's own checks.
    pub fn serve_http_outside(
        backend: &dyn Backend,
        image_dir: &Path,
        run_root: &Path,
        ready_timeout: Duration,
    ) -> BTreeMap<String, f64> {
        let network = net::Network::create(run_root).unwrap();
        let opts = RunOptions {
            runs: 1,
            warmup: 0,
            ready_timeout,
            network: Some(network.clone()),
            ..RunOptions::default()
        };
        let spec = WorkloadSpec::HttpOutside {
            port: WorkloadSpec::DEFAULT_HTTP_PORT,
            connections: 2,
            duration_s: 1,
            path: "/1k.bin".into(),
        };
        let name = format!("cvbench-{}-http-outside-{}-0", backend.name(), std::process::id());
        let m = run_once(backend, image_dir, &spec, &opts, &name).unwrap().metrics;
        assert!(m[mt::OUTSIDE_REQUESTS_PER_S] > 0.0, "{m:?}");
        assert_eq!(m[mt::OUTSIDE_ERRORS], 0.0, "{m:?}");
        assert!(
            m[mt::START_TO_FIRST_RESPONSE_MS] >= m[mt::START_TO_READY_MS],
            "{m:?}"
        );
        let netns = format!("cvbench-net-{}-", std::process::id());
        let left: Vec<String> = fs::read_dir(net::NETNS_DIR)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&netns))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "instance namespaces left: {left:?}");
        m
    }
}

#[cfg(test)]
mod tests {
    use super::testing::skip_without_networking;
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn names_fit_an_interface_name_and_macs_are_unique_unicast_per_slot() {
        for name in [TAP_NAME, BRIDGE_NAME] {
            assert!(name.len() < libc::IFNAMSIZ, "{name}");
        }
        let (_, first) = net::slot_addresses(0);
        let (_, last) = net::slot_addresses(net::SLOTS - 1);
        assert_eq!(guest_mac(first), "02:cb:c6:12:00:02");
        assert_eq!(guest_mac(last), "02:cb:c6:13:ff:fe");
        let macs: std::collections::BTreeSet<String> =
            (0..4096).map(|s| guest_mac(net::slot_addresses(s).1)).collect();
        assert_eq!(macs.len(), 4096);
        // The VMM accepts it (unicast, six bytes).
        microvm::devices::virtio::net::parse_mac(&guest_mac(first)).unwrap();
        assert_eq!(guest_mac(Ipv4Addr::new(198, 18, 1, 6)), "02:cb:c6:12:01:06");
    }

    #[test]
    fn the_guest_gets_the_instance_end_and_the_client_end_as_gateway() {
        let (client, guest) = net::slot_addresses(1);
        assert_eq!(
            guest_words(guest, client),
            ["cvbench.ip=198.18.0.6/30", "cvbench.gw=198.18.0.5"]
        );
    }

    #[test]
    fn the_bridge_takes_the_veth_and_the_tap_and_the_address_moves_to_the_guest() {
        let cmds = bridge_commands("198.18.0.6/30");
        assert_eq!(
            cmds,
            [
                "link add cvbr0 type bridge",
                "addr del 198.18.0.6/30 dev eth0",
                "link set eth0 master cvbr0",
                "link set cvtap0 master cvbr0",
                "link set cvtap0 up",
                "link set cvbr0 up",
            ]
        );
    }

    fn link_exists(netns: &str, link: &str) -> bool {
        net::ip(&["-n", netns, "link", "show", link]).is_ok()
    }

    fn ip_output(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An ARP request for `target` from `sender` (`mac`), as the guest would send it on its eth0.
    fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend(mac);
        frame.extend([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        frame.extend(mac);
        frame.extend(sender.octets());
        frame.extend([0; 6]);
        frame.extend(target.octets());
        frame
    }

    /// Reads frames from the (non-blocking) tap until an ARP reply from `from` to `mac` arrives or
    /// `deadline` passes (other frames, e.g. IPv6 router solicitations, are passed over).
    fn await_arp_reply(tap: &OwnedFd, mac: [u8; 6], from: Ipv4Addr, deadline: std::time::Instant) -> bool {
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            match nix::unistd::read(tap, &mut buf) {
                Ok(n) => {
                    let f = &buf[..n];
                    if n >= 42
                        && f[0..6] == mac
                        && f[12..14] == [0x08, 0x06]
                        && f[20..22] == [0, 2]
                        && f[28..32] == from.octets()
                    {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => panic!("reading the tap: {e}"),
            }
        }
        false
    }

    /// The whole topology without a VM: the tap speaks for the guest. Its ARP request for the
    /// client end crosses the bridge and the veth, and the client namespace's reply comes back
    /// through the tap; the veth's instance end holds no address; dropping the value removes all.
    #[test]
    fn a_frame_from_the_tap_reaches_the_client_namespace_and_its_reply_comes_back() {
        if skip_without_networking() {
            return;
        }
        let run = tempfile::tempdir().unwrap();
        let network = net::Network::create(run.path()).unwrap();
        let inst = network.attach().unwrap();
        let netns = inst.netns_name().to_string();
        let tap = bridged_tap(&inst).unwrap();
        let links = ip_output(&["-n", &netns, "-o", "link", "show", "master", BRIDGE_NAME]);
        assert!(links.contains(TAP_NAME) && links.contains("eth0"), "{links}");
        let addrs = ip_output(&["-n", &netns, "-4", "-o", "addr", "show"]);
        assert!(
            !addrs.contains(&inst.addr.to_string()),
            "the guest's address stayed on the veth: {addrs}"
        );
        let mac = [0x02, 0xcb, 0xc6, 0x12, 0xab, 0xcd];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut answered = false;
        // The bridge port may take a moment to forward: ask again until the deadline.
        while !answered && std::time::Instant::now() < deadline {
            nix::unistd::write(&tap, &arp_request(mac, inst.addr, inst.client_addr)).unwrap();
            answered = await_arp_reply(
                &tap,
                mac,
                inst.client_addr,
                std::time::Instant::now() + std::time::Duration::from_millis(500),
            );
        }
        assert!(
            answered,
            "no ARP reply from the client end {} through the bridge",
            inst.client_addr
        );
        let neighbours = ip_output(&[
            "-n",
            network.client_name(),
            "neigh",
            "show",
            &inst.addr.to_string(),
        ]);
        assert!(neighbours.contains("02:cb:c6:12:ab:cd"), "{neighbours}");
        drop(tap);
        assert!(
            !link_exists(&netns, TAP_NAME),
            "the tap outlived its last descriptor"
        );
        drop(inst);
        assert!(!Path::new(net::NETNS_DIR).join(&netns).exists());
    }

    const HELPER_ENV: &str = "CVBENCH_TEST_VMNET_HELPER";

    /// Only does something as the helper of `a_killed_owner_leaves_no_tap_and_cleanup_removes_the_rest`:
    /// makes a client namespace, an instance namespace and a bridged tap under the given run dir,
    /// says their names, and waits to be killed.
    #[test]
    fn helper_makes_a_tap_and_waits() {
        let Some(run_dir) = std::env::var_os(HELPER_ENV) else {
            return;
        };
        let network = net::Network::create(Path::new(&run_dir)).unwrap();
        let inst = network.attach().unwrap();
        let _tap = bridged_tap(&inst).unwrap();
        println!("NAMES {} {}", network.client_name(), inst.netns_name());
        std::thread::sleep(std::time::Duration::from_secs(120));
    }

    /// A harness SIGKILLed while it holds a tap: the tap goes with its last descriptor (nothing
    /// to clean), and `bench cleanup`'s network pass removes both namespaces (and the bridge and
    /// veth in them) from their records.
    #[test]
    fn a_killed_owner_leaves_no_tap_and_cleanup_removes_the_rest() {
        if std::env::var_os(HELPER_ENV).is_some() || skip_without_networking() {
            return;
        }
        let run = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut helper = Command::new(exe)
            .args([
                "--exact",
                "backends::vm_net::tests::helper_makes_a_tap_and_waits",
                "--nocapture",
            ])
            .env(HELPER_ENV, run.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(helper.stdout.take().unwrap());
        let mut line = String::new();
        let mut names = None;
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("NAMES ") {
                let (client, inst) = rest.split_once(' ').unwrap();
                names = Some((client.to_string(), inst.to_string()));
                break;
            }
            line.clear();
        }
        let Some((client, inst)) = names else {
            let _ = helper.kill();
            panic!("the helper did not make its network: {line}");
        };
        assert!(link_exists(&inst, TAP_NAME));
        helper.kill().unwrap();
        helper.wait().unwrap();
        assert!(
            !link_exists(&inst, TAP_NAME),
            "the tap outlived its SIGKILLed owner"
        );
        assert!(
            link_exists(&inst, BRIDGE_NAME),
            "the dead owner's namespace is left for cleanup"
        );
        let roots = crate::cleanup::CleanupRoots {
            run_dir: run.path().to_path_buf(),
            ..Default::default()
        };
        let alive = |name: &str| {
            crate::cleanup::owner_pid(name)
                .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
        };
        let report = net::cleanup(&crate::cleanup::CleanupScope {
            roots: &roots,
            keep: &alive,
            exclusive: false,
        });
        assert!(report.problems.is_empty(), "{report:?}");
        for ns in [&client, &inst] {
            assert!(
                !Path::new(net::NETNS_DIR).join(ns).exists(),
                "{ns} left: {report:?}"
            );
            assert!(
                report.removed.iter().any(|r| r.ends_with(ns.as_str())),
                "{report:?}"
            );
        }
    }
}
