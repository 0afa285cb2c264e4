//! Sockets for applications on capnet, shaped like `std::net`.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let mut s = libclient::TcpStream::connect("10.0.0.2:7")?;
//! s.write_all(b"hello")?;
//! let mut buf = [0; 5];
//! s.read_exact(&mut buf)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A [`Net`] is one capnp connection to the service set's socket
//! (`CAPNET_SOCKET`, or the default run directory). Control calls (connect,
//! accept, UDP datagrams) are capnp calls made on a background thread; TCP
//! data moves over two shared-memory byte rings per socket with a doorbell
//! each, so a busy stream costs no syscall per read or write.
//!
//! Errors are `std::io::Error`s of the kinds a socket user expects
//! (`ConnectionRefused`, `ConnectionReset`, `TimedOut`, `AddrInUse`, ...).
//!
//! If the network service goes away (netsrv exits or is killed), libclient
//! notices the closed service socket at once: blocked calls return and every
//! operation on every socket of that [`Net`] fails with `ConnectionReset`
//! ("capnet: the network service went away"); a ring-mode stream still
//! hands out the bytes already in its receive ring first. Socket fds turn
//! readable so that event loops wake. [`Net::default_net`] connects anew on
//! its next use, so new sockets work again once a supervisor restarted the
//! service.
//!
//! [`Egress`] tells which NIC port carries a flow or a connection, and
//! reports each change (failover, link down, driver restart, ...).
//!
//! # TLS
//!
//! A [`Tls`] is a connection to the service set's TLS service, tlsd
//! (`CAPNET_TLS_SOCKET`, or `tls.sock` next to the service socket; see
//! [`default_tls_socket_path`]). tlsd makes the TCP connection, runs the
//! handshake and keeps the record layer, in software or on the NIC;
//! certificates and keys never reach the application, which reads and
//! writes plaintext on a [`TlsStream`] exactly as on a [`TcpStream`] (the
//! same shared rings, timeouts, non-blocking mode and raw fd).
//!
//! ```no_run
//! use libclient::{Tls, TlsOptions, TlsStream};
//! use std::io::{Read, Write};
//! use std::net::Shutdown;
//!
//! // Through the default tlsd, with default options:
//! let mut s = TlsStream::connect("10.0.0.2:443", "example.test")?;
//! s.write_all(b"GET / HTTP/1.0\r\nHost: example.test\r\n\r\n")?;
//! s.shutdown(Shutdown::Write)?; // close_notify
//! let mut reply = Vec::new();
//! s.read_to_end(&mut reply)?; // until the server's close_notify
//!
//! // With options, and a server:
//! let tls = Tls::default_tls()?;
//! let options = TlsOptions {
//!     alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
//!     ..TlsOptions::default()
//! };
//! let s = tls.connect_stream("10.0.0.2:443".parse().unwrap(), "example.test", &options)?;
//! let info = s.info()?;
//! println!("{:?} {} alpn {:?} tx {:?}", info.version, info.cipher_suite, info.alpn, info.tx);
//!
//! let listener = tls.listen("0.0.0.0:8443".parse().unwrap(), 128, &TlsOptions::default())?;
//! let (mut conn, peer) = listener.accept()?; // handshake already done
//! conn.write_all(format!("hello {peer}\n").as_bytes())?;
//! println!("{:?}", tls.stat()?);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! tlsd's failures keep its description in the message: a failed
//! handshake or a fatal alert is `InvalidData`, a server without an
//! identity `NotFound` ([`TlsError::of`] tells which); the socket errors
//! are those of TCP. If tlsd goes away, its sockets fail with
//! `ConnectionReset` as described above for the network service.
//!
//! # NIC offload contexts
//!
//! A service that keeps a connection's TLS record layer itself (tlsd) can
//! let the NIC seal or open the records:
//! [`TcpStream::offload_tls`] mints an [`OffloadContext`] on the
//! connection's egress port. For TLS RX the receive side then carries
//! marked chunks, read with [`TcpStream::read_marked`] (the bytes, and
//! whether the NIC decrypted them). The NIC's resync requests and a
//! revocation arrive as [`OffloadEvent`]s on the context, whose fd turns
//! readable when one is queued. Revocation goes: software path,
//! [`TcpStream::offload_stop`] (with the software-sealed replacement of
//! what may still be sent, from [`TcpStream::send_unacked`]), then
//! [`OffloadContext::release`].
//!
//! ```no_run
//! use libclient::{OffloadEvent, OffloadKind, TcpStream, TlsCipher, TlsOffloadParams};
//! # fn keys() -> (Vec<u8>, [u8; 12]) { (vec![0; 16], [0; 12]) }
//! let s = TcpStream::connect("10.0.0.2:443")?;
//! // ... handshake in software ...
//! let (key, iv) = keys();
//! let params = TlsOffloadParams {
//!     version: 0x0304,
//!     cipher: TlsCipher::Aes128Gcm,
//!     key,
//!     iv,
//!     record_seq: 0,
//! };
//! let rx = s.offload_tls(OffloadKind::TlsRx, &params, s.read_offset())?;
//! let mut buf = [0; 16 * 1024];
//! let (n, decrypted) = s.read_marked(&mut buf)?;
//! // ... open the records of buf[..n] (already plaintext if decrypted) ...
//! rx.clear_wakeup();
//! while let Some(event) = rx.try_event() {
//!     match event {
//!         OffloadEvent::ResyncRequest { tcp_seq } => rx.resync_reject(tcp_seq)?,
//!         OffloadEvent::Revoked { reason } => eprintln!("back to software: {reason}"),
//!     }
//! }
//! # let _ = (n, decrypted);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! For event loops: put a socket in non-blocking mode; an operation that
//! answers `WouldBlock` has asked netsrv for a wakeup, and the socket's raw
//! fd (an epoll fd over the socket's doorbell) becomes readable when it comes (use it with
//! `mio::unix::SourceFd`, epoll or tokio's `AsyncFd`). An
//! [`EgressSubscription`] and an [`OffloadContext`] have such an fd too: it
//! turns readable when a change or an event is queued; clear it with their
//! `clear_wakeup`, then take what is queued until nothing is left.

mod accept;
mod arena;
mod bell;
mod chunks;
mod conn;
mod egress;
mod handoff;
mod held;
mod offload;
mod paths;
mod stream;
mod tcp;
mod tls;
mod udp;

/// The marked receive chunk reader, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub mod fuzz_api {
    pub use crate::chunks::{Down, SwitchEnd};
}

pub use conn::Net;
pub use egress::{Egress, EgressInfo, EgressReason, EgressSubscription, Flow, Protocol};
pub use offload::{
    OffloadContext, OffloadEvent, OffloadInfo, OffloadKind, TlsCipher, TlsOffloadParams,
};
pub use paths::{
    default_run_dir, default_socket_path, default_tls_socket_path, verify_service_socket,
    SOCKET_ENV, TLS_SOCKET_ENV,
};
pub use tcp::{TcpListener, TcpOptions, TcpStream};
pub use tls::{
    OffloadPolicy, RecordMode, Tls, TlsError, TlsInfo, TlsListener, TlsOptions, TlsStat, TlsStream,
    TlsVersion,
};
pub use udp::UdpSocket;
