//! A minimal HTTP/1.0 server that serves one file (or a greeting), one
//! thread per connection. It runs on capnet through libclient, or with
//! `--std` on the host's own stack through `std::net`: the same program on
//! either stack, which is what the `http` system bench compares.
//!
//! `CAPNET_SOCKET=... cargo run -p libclient --example http_server -- [--std] 0.0.0.0:8080 [FILE]`

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the server needs of a listening socket.
trait Listener {
    type Stream: Read + Write + Send + 'static;
    fn accept(&self) -> io::Result<Self::Stream>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for libclient::TcpListener {
    type Stream = libclient::TcpStream;
    fn accept(&self) -> io::Result<Self::Stream> {
        libclient::TcpListener::accept(self).map(|(s, _)| s)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        libclient::TcpListener::local_addr(self)
    }
}

impl Listener for std::net::TcpListener {
    type Stream = std::net::TcpStream;
    fn accept(&self) -> io::Result<Self::Stream> {
        std::net::TcpListener::accept(self).map(|(s, _)| s)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        std::net::TcpListener::local_addr(self)
    }
}

/// Reads one request head and answers it with `response`, then closes.
fn answer(mut stream: impl Read + Write, response: &[u8]) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Err(e) => {
                eprintln!("http_server: a read failed before the request's end: {e}");
                return;
            }
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(response);
}

fn serve<L: Listener>(listener: L, body: &[u8]) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let response: Arc<[u8]> = response.into();
    println!("http on {}", listener.local_addr()?);
    loop {
        // A connection that failed before it was accepted (reset while
        // queued) costs only itself.
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        };
        let response = response.clone();
        std::thread::spawn(move || answer(stream, &response));
    }
}

fn main() -> io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let std_net = args.first().is_some_and(|a| a == "--std");
    if std_net {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let addr = args.next().unwrap_or_else(|| "0.0.0.0:8080".into());
    let body = match args.next() {
        Some(file) => std::fs::read(file)?,
        None => b"hello from capnet\n".to_vec(),
    };
    if std_net {
        serve(std::net::TcpListener::bind(&addr)?, &body)
    } else {
        serve(libclient::TcpListener::bind(&addr)?, &body)
    }
}
