//! A test hook that turns this driver into a hostile one, so that tests can
//! show what netsrv does with a driver that lies or hangs.
//!
//! `CAPNET_TEST_NICDRV_MISBEHAVE=KIND`, read once from the environment at
//! start: only whoever starts nicdrv controls it (the supervisor, and
//! whoever started that); nothing netsrv, a client or the wire sends can
//! turn it on. Unset (always, outside tests), the driver behaves.

use std::sync::OnceLock;

pub const VAR: &str = "CAPNET_TEST_NICDRV_MISBEHAVE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Behave.
    No,
    /// `info` reports an MTU far larger than the ring buffers.
    Mtu,
    /// `info` never answers.
    Silent,
    /// The ring handoff takes the token and never answers.
    Handoff,
    /// The port's doorbells are jammed: every doorbell fd the driver can
    /// reach (its own and a kept copy of netsrv's) made blocking and kept
    /// full, as a hostile driver would to stall whoever rings or drains.
    Doorbell,
}

/// The hook's setting (read once).
pub fn get() -> Misbehave {
    static KIND: OnceLock<Misbehave> = OnceLock::new();
    *KIND.get_or_init(|| {
        let kind = match std::env::var(VAR).as_deref() {
            Err(_) => return Misbehave::No,
            Ok("mtu") => Misbehave::Mtu,
            Ok("silent") => Misbehave::Silent,
            Ok("handoff") => Misbehave::Handoff,
            Ok("doorbell") => Misbehave::Doorbell,
            Ok(other) => {
                tracing::error!(kind = other, "unknown {VAR}; behaving");
                return Misbehave::No;
            }
        };
        tracing::warn!(?kind, "test hook: this driver misbehaves on purpose");
        kind
    })
}

/// The MTU `info` reports for a port whose real MTU is `mtu`.
pub fn reported_mtu(mtu: u32) -> u32 {
    match get() {
        Misbehave::Mtu => 65000,
        _ => mtu,
    }
}

/// With [`Misbehave::Doorbell`]: jams `fds` from a thread of its own, for
/// the life of the process (clears O_NONBLOCK on each, fills each one's
/// peer with rings, every millisecond).
/// `send` flag that keeps a shut end from raising SIGPIPE; Linux's own
/// (Redox's libc has no such flag).
#[cfg(target_os = "linux")]
const NO_SIGPIPE: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const NO_SIGPIPE: libc::c_int = 0;

pub fn jam_doorbells(fds: Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    let _ = std::thread::Builder::new()
        .name("nicdrv-jam".into())
        .spawn(move || loop {
            for fd in &fds {
                let fd = fd.as_raw_fd();
                // SAFETY: fcntl and send on fds this thread owns, from a
                // live one-byte buffer; errors (a shut end, a full queue)
                // are what the jam is after and are ignored.
                unsafe {
                    let fl = libc::fcntl(fd, libc::F_GETFL);
                    libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
                    let b = 1u8;
                    for _ in 0..1024 {
                        let r = libc::send(
                            fd,
                            (&b as *const u8).cast(),
                            1,
                            libc::MSG_DONTWAIT | NO_SIGPIPE,
                        );
                        if r < 0 {
                            break;
                        }
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        });
}
