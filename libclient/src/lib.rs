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
//! For event loops: put a socket in non-blocking mode; an operation that
//! answers `WouldBlock` has asked netsrv for a wakeup, and the socket's raw
//! fd (an eventfd) becomes readable when it comes (use it with
//! `mio::unix::SourceFd`, epoll or tokio's `AsyncFd`).

mod bell;
mod conn;
mod egress;
mod paths;
mod stream;
mod tcp;
mod tls;
mod udp;

pub use conn::Net;
pub use egress::{Egress, EgressInfo, EgressReason, EgressSubscription, Flow, Protocol};
pub use paths::{
    default_run_dir, default_socket_path, default_tls_socket_path, SOCKET_ENV, TLS_SOCKET_ENV,
};
pub use tcp::{TcpListener, TcpOptions, TcpStream};
pub use tls::{
    OffloadPolicy, RecordMode, Tls, TlsError, TlsInfo, TlsListener, TlsOptions, TlsStat, TlsStream,
    TlsVersion,
};
pub use udp::UdpSocket;
