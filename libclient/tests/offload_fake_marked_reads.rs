//! libclient's receive side after an RX offload, against the fake netsrv
//! (`fake_netsrv`): plain bytes, then marked chunks from the ring offset
//! netsrv names, read with `read_marked` (each run's decrypted flag) or
//! plain `read`; reads while the switch is on its way, non-blocking reads
//! and timeouts, and malformed chunk headers.

mod fake_netsrv;

use capnet_schema::offload_capnp::OffloadKind as WireKind;
use fake_netsrv::client::{connect, data, eventually, params, read_marked_exact, Waiter};
use fake_netsrv::{FakeNetsrv, Feed, SEQ_BASE};
use libclient::OffloadKind;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn plain_then_chunks_from_the_ring_offset_across_wraps() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);

    // Plain bytes, more than a ring holds; the application reads some.
    let plain = data(1, 10_000);
    fake.feed(&plain, false);
    let (got, flags) = read_marked_exact(&s, 3000, 700);
    assert_eq!(got, plain[..3000]);
    assert!(flags.iter().all(|f| !f));
    assert_eq!(s.marked_chunks_from(), None);

    // RX offload while netsrv still has plain bytes in the ring and queued.
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(5), 1234).unwrap();
    let from = s.marked_chunks_from().expect("chunk mode");
    assert!(from >= 3000, "chunks begin at {from}");
    assert_eq!(ctx.kind(), OffloadKind::TlsRx);
    assert_eq!(ctx.stream_offset(), 1234);
    assert_eq!(ctx.tcp_seq(), SEQ_BASE.wrapping_add(1234));
    {
        let seen = fake.seen().offloads.lock().unwrap();
        assert_eq!(seen[0], (WireKind::TlsRx, 1234, 5, vec![0x11; 16]));
    }

    // Marked runs of every size, decrypted or not; the chunks wrap the
    // ring at every position.
    let mut expect_bytes = plain[3000..].to_vec();
    let mut expect_flags = vec![false; expect_bytes.len()];
    for i in 0..60usize {
        let run = data(i as u8, 1 + (i * 397) % 5000);
        let decrypted = i % 3 != 1;
        fake.feed(&run, decrypted);
        expect_bytes.extend_from_slice(&run);
        expect_flags.extend(std::iter::repeat_n(decrypted, run.len()));
    }
    // Reads of odd sizes, so that they end inside chunks.
    let (got, flags) = read_marked_exact(&s, expect_bytes.len(), 1021);
    assert!(got == expect_bytes, "bytes differ");
    assert!(flags == expect_flags, "flags differ");
    fake.flushed();
    let written = fake.pump(|p| p.written);
    assert_eq!(s.ring_read_offset(), written);
    assert_eq!(s.read_offset(), 10_000 + expect_bytes.len() as u64 - 7000);

    // Headers written a byte at a time still parse.
    fake.pump(|p| p.split_headers = true);
    let run = data(9, 300);
    for _ in 0..5 {
        fake.feed(&run, true);
    }
    let (got, flags) = read_marked_exact(&s, 1500, 4096);
    assert_eq!(got, run.repeat(5));
    assert!(flags.iter().all(|f| *f));

    // Plain `read` in chunk mode: the data without the headers.
    fake.pump(|p| p.split_headers = false);
    fake.feed(b"hello", false);
    fake.feed(b" world", true);
    let mut buf = [0u8; 11];
    (&s).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello world");

    // The end of the stream.
    fake.pump(|p| p.pending.push_back(Feed::End));
    assert_eq!(s.read_marked(&mut buf).unwrap(), (0, false));
}

#[test]
fn reads_wait_while_the_rx_switch_is_on_its_way() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let plain = data(2, 2000);
    fake.feed(&plain, false);
    fake.flushed();
    // netsrv switches the ring at once but answers 300 ms later; chunks
    // land behind the plain bytes meanwhile.
    fake.shared.offload_delay_ms.store(300, Ordering::Relaxed);
    let chunked = data(3, 3000);
    let (got, flags) = std::thread::scope(|scope| {
        let offload = scope.spawn(|| s.offload_tls(OffloadKind::TlsRx, &params(1), 0));
        eventually("the switch", || fake.pump(|p| p.chunks_from.is_some()));
        fake.feed(&chunked, true);
        eventually("chunks in the ring", || fake.pump(|p| p.written > 2000));
        // The reader starts now, before the answer.
        let got = read_marked_exact(&s, 5000, 4096);
        offload.join().unwrap().unwrap();
        got
    });
    assert_eq!(got[..2000], plain[..]);
    assert_eq!(got[2000..], chunked[..]);
    assert!(flags[..2000].iter().all(|f| !f));
    assert!(flags[2000..].iter().all(|f| *f));
    assert_eq!(s.marked_chunks_from(), Some(2000));
}

#[test]
fn nonblocking_and_timeouts_like_read() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    assert_eq!(s.marked_chunks_from(), Some(0));

    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(50));
    s.set_read_timeout(None).unwrap();

    s.set_nonblocking(true).unwrap();
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let mut waiter = Waiter::on(s.as_raw_fd());
    fake.feed(b"sealed?", true);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    loop {
        match s.read_marked(&mut buf) {
            Ok((n, flag)) => {
                assert!(flag);
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if got.len() == 7 {
                    break;
                }
                waiter.wait(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"sealed?");
}

#[test]
fn malformed_chunk_headers_are_invalid_data() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    fake.feed(b"plain", false);
    fake.flushed();
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed(b"ok", true);
    // Reserved bits set.
    fake.feed_raw(&(0x0100_0004u32).to_le_bytes());
    fake.feed_raw(b"junk");
    let (got, _) = read_marked_exact(&s, 7, 64);
    assert_eq!(got, b"plainok");
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("malformed"), "{e}");
    // And stays broken, for plain reads too.
    let e = (&s).read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // A zero length.
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed_raw(&0u32.to_le_bytes());
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // The end of the stream inside a chunk.
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let _ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    fake.feed_raw(&10u32.to_le_bytes());
    fake.feed_raw(b"abc");
    fake.pump(|p| p.pending.push_back(Feed::End));
    assert_eq!(s.read_marked(&mut [0u8; 16]).unwrap(), (3, false));
    let e = s.read_marked(&mut [0u8; 16]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}
