//! TCP and UDP echo server on capnet, or with `--std` a TCP echo server on
//! the host's own stack through `std::net`: the same program on either
//! stack, which is what the `pingpong` system bench compares.
//!
//! `CAPNET_SOCKET=/run/dir/capnet.sock cargo run -p libclient --example echo_server -- [--std] 0.0.0.0:7`

use libclient::{TcpListener, UdpSocket};
use std::io::{Read, Write};
use std::net::SocketAddr;

/// Echoes what `stream` brings until the peer closes.
fn echo(mut stream: impl Read + Write, peer: SocketAddr) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
                total += n as u64;
            }
            Err(e) => {
                eprintln!("{peer}: {e}");
                break;
            }
        }
    }
    eprintln!("{peer}: echoed {total} bytes");
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let std_net = args.first().is_some_and(|a| a == "--std");
    if std_net {
        args.remove(0);
    }
    let addr = args.first().cloned().unwrap_or_else(|| "0.0.0.0:7".into());
    if std_net {
        let listener = std::net::TcpListener::bind(&addr)?;
        println!("echo on {}", listener.local_addr()?);
        loop {
            let (stream, peer) = listener.accept()?;
            stream.set_nodelay(true)?;
            std::thread::spawn(move || echo(stream, peer));
        }
    }
    let udp = UdpSocket::bind(&addr)?;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    let listener = TcpListener::bind(&addr)?;
    println!("echo on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept()?;
        stream.set_nodelay(true)?;
        std::thread::spawn(move || echo(stream, peer));
    }
}
