//! The I/O thread: one epoll loop serving every virtio device, as Cloud Hypervisor's virtio devices
//! do. It waits on each queue's notification eventfd (the ioeventfd KVM signals when the guest writes
//! QueueNotify), each device's host descriptor (the tap, edge-triggered) and a stop eventfd; it never
//! polls. The vCPU threads only trap register accesses, so a slow request (an `fdatasync`) stalls
//! the device, not the guest's CPU.
//!
//! Stopping: [`IoThread::stop_and_join`] (also on drop) signals the stop eventfd and joins the
//! thread, which serves every notification still pending before it returns, so no request the guest
//! submitted before its vCPUs stopped is left without a completion.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::mmio::VirtioShared;
use crate::events::VmObserver;

/// Token of the stop eventfd.
const STOP_TOKEN: u64 = u64::MAX;
/// Low 16 bits of a device token naming its host descriptor rather than a queue.
const HOST_FD_SLOT: u64 = 0xffff;

/// An eventfd's descriptor, for the epoll set.
fn borrow(event: &EventFd) -> BorrowedFd<'_> {
    // SAFETY: the `EventFd` owns the descriptor and outlives the returned borrow.
    unsafe { BorrowedFd::borrow_raw(event.as_raw_fd()) }
}

/// A queue's token: the device in the high bits, the queue number in the low 16 (a device has a
/// handful of queues, far below [`HOST_FD_SLOT`]).
fn queue_token(device: usize, queue: usize) -> u64 {
    ((device as u64) << 16) | (queue as u64).min(HOST_FD_SLOT - 1)
}

#[derive(Debug, thiserror::Error)]
pub enum IoThreadError {
    #[error("creating the I/O thread's {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("adding {what} to the I/O thread's epoll set: {source}")]
    EpollAdd { what: String, source: Errno },
    #[error("starting the I/O thread: {source}")]
    Spawn { source: std::io::Error },
}

/// What the thread runs with, until it is started.
struct Prepared {
    epoll: Epoll,
    stop: EventFd,
    observer: Arc<dyn VmObserver>,
}

/// The I/O thread: built with its epoll set by [`IoThread::new`] (while the VM is created), started
/// by [`IoThread::start`] (when the VM runs, after the VMM's seccomp filter is installed, which the
/// thread then inherits).
pub struct IoThread {
    stop: EventFd,
    prepared: Option<Prepared>,
    handle: Option<JoinHandle<()>>,
    devices: Vec<Arc<VirtioShared>>,
}

impl IoThread {
    /// Builds the epoll set for `devices` and starts the thread.
    pub fn spawn(
        devices: Vec<Arc<VirtioShared>>,
        observer: Arc<dyn VmObserver>,
    ) -> Result<Self, IoThreadError> {
        let mut thread = IoThread::new(devices, observer)?;
        thread.start()?;
        Ok(thread)
    }

    /// Starts the thread (once; later calls do nothing).
    pub fn start(&mut self) -> Result<(), IoThreadError> {
        let Some(Prepared {
            epoll,
            stop,
            observer,
        }) = self.prepared.take()
        else {
            return Ok(());
        };
        let devices = self.devices.clone();
        let handle = std::thread::Builder::new()
            .name("vm-io".into())
            .spawn(move || run(&epoll, &stop, &devices, observer.as_ref()))
            .map_err(|source| IoThreadError::Spawn { source })?;
        self.handle = Some(handle);
        Ok(())
    }

    /// Builds the epoll set for `devices`; the thread is not started yet.
    pub fn new(
        devices: Vec<Arc<VirtioShared>>,
        observer: Arc<dyn VmObserver>,
    ) -> Result<Self, IoThreadError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| IoThreadError::Setup {
            what: "epoll",
            source: e.into(),
        })?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(|source| IoThreadError::Setup {
            what: "stop eventfd",
            source,
        })?;
        let thread_stop = stop.try_clone().map_err(|source| IoThreadError::Setup {
            what: "stop eventfd",
            source,
        })?;
        epoll
            .add(
                borrow(&thread_stop),
                EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
            )
            .map_err(|source| IoThreadError::EpollAdd {
                what: "the stop eventfd".into(),
                source,
            })?;
        for (d, device) in devices.iter().enumerate() {
            for (q, event) in device.queue_events().iter().enumerate() {
                epoll
                    .add(
                        borrow(event),
                        EpollEvent::new(EpollFlags::EPOLLIN, queue_token(d, q)),
                    )
                    .map_err(|source| IoThreadError::EpollAdd {
                        what: format!("{} queue {q}", device.name()),
                        source,
                    })?;
            }
            if let Some(fd) = device.host_fd() {
                let token = ((d as u64) << 16) | HOST_FD_SLOT;
                // Edge-triggered: the device reads until EAGAIN, or stops when the guest has no
                // buffers and resumes when the guest adds some (its queue notification), so a
                // readable tap with a full RX queue does not wake the loop again and again.
                epoll
                    .add(
                        fd,
                        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token),
                    )
                    .map_err(|source| IoThreadError::EpollAdd {
                        what: format!("{} host descriptor", device.name()),
                        source,
                    })?;
            }
        }
        Ok(IoThread {
            stop,
            prepared: Some(Prepared {
                epoll,
                stop: thread_stop,
                observer,
            }),
            handle: None,
            devices,
        })
    }

    /// The devices served, for their counters.
    pub fn devices(&self) -> &[Arc<VirtioShared>] {
        &self.devices
    }

    /// Stops the thread after it has served every pending notification, and joins it. A thread never
    /// started has nothing to serve: no vCPU ran.
    pub fn stop_and_join(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A failed write leaves the counter at its maximum, which still wakes the loop.
            let _ = self.stop.write(1);
            // The loop does not panic by design; if it did, the devices' state is still intact
            // behind their (poison-tolerant) locks.
            let _ = handle.join();
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.join();
    }
}

fn run(epoll: &Epoll, stop: &EventFd, devices: &[Arc<VirtioShared>], observer: &dyn VmObserver) {
    let mut events = [EpollEvent::empty(); 32];
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(err) => {
                observer.warning(&format!("I/O thread: epoll_wait failed ({err}); devices stop"));
                break;
            }
        };
        let mut stopping = false;
        for event in &events[..n] {
            let token = event.data();
            if token == STOP_TOKEN {
                stopping = true;
                continue;
            }
            let Some(device) = usize::try_from(token >> 16).ok().and_then(|d| devices.get(d)) else {
                continue;
            };
            let slot = token & 0xffff;
            if slot == HOST_FD_SLOT {
                device.serve_host_fd();
            } else if let Some((queue, event)) = usize::try_from(slot)
                .ok()
                .and_then(|q| device.queue_events().get(q).map(|e| (q, e)))
            {
                // Consume the notification before serving, so one that arrives while serving wakes
                // the loop again rather than being lost.
                if event.read().is_ok() {
                    device.serve_queue(queue);
                }
            }
        }
        if stopping {
            let _ = stop.read();
            break;
        }
    }
    for device in devices {
        device.serve_pending();
    }
}
