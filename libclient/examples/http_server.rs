//! A minimal HTTP/1.0 server on capnet that serves one file (or a greeting).
//!
//! `CAPNET_SOCKET=... cargo run -p libclient --example http_server -- 0.0.0.0:8080 [FILE]`

use libclient::TcpListener;
use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "0.0.0.0:8080".into());
    let body = match args.next() {
        Some(file) => std::fs::read(file)?,
        None => b"hello from capnet\n".to_vec(),
    };
    let listener = TcpListener::bind(&addr)?;
    println!("http on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let mut stream = stream?;
        let body = body.clone();
        std::thread::spawn(move || {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(&body));
        });
    }
    Ok(())
}
