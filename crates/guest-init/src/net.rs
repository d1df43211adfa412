//! Bringing up the loopback interface. The kernel creates `lo` (and gives it 127.0.0.1 when it comes
//! up) but leaves it down; the http self-test talks to 127.0.0.1.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// Sets IFF_UP on the interface `name` (e.g. `lo`).
pub fn bring_up(name: &str) -> io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_matches_libc() {
        assert_eq!(libc::c_int::from(IFF_UP), libc::IFF_UP);
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
