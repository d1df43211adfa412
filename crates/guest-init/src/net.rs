//! Bringing up the loopback interface, and `eth0` when the host asked for it. The kernel creates
//! `lo` (and gives it 127.0.0.1 when it comes up) but leaves it down; the http self-test talks to
//! 127.0.0.1. `eth0` (virtio-net) is configured from words on the kernel command line:
//! `cvbench.ip=198.18.0.2/30` (address and prefix) and optionally `cvbench.gw=198.18.0.1` (default
//! route). The kernel does not pass dotted words to init, so they are read from `/proc/cmdline`.
//! Addresses must lie in 198.18.0.0/15 (RFC 2544's benchmarking range): traffic of a cvbench guest
//! never leaves the namespaces cvbench made.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// An `ifreq` naming `name`, all else zero.
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers); all-zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} is too long"),
        ));
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(request)
}

fn inet_socket() -> io::Result<std::os::fd::OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Sets IFF_UP on the interface `name` (e.g. `lo`).
pub fn bring_up(name: &str) -> io::Result<()> {
    let mut request = ifreq_for(name)?;
    let sock = inet_socket()?;
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes `ifru_flags` inside `request`,
    // which is a valid, exclusively borrowed ifreq for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel initialised the `ifru_flags` member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    // IFF_UP is bit 0: it fits the 16-bit `ifr_flags` field the kernel uses.
    request.ifr_ifru.ifru_flags = flags | IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `IFF_UP` as the `c_short` that `ifr_flags` is.
const IFF_UP: libc::c_short = 0x1;

/// The benchmarking range 198.18.0.0/15.
const BENCH_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

fn in_net(addr: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = mask_of(prefix);
    u32::from(addr) & mask == u32::from(net) & mask
}

fn mask_of(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// `eth0`'s configuration from the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSetup {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetSetupError {
    #[error("{word:?} is not an IPv4 address with a /1..=/30 prefix")]
    Address { word: String },
    #[error("{addr} is outside 198.18.0.0/15, the only range cvbench guests use")]
    OutsideBenchRange { addr: Ipv4Addr },
    #[error("gateway {gateway} is not on eth0's subnet {addr}/{prefix}")]
    GatewayOffLink {
        gateway: Ipv4Addr,
        addr: Ipv4Addr,
        prefix: u8,
    },
    #[error("cvbench.gw given without cvbench.ip")]
    GatewayWithoutAddress,
}

/// Reads `cvbench.ip=` and `cvbench.gw=` from the kernel's words (those before ` -- `); `None` when
/// there is no `cvbench.ip`.
pub fn parse_net_setup(cmdline: &str) -> Result<Option<NetSetup>, NetSetupError> {
    let mut ip = None;
    let mut gw = None;
    for word in cmdline.split_whitespace().take_while(|w| *w != "--") {
        if let Some(v) = word.strip_prefix("cvbench.ip=") {
            ip = Some(v);
        } else if let Some(v) = word.strip_prefix("cvbench.gw=") {
            gw = Some(v);
        }
    }
    let Some(ip) = ip else {
        return match gw {
            Some(_) => Err(NetSetupError::GatewayWithoutAddress),
            None => Ok(None),
        };
    };
    let bad = || NetSetupError::Address { word: ip.to_string() };
    let (addr, prefix) = ip.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(1..=30).contains(&prefix) {
        return Err(bad());
    }
    if !in_net(addr, BENCH_NET) {
        return Err(NetSetupError::OutsideBenchRange { addr });
    }
    let gateway = match gw {
        Some(g) => {
            let gateway: Ipv4Addr = g
                .parse()
                .map_err(|_| NetSetupError::Address { word: g.to_string() })?;
            if !in_net(gateway, BENCH_NET) {
                return Err(NetSetupError::OutsideBenchRange { addr: gateway });
            }
            if !in_net(gateway, (addr, prefix)) || gateway == addr {
                return Err(NetSetupError::GatewayOffLink {
                    gateway,
                    addr,
                    prefix,
                });
            }
            Some(gateway)
        }
        None => None,
    };
    Ok(Some(NetSetup {
        addr,
        prefix,
        gateway,
    }))
}

/// `AF_INET` (2) as the 16-bit family field.
const AF_INET_FAMILY: libc::sa_family_t = 2;
const _: () = assert!(AF_INET_FAMILY as libc::c_int == libc::AF_INET);

fn sockaddr_of(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: AF_INET_FAMILY,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sockaddr_in` and `sockaddr` are both 16 bytes of plain data; the kernel reads a
    // `sockaddr` whose family says it is a `sockaddr_in`.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The kernel's `struct rtentry` (glibc's libc crate does not export it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// RTF_UP | RTF_GATEWAY.
const RTF_UP_GATEWAY: libc::c_ushort = 0x0003;

/// Gives `name` its address and netmask, brings it up, and adds the default route.
pub fn configure(name: &str, setup: &NetSetup) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut request = ifreq_for(name)?;
    request.ifr_ifru.ifru_addr = sockaddr_of(setup.addr);
    // SAFETY: SIOCSIFADDR reads the name and `ifru_addr` of `request`, a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    request.ifr_ifru.ifru_netmask = sockaddr_of(Ipv4Addr::from(mask_of(setup.prefix)));
    // SAFETY: as above, with `ifru_netmask`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFNETMASK, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    bring_up(name)?;
    if let Some(gateway) = setup.gateway {
        let route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_of(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr_of(gateway),
            rt_genmask: sockaddr_of(Ipv4Addr::UNSPECIFIED),
            rt_flags: RTF_UP_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        // SAFETY: SIOCADDRT reads a `struct rtentry`, which `RtEntry` lays out; `rt_dev` is null
        // (the kernel picks the interface from the gateway).
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &route) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_matches_libc() {
        assert_eq!(libc::c_int::from(IFF_UP), libc::IFF_UP);
    }

    #[test]
    fn net_words_are_read_before_the_workload_and_checked() {
        let ok = parse_net_setup("console=ttyS0 cvbench.ip=198.18.0.2/30 cvbench.gw=198.18.0.1 -- http")
            .unwrap()
            .unwrap();
        assert_eq!(
            ok,
            NetSetup {
                addr: Ipv4Addr::new(198, 18, 0, 2),
                prefix: 30,
                gateway: Some(Ipv4Addr::new(198, 18, 0, 1)),
            }
        );
        assert_eq!(
            parse_net_setup("root=/dev/vda -- http cvbench.ip=198.18.0.2/30"),
            Ok(None)
        );
        assert_eq!(
            parse_net_setup("cvbench.ip=198.19.255.2/24")
                .unwrap()
                .unwrap()
                .gateway,
            None
        );
        assert!(matches!(
            parse_net_setup("cvbench.ip=10.0.0.2/30"),
            Err(NetSetupError::OutsideBenchRange { .. })
        ));
        assert!(matches!(
            parse_net_setup("cvbench.ip=198.20.0.2/30"),
            Err(NetSetupError::OutsideBenchRange { .. })
        ));
        for bad in [
            "cvbench.ip=198.18.0.2",
            "cvbench.ip=198.18.0.2/31",
            "cvbench.ip=198.18.0.2/0",
            "cvbench.ip=x/30",
        ] {
            assert!(
                matches!(parse_net_setup(bad), Err(NetSetupError::Address { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_net_setup("cvbench.ip=198.18.0.2/30 cvbench.gw=198.18.0.9"),
            Err(NetSetupError::GatewayOffLink { .. })
        ));
        assert_eq!(
            parse_net_setup("cvbench.gw=198.18.0.1"),
            Err(NetSetupError::GatewayWithoutAddress)
        );
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        // x86_64: 8 + 3 * 16 + 2 + 2 + 4 (pad) + 8 + 8 + 2 + 6 (pad) + 8 + 8 + 8 + 2 + 6 (pad).
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_dev), 88);
    }

    #[test]
    fn overlong_names_are_refused_before_any_ioctl() {
        let err = bring_up("an-interface-name-longer-than-ifnamsiz").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn unknown_interfaces_are_an_error() {
        let err = bring_up("cvbnope0").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    }
}
