//! A TLS client through tlsd: `tls_client ADDR SERVER_NAME [BYTES]` sends
//! BYTES (default 16 MiB) to an echo server, checks that they come back, and
//! prints how the records were sealed.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: tls_client ADDR SERVER_NAME [BYTES]",
        )
    };
    let addr: std::net::SocketAddr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let name = args.next().ok_or_else(usage)?;
    let bytes: usize = args
        .next()
        .map(|b| b.parse().map_err(|_| usage()))
        .transpose()?
        .unwrap_or(16 << 20);
    let tls = libclient::Tls::default_tls()?;
    let s = tls.connect_stream(addr, &name, &libclient::TlsOptions::default())?;
    let data: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
    let started = std::time::Instant::now();
    let back = std::thread::scope(|scope| {
        let writer = scope.spawn(|| (&s).write_all(&data));
        let mut back = vec![0u8; bytes];
        let read = (&s).read_exact(&mut back);
        writer.join().expect("writer")?;
        read.map(|()| back)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let i = s.info()?;
    println!(
        "{} bytes echoed intact: {} ({:.0} MiB/s each way), {:?} {}, records tx {:?} rx {:?}",
        bytes,
        back == data,
        bytes as f64 / secs / (1 << 20) as f64,
        i.version,
        i.cipher_suite,
        i.tx,
        i.rx
    );
    Ok(())
}
