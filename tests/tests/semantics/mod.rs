//! What both socket-semantics tests share: the oracle (Linux's stack on
//! loopback), a stream over either stack, the transcript of a scenario and
//! the comparison of two transcripts.

// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Long enough for a segment to cross loopback or the sim wire and be
/// answered.
pub const SETTLE: Duration = Duration::from_millis(200);
/// What any single call may take before the scenario calls it a hang.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// One stream socket, whichever stack serves it.
pub trait Stream: Send + Sync {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, data: &[u8]) -> io::Result<usize>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()>;
    fn linger(&self) -> io::Result<Option<Duration>>;
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Stream for std::net::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, data)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }
    /// SO_LINGER (`std`'s own `set_linger` is not stable yet).
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let l = libc::linger {
            l_onoff: linger.is_some() as libc::c_int,
            l_linger: linger.map_or(0, |d| d.as_secs() as libc::c_int),
        };
        // SAFETY: a valid socket fd and a linger struct of the size given.
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn linger(&self) -> io::Result<Option<Duration>> {
        let mut l = libc::linger {
            l_onoff: 0,
            l_linger: 0,
        };
        let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
        // SAFETY: a valid socket fd and a linger struct of the size given.
        let r = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &mut l as *mut libc::linger as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((l.l_onoff != 0).then(|| Duration::from_secs(l.l_linger as u64)))
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, t)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        std::net::TcpStream::set_nonblocking(self, on)
    }
}

impl Stream for libclient::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, data)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        libclient::TcpStream::shutdown(self, how)
    }
    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_linger(self, linger)
    }
    fn linger(&self) -> io::Result<Option<Duration>> {
        libclient::TcpStream::linger(self)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        libclient::TcpStream::set_write_timeout(self, t)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        libclient::TcpStream::set_nonblocking(self, on)
    }
}

pub fn with_timeouts(s: Box<dyn Stream>) -> Box<dyn Stream> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Linux's own stack, the oracle.
pub struct Linux;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the calls of one scenario returned, in order.
#[derive(Default)]
pub struct Log(pub Vec<String>);

impl Log {
    pub fn step<T: Debug>(&mut self, what: &str, r: io::Result<T>) {
        let shown = match r {
            Ok(v) => format!("Ok({v:?})"),
            Err(e) => format!("Err({:?})", e.kind()),
        };
        self.0.push(format!("{what} -> {shown}"));
    }

    pub fn note_refused(&mut self, what: &str, outcome: String) {
        self.0.push(format!("{what} -> {outcome}"));
    }

    pub fn note(&mut self, what: impl Into<String>) {
        self.0.push(what.into());
    }
}

/// One read of up to `max` bytes, as text.
pub fn read_text(s: &dyn Stream, max: usize) -> io::Result<String> {
    let mut buf = vec![0u8; max];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads until `n` bytes came or the stream ended.
pub fn read_exactly(s: &dyn Stream, n: usize) -> io::Result<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut buf = vec![0u8; n - got.len()];
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Runs each scenario on both stacks at once and compares the transcripts;
/// prints all of them, fails on any difference.
pub fn compare(pairs: Vec<(&str, Log, Log)>) {
    let mut differ = Vec::new();
    for (name, linux, capnet) in &pairs {
        eprintln!("== {name}");
        let n = linux.0.len().max(capnet.0.len());
        for i in 0..n {
            let l = linux.0.get(i).map_or("(nothing)", String::as_str);
            let c = capnet.0.get(i).map_or("(nothing)", String::as_str);
            let mark = if l == c { "  " } else { "!!" };
            eprintln!("{mark} linux:  {l}\n{mark} capnet: {c}");
        }
        if linux.0 != capnet.0 {
            differ.push(*name);
        }
    }
    assert!(differ.is_empty(), "capnet differs from Linux in {differ:?}");
}

pub fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = l.accept().unwrap();
    (local, peer)
}

/// Sets SO_LINGER 0, so that dropping `s` resets its connection; false
/// (and noted) if the stack cannot.
pub fn reset_on_close(s: &dyn Stream, log: &mut Log) -> bool {
    match s.set_linger(Some(Duration::ZERO)) {
        Ok(()) => true,
        Err(e) => {
            log.note(format!(
                "peer set_linger(0) -> Err({:?}): scenario not run",
                e.kind()
            ));
            false
        }
    }
}
