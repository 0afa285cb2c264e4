//! The test's side of the fake: a connection and a TCP stream through it,
//! offload parameters, test data, and reading and waiting helpers.

use super::{addr, FakeNetsrv, REMOTE};
use libclient::{Net, TcpStream, TlsCipher, TlsOffloadParams};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

pub fn connect(fake: &FakeNetsrv) -> (Net, TcpStream) {
    let net = Net::connect(&fake.path).unwrap();
    let s = net.tcp_connect(addr(REMOTE), None).unwrap();
    (net, s)
}

pub fn params(record_seq: u64) -> TlsOffloadParams {
    TlsOffloadParams {
        version: 0x0304,
        cipher: TlsCipher::Aes128Gcm,
        key: vec![0x11; 16],
        iv: [0x22; 12],
        record_seq,
    }
}

/// Waits (a bounded time) for `f` to hold.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Test data: byte `i` of stream `seed`.
pub fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed as u32 * 7 + (i / 253) as u32) as u8
        })
        .collect()
}

/// Reads `len` bytes with `read_marked`, in reads of at most `step` bytes:
/// the bytes and each byte's flag.
pub fn read_marked_exact(s: &TcpStream, len: usize, step: usize) -> (Vec<u8>, Vec<bool>) {
    let mut bytes = Vec::with_capacity(len);
    let mut flags = Vec::with_capacity(len);
    let mut buf = vec![0u8; step];
    while bytes.len() < len {
        let want = step.min(len - bytes.len());
        let (n, decrypted) = s.read_marked(&mut buf[..want]).unwrap();
        assert!(n > 0, "end of stream after {} bytes", bytes.len());
        bytes.extend_from_slice(&buf[..n]);
        flags.extend(std::iter::repeat_n(decrypted, n));
    }
    (bytes, flags)
}

/// An mio poll on one fd.
pub struct Waiter {
    poll: Poll,
    events: Events,
}

impl Waiter {
    pub fn on(fd: RawFd) -> Waiter {
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(1), Interest::READABLE)
            .unwrap();
        Waiter {
            poll,
            events: Events::with_capacity(4),
        }
    }

    /// True if the fd turned readable within `t`.
    pub fn wait(&mut self, t: Duration) -> bool {
        self.poll.poll(&mut self.events, Some(t)).unwrap();
        self.events.iter().any(|e| e.token() == Token(1))
    }
}
