//! TCP and UDP echo server on capnet.
//!
//! `CAPNET_SOCKET=/run/dir/capnet.sock cargo run -p libclient --example echo_server -- 0.0.0.0:7`

use libclient::{TcpListener, UdpSocket};
use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:7".into());
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
        let (mut stream, peer) = listener.accept()?;
        std::thread::spawn(move || {
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
        });
    }
}
