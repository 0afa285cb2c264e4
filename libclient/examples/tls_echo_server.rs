//! A TLS echo server through tlsd: `tls_echo_server ADDR` (e.g. 0.0.0.0:4433).
//! Prints each connection's version, suite and whether the NIC seals and
//! opens its records.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:4433".into());
    let tls = libclient::Tls::default_tls()?;
    let listener = tls.listen(
        addr.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
        })?,
        16,
        &libclient::TlsOptions::default(),
    )?;
    loop {
        let (mut s, peer) = listener.accept()?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
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
            if let Ok(i) = s.info() {
                println!(
                    "{peer}: {total} bytes echoed, {:?} {}, records tx {:?} rx {:?}",
                    i.version, i.cipher_suite, i.tx, i.rx
                );
            }
        });
    }
}
