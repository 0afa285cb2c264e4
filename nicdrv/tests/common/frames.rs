//! Frames on a port's rings from the stack's side: a numbered UDP frame,
//! and sending and receiving them through a [`Duplex`].

use super::WAIT;
use capnet_ring::{Duplex, SharedRegion};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An Ethernet/IPv4/UDP frame whose payload names `seq` (its length varies
/// with `seq`).
pub fn udp_frame(seq: u32, fill_checksums: bool) -> Vec<u8> {
    let caps = if fill_checksums {
        ChecksumCapabilities::default()
    } else {
        ChecksumCapabilities::ignored()
    };
    let payload = format!("frame {seq:06} {}", "x".repeat((seq % 300) as usize)).into_bytes();
    let (s, d) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
    let udp = UdpRepr {
        src_port: 4000,
        dst_port: 5000,
    };
    let ip = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len() + ip.payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut p = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut p, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(p.payload_mut()),
        &s.into(),
        &d.into(),
        payload.len(),
        |b| b.copy_from_slice(&payload),
        &caps,
    );
    buf
}

/// Sends frames from the stack side (retrying while nicdrv holds every buffer).
pub async fn send(d: &mut Duplex, frames: &[(Vec<u8>, u32)]) {
    send_each(d, frames.iter().map(|(f, fl)| (&f[..], *fl, 0))).await
}

/// Sends each (frame, flags, context) from the stack side, retrying while
/// nicdrv holds every buffer.
pub async fn send_each(d: &mut Duplex, frames: impl IntoIterator<Item = (&[u8], u32, u32)>) {
    for (f, fl, ctx) in frames {
        let deadline = Instant::now() + WAIT;
        let mut b = loop {
            if let Some(b) = d.tx.alloc().unwrap() {
                break b;
            }
            assert!(Instant::now() < deadline, "no TX buffer came back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        d.tx.buf_mut(&mut b)[..f.len()].copy_from_slice(f);
        d.tx.send(b, f.len() as u32, fl, ctx);
        if d.tx.flush().unwrap() {
            d.wake_peer.ring();
        }
    }
}

/// Sends frames from the stack side in one batch (one publish).
pub fn send_batch(d: &mut Duplex, frames: &[(Vec<u8>, u32)]) {
    for (f, fl) in frames {
        let mut b = d.tx.alloc().unwrap().expect("a free TX buffer");
        d.tx.buf_mut(&mut b)[..f.len()].copy_from_slice(f);
        d.tx.send(b, f.len() as u32, *fl, 0);
    }
    if d.tx.flush().unwrap() {
        d.wake_peer.ring();
    }
}

/// Receives frames on the stack side for up to `within` (or until `n` came).
pub async fn recv(d: &mut Duplex, n: usize, within: Duration) -> Vec<(Vec<u8>, u32)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        while let Some(b) = d.rx.recv().unwrap() {
            out.push((d.rx.data(&b).to_vec(), b.desc().flags));
            d.rx.release(b);
        }
        if d.rx.flush().unwrap() {
            d.wake_peer.ring();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

/// Writes an impossible producer index into the stack's TX active queue
/// (channel B->A: after the 128-byte duplex header and channel A->B; its
/// active queue follows its free queue; `tail` is the queue's first word):
/// the driver must end the ring session.
pub fn corrupt_stack_tx_queue(region: &OwnedFd, d: &Duplex) {
    let layout = d.tx.layout();
    let len = Duplex::region_bytes(layout);
    let at = 128 + layout.region_bytes() + capnet_ring::queue::queue_bytes(layout.buffers);
    let map = SharedRegion::from_fd(region.try_clone().unwrap(), len).unwrap();
    assert!(at.is_multiple_of(4) && at + 4 <= map.len());
    // SAFETY: an aligned u32 inside the live mapping (checked above), a
    // queue index both sides only touch atomically.
    let tail = unsafe { &*map.as_ptr().add(at).cast::<AtomicU32>() };
    tail.store(layout.buffers * 4 + 7, Ordering::SeqCst);
}

/// The payload bytes (from `from` on) of every buffer of the stack's TX
/// channel, mapped again so that the test can write them as a hostile
/// stack would while nicdrv holds them.
pub struct StackTxPayloads {
    map: SharedRegion,
    at: usize,
    buffers: usize,
    buf_size: usize,
    from: usize,
}

impl StackTxPayloads {
    pub fn map(region: &OwnedFd, d: &Duplex, from: usize) -> StackTxPayloads {
        let layout = d.tx.layout();
        let len = Duplex::region_bytes(layout);
        // Channel B->A's data area follows its free and active queues.
        let at = 128 + layout.region_bytes() + 2 * capnet_ring::queue::queue_bytes(layout.buffers);
        let (buffers, buf_size) = (layout.buffers as usize, layout.buf_size as usize);
        assert!(at + buffers * buf_size <= len && from < buf_size);
        let map = SharedRegion::from_fd(region.try_clone().unwrap(), len).unwrap();
        StackTxPayloads {
            map,
            at,
            buffers,
            buf_size,
            from,
        }
    }

    /// Writes `byte` over each buffer's payload.
    pub fn fill(&self, byte: u8) {
        for i in 0..self.buffers {
            let start = self.at + i * self.buf_size + self.from;
            // SAFETY: inside the live mapping (checked in `map`); nicdrv
            // may read these bytes meanwhile, which is the point, and this
            // process touches them only here while nicdrv holds them.
            unsafe {
                std::ptr::write_bytes(
                    self.map.as_ptr().add(start),
                    byte,
                    self.buf_size - self.from,
                )
            };
        }
    }
}

pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;

/// Ethernet + IPv4 + TCP. Checksums: filled when `csum`, else left zero.
pub fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload: &[u8],
    csum: bool,
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let tcp_len = 20 + payload.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&s.ip().octets());
    ip[16..20].copy_from_slice(&d.ip().octets());
    f.extend_from_slice(&ip);
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = tcp_flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&t);
    f.extend_from_slice(payload);
    if csum {
        capnet_wire::csum::fill_tx(&mut f).unwrap();
    }
    f
}

/// `n` consecutive full segments of `size` bytes (the last with PSH), and
/// the frame merged from them for a port that segments (TSO), with its
/// descriptor flags.
pub fn tso_run(n: usize, size: usize) -> (Vec<Vec<u8>>, (Vec<u8>, u32)) {
    use capnet_wire::gso::{Ident, Merge, MAX_FRAME};
    let segs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let payload: Vec<u8> = (0..size).map(|b| (b * 31 + i * 7) as u8).collect();
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            let seq = 5000 + (i * size) as u32;
            let (src, dst) = (
                "10.0.0.1:40000".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
            );
            let mut f = tcp_frame(src, dst, seq, 1, flags, &payload, false);
            // Idents that follow one another, as a stack's do.
            f[18..20].copy_from_slice(&(100 + i as u16).to_be_bytes());
            capnet_wire::csum::fill_tx(&mut f).unwrap();
            f
        })
        .collect();
    let mut buf = vec![0u8; MAX_FRAME];
    let mut m = Merge::start(&mut buf, &segs[0], MAX_FRAME, Ident::Consecutive).unwrap();
    for s in &segs[1..] {
        assert!(m.push(&mut buf, s));
    }
    let len = m.finish(&mut buf);
    buf.truncate(len);
    let f = capnet_ring::flags::with_gso_size(
        capnet_ring::flags::TSO | capnet_ring::flags::TX_CSUM,
        m.size(),
    );
    (segs, (buf, f))
}
