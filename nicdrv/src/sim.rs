//! The `sim` backend's virtual wire: a capnet_ring [`Duplex`] shared by two
//! nicdrv processes, so that a busy wire costs no syscall per frame.
//!
//! # Rendezvous on a Unix socket path
//!
//! 1. Try to connect to `PATH`. If a listener answers, it sends one message:
//!    12 bytes `"CNW1" | buffers: u32 LE | buf_size: u32 LE` with three fds
//!    `[region, wake_a, wake_b]` as SCM_RIGHTS; the connector attaches the
//!    Duplex as side B with that layout (the listener's layout wins).
//! 2. If nobody listens (ENOENT, ECONNREFUSED, or a listener that closed
//!    before answering), take an exclusive `flock` on `PATH.lock`, try to
//!    connect once more, and if still nobody listens remove the stale socket
//!    file, create the Duplex (side A), bind `PATH` (mode 0600), listen,
//!    release the lock and wait for the first peer. Bind failing with
//!    EADDRINUSE (someone bound without the lock) means: connect again.
//! 3. After the first peer got the fds, the listener closes its listening
//!    socket and removes `PATH`.
//!
//! Both ends keep the connected Unix stream open for the life of the wire:
//! end of file on it means the peer process is gone (its end of the shared
//! memory is dead), and the survivor meets the next peer on `PATH` again.

use capnet_ring::platform::{recv_fds, send_fds};
use capnet_ring::{ChannelLayout, Duplex};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const WIRE_MAGIC: [u8; 4] = *b"CNW1";
const HELLO_LEN: usize = 12;
/// How long a connector waits for the listener's fds.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// One end of an established wire.
pub struct Wire {
    pub duplex: Duplex,
    /// Kept open for the life of the wire; EOF means the peer is gone.
    pub conn: UnixStream,
    pub layout: ChannelLayout,
}

impl AsFd for Wire {
    /// The connection to the peer (poll it for POLLIN: readable = hang-up).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

/// A bound wire socket waiting for its peer.
pub struct WireListener {
    listener: UnixListener,
    path: PathBuf,
    duplex: Duplex,
    peer_fds: Vec<std::os::fd::OwnedFd>,
    layout: ChannelLayout,
}

fn hello(layout: ChannelLayout) -> [u8; HELLO_LEN] {
    let mut m = [0u8; HELLO_LEN];
    m[0..4].copy_from_slice(&WIRE_MAGIC);
    m[4..8].copy_from_slice(&layout.buffers.to_le_bytes());
    m[8..12].copy_from_slice(&layout.buf_size.to_le_bytes());
    m
}

fn parse_hello(m: &[u8]) -> io::Result<ChannelLayout> {
    if m.len() != HELLO_LEN || m[0..4] != WIRE_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a capnet wire (bad hello)",
        ));
    }
    let word = |at: usize| u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let layout = ChannelLayout {
        buffers: word(4),
        buf_size: word(8),
    };
    // The wire's other end chose the layout: a bounded one, or none.
    let fits = layout.check().is_ok()
        && (MIN_WIRE_BUFFER..=MAX_WIRE_BUFFER).contains(&layout.buf_size)
        && Duplex::region_bytes(layout) <= MAX_WIRE_BYTES;
    if !fits {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the wire's other end wants {} buffers of {} bytes; refused",
                layout.buffers, layout.buf_size
            ),
        ));
    }
    Ok(layout)
}

/// Wire buffers hold at least a minimal Ethernet frame and at most a frame
/// of the largest MTU, and the wire's memory is bounded.
const MIN_WIRE_BUFFER: u32 = 64;
const MAX_WIRE_BUFFER: u32 = 65536 + 128;
const MAX_WIRE_BYTES: usize = 1 << 30;

fn ring_to_io(e: capnet_ring::RingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Binds `path` (mode 0600) and creates the wire's shared memory (side A).
/// Fails with `AddrInUse` if the path exists.
pub fn listen_wire(path: &Path, layout: ChannelLayout) -> io::Result<WireListener> {
    let (duplex, peer_fds) = Duplex::create("capnet-wire", layout)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(WireListener {
        listener,
        path: path.to_path_buf(),
        duplex,
        peer_fds,
        layout,
    })
}

impl WireListener {
    /// Waits for the first peer, hands it the wire, stops listening.
    pub fn accept(self) -> io::Result<Wire> {
        let msg = hello(self.layout);
        loop {
            let (conn, _) = self.listener.accept()?;
            let fds: Vec<BorrowedFd<'_>> = self.peer_fds.iter().map(|f| f.as_fd()).collect();
            match send_fds(conn.as_fd(), &msg, &fds) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.path);
                    return Ok(Wire {
                        duplex: self.duplex,
                        conn,
                        layout: self.layout,
                    });
                }
                Err(e) => tracing::debug!(%e, "wire peer left before the hand-over"),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Connects to a listening wire end. `Ok(None)`: nobody is listening there.
pub fn try_connect_wire(path: &Path) -> io::Result<Option<Wire>> {
    let conn = match UnixStream::connect(path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut buf = [0u8; 64];
    let (n, fds) = match recv_fds(conn.as_fd(), &mut buf, 3) {
        Ok(r) => r,
        // The listener closed before answering (it had already found its peer).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let layout = parse_hello(&buf[..n])?;
    if fds.len() != 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("wire hello carried {} fds, expected 3", fds.len()),
        ));
    }
    let duplex = Duplex::attach(fds, layout).map_err(ring_to_io)?;
    conn.set_read_timeout(None)?;
    Ok(Some(Wire {
        duplex,
        conn,
        layout,
    }))
}

/// Holds an exclusive `flock` on a file beside the wire path; released on drop.
struct PathLock {
    _file: File,
}

impl PathLock {
    fn take(path: &Path) -> io::Result<PathLock> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(PathBuf::from(lock_path))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(PathLock { _file: f });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// What the rendezvous decided; [`connect_wire`] waits for the peer itself.
pub enum Rendezvous {
    Connected(Wire),
    Listening(WireListener),
}

/// Connects to `path`, or becomes its listener; does not wait for a peer.
pub fn rendezvous(path: &Path, layout: ChannelLayout) -> io::Result<Rendezvous> {
    loop {
        if let Some(w) = try_connect_wire(path)? {
            return Ok(Rendezvous::Connected(w));
        }
        let lock = PathLock::take(path)?;
        if let Some(w) = try_connect_wire(path)? {
            return Ok(Rendezvous::Connected(w));
        }
        // Nobody listens: whatever socket file is there is stale.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match listen_wire(path, layout) {
            Ok(l) => {
                drop(lock);
                return Ok(Rendezvous::Listening(l));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                drop(lock);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The whole rendezvous: connect to `path` or listen on it, and return once
/// a peer is on the wire (blocking). `layout` is used when we create the wire.
pub fn connect_wire(path: &Path, layout: ChannelLayout) -> io::Result<Wire> {
    match rendezvous(path, layout)? {
        Rendezvous::Connected(w) => Ok(w),
        Rendezvous::Listening(l) => l.accept(),
    }
}

/// Whether the peer hung up: call when the connection polls readable.
pub fn peer_gone(conn: &UnixStream) -> bool {
    use std::io::Read;
    let mut b = [0u8; 64];
    let mut c = conn;
    // The peer never writes after the hello; anything readable is EOF or junk.
    match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nicdrv-sim-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("wire.sock")
    }

    const L: ChannelLayout = ChannelLayout {
        buffers: 8,
        buf_size: 2048,
    };

    #[test]
    fn hello_round_trip() {
        assert_eq!(parse_hello(&hello(L)).unwrap(), L);
        assert!(parse_hello(b"XXXX00000000").is_err());
        assert!(parse_hello(b"CNW1").is_err());
        for (buffers, buf_size) in [(8, 16), (8, 1 << 20), (3, 2048), (1 << 16, 65536)] {
            let l = ChannelLayout { buffers, buf_size };
            let err = parse_hello(&hello(l)).unwrap_err();
            assert!(err.to_string().contains("refused"), "{err}");
        }
    }

    #[test]
    fn two_ends_meet_and_pass_a_frame() {
        let path = tmp("meet");
        let p2 = path.clone();
        let t = std::thread::spawn(move || connect_wire(&p2, L).unwrap());
        let mut a = connect_wire(
            &path,
            ChannelLayout {
                buffers: 4,
                buf_size: 4096,
            },
        )
        .unwrap();
        let mut b = t.join().unwrap();
        // Whoever listened decided the layout; both agree.
        assert_eq!(a.layout, b.layout);
        assert!(!path.exists(), "the listener removes the path once paired");
        let mut buf = a.duplex.tx.alloc().unwrap().unwrap();
        a.duplex.tx.buf_mut(&mut buf)[..3].copy_from_slice(b"abc");
        a.duplex.tx.send(buf, 3, 0, 0);
        a.duplex.tx.flush().unwrap();
        let got = b.duplex.rx.recv().unwrap().unwrap();
        assert_eq!(b.duplex.rx.data(&got), b"abc");
        b.duplex.rx.release(got);
        b.duplex.rx.flush().unwrap();
        // Hang-up is visible on the connection.
        b.conn.set_nonblocking(true).unwrap();
        assert!(!peer_gone(&b.conn));
        drop(a);
        assert!(peer_gone(&b.conn));
    }

    #[test]
    fn stale_socket_file_is_replaced() {
        let path = tmp("stale");
        // A socket file nobody listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        match rendezvous(&path, L).unwrap() {
            Rendezvous::Listening(l) => assert_eq!(l.path(), path.as_path()),
            Rendezvous::Connected(_) => panic!("nobody was there to connect to"),
        }
    }

    #[test]
    fn many_racers_pair_up() {
        let path = tmp("race");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || connect_wire(&p, L).map(|w| w.duplex.side()))
            })
            .collect();
        let sides: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let a = sides.iter().filter(|s| **s == capnet_ring::Side::A).count();
        assert_eq!(a, 2, "two wires, each with one listener: {sides:?}");
    }
}
