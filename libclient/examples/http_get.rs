//! A minimal HTTP/1.0 GET client on capnet; writes the body to stdout.
//!
//! `CAPNET_SOCKET=... cargo run -p libclient --example http_get -- 10.77.0.1:8000 /file`

use libclient::TcpStream;
use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "10.0.0.2:80".into());
    let path = args.next().unwrap_or_else(|| "/".into());
    let mut stream = TcpStream::connect(&addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP header end")
        })?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.lines().next().unwrap_or_default();
    eprintln!("{status}");
    if !status.contains(" 200 ") {
        std::process::exit(1);
    }
    std::io::stdout().write_all(&response[split + 4..])?;
    Ok(())
}
