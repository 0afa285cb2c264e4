//! Offload contexts: the simulated NIC's offload, one contract for every
//! kind (schema/offload.capnp, docs/offload.md).
//!
//! A context is one flow's state in the NIC, minted by `Nic.offload` for a
//! kind the port offers and held by the service that owns the flow (tlsd,
//! through netsrv's `TcpSocket.offload`). It has two halves:
//!
//! - the engine, in the data plane: an [`Engine`] (today the TLS engines of
//!   [`tls`]) in the context table [`Engines`], named by the `context` field
//!   of TX descriptors tagged [`flags::OFFLOAD_TX`] and found by what it
//!   matches in received frames ([`Matches`]: a TCP connection's inbound
//!   4-tuple, or an inbound ESP SA's destination and SPI);
//! - the capability, in the control plane ([`control::Offloads`]): an
//!   `OffloadContext` served through a revocable proxy, and the holder's
//!   `OffloadEvents`.
//!
//! The two planes meet through data-plane commands (install, delete, resync,
//! revoke all; each acknowledged) and events (resync request, contexts
//! revoked); counters are atomics both share ([`ContextStats`] per context,
//! [`KindCounters`] per kind).
//!
//! # Data path
//!
//! TX, a descriptor with `OFFLOAD_TX` and `context = id`: the frame must be
//! an unfragmented TCP segment of the context's flow (local -> remote). Its
//! payload goes through the engine, which processes it in place (tlsTx
//! seals the framed records); then the driver fills the IP and TCP checksums
//! (the payload changed, so it does whatever `TX_CSUM` says) and sends it.
//! Any refusal drops the frame, because it may hold cleartext: the engine's
//! own (a gap, a retransmission of forgotten bytes, a bad record header),
//! an unknown or deleted id, a frame of another flow, a frame that is not
//! TCP. Those count in `offloadTxDropped` (and, where the context is known,
//! in its `dropped` and its kind's). A tagged frame without payload (a pure
//! ACK, a FIN) holds nothing to process and is sent whatever it names.
//!
//! RX: a frame whose checksum the driver verified, carrying TCP of a flow
//! with contexts (remote -> local), goes through each of its engines in the
//! buffer handed to the stack (the capture has already recorded it as it
//! came from the wire). tlsRx marks a segment it opened whole `OFFLOADED`
//! with `context = id`; `CSUM_VERIFIED` stays set although the TCP checksum
//! no longer matches the plaintext. A tlsTx engine learns the ACK number, so
//! that it forgets acknowledged records. Frames with a bad or unchecked
//! checksum pass untouched, and so do frames the stack never gets (no free
//! buffer): the engines only see what is delivered.
//!
//! # Lifetime
//!
//! A context belongs to the ring session that was attached when it was made
//! (none attached: `busy`). It ends exactly once, in the data plane (which
//! counts `offloadReleased`), in one of these ways:
//! - `release()` (answered once the data plane deleted it);
//! - the holder drops the capability (or its connection dies);
//! - the driver revokes it: the ring session ends (the stack detached, or
//!   returned a bad descriptor, or a new session replaced it) or the driver
//!   shuts down. The holder's `OffloadEvents.revoked(reason)` is called
//!   once; the context stays listed (state `revoked`) until the holder drops
//!   it.
//!
//! After any of these, every call on the capability answers `revoked`.
//! Context ids are never reused within a driver instance.

pub mod control;
mod counters;
mod engine;
mod table;
pub mod tls;

pub use counters::{ContextStats, KindCounters, KindSnapshot, KindStats, StatsSnapshot};
pub use engine::{CmdError, Engine, Packet, RxOutcome, TxAction};
pub use table::{Engines, InstallError, Matches, NewContext, RxMark};

pub use capnet_wire::tcp::{parse_tcp, Flow, TcpSegment};

#[cfg(doc)]
use capnet_ring::flags;

/// Test frames: Ethernet + IPv4/IPv6 + TCP with a payload, checksums filled.
#[cfg(test)]
pub(crate) mod testframe {
    use std::net::SocketAddr;

    pub const ACK: u8 = 0x10;
    pub const PSH: u8 = 0x08;

    pub fn tcp(
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        tcp_flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let tcp_len = 20 + payload.len();
        match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
                ip[6] = 0x40; // DF
                ip[8] = 64;
                ip[9] = 6;
                ip[12..16].copy_from_slice(&s.ip().octets());
                ip[16..20].copy_from_slice(&d.ip().octets());
                f.extend_from_slice(&ip);
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = [0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
                ip[6] = 6;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.ip().octets());
                ip[24..40].copy_from_slice(&d.ip().octets());
                f.extend_from_slice(&ip);
            }
            _ => panic!("mixed families"),
        }
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
        capnet_wire::csum::fill_tx(&mut f).unwrap();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testframe::{tcp, ACK, PSH};
    use super::*;
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_tcp_over_v4_and_v6() {
        for (s, d) in [
            (sa("10.0.0.1:40000"), sa("10.0.0.2:443")),
            (sa("[fd00::1]:40000"), sa("[fd00::2]:443")),
        ] {
            let f = tcp(s, d, 1000, 77, ACK | PSH, b"hello");
            let t = parse_tcp(&f).unwrap();
            assert_eq!((t.src, t.dst, t.seq, t.ack), (s, d, 1000, Some(77)));
            assert_eq!(&f[t.payload.clone()], b"hello");
            assert!(!t.syn && !t.rst);
            // Ethernet padding is not payload.
            let mut padded = tcp(s, d, 5, 0, 0, b"");
            padded.resize(80, 0);
            let t = parse_tcp(&padded).unwrap();
            assert!(t.payload.is_empty());
            assert_eq!(t.ack, None);
        }
    }

    #[test]
    fn payload_starts_after_tcp_and_ip_options() {
        let (s, d) = (sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
        let plain = tcp(s, d, 7, 8, ACK, b"data");
        // 12 bytes of TCP options (NOPs and an end), data offset 8 words.
        let mut f = plain[..14 + 20 + 20].to_vec();
        f.extend_from_slice(&[1; 11]);
        f.push(0);
        f.extend_from_slice(b"data");
        f[14 + 20 + 12] = 8 << 4;
        f[14 + 2..14 + 4].copy_from_slice(&((20 + 32 + 4) as u16).to_be_bytes());
        capnet_wire::csum::fill_tx(&mut f).unwrap();
        let t = parse_tcp(&f).unwrap();
        assert_eq!(&f[t.payload.clone()], b"data");
        // 4 bytes of IPv4 options (NOPs) on top.
        let mut g = f[..14 + 20].to_vec();
        g.extend_from_slice(&[1, 1, 1, 0]);
        g.extend_from_slice(&f[14 + 20..]);
        g[14] = 0x46;
        g[14 + 2..14 + 4].copy_from_slice(&((24 + 32 + 4) as u16).to_be_bytes());
        capnet_wire::csum::fill_tx(&mut g).unwrap();
        let t = parse_tcp(&g).unwrap();
        assert_eq!(&g[t.payload.clone()], b"data");
        assert_eq!((t.seq, t.ack), (7, Some(8)));
    }

    #[test]
    fn refuses_what_is_not_a_whole_tcp_segment() {
        let f = tcp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), 1, 1, ACK, b"xyz");
        assert!(parse_tcp(&f[..30]).is_none());
        let mut frag = f.clone();
        frag[14 + 6] |= 0x20; // more fragments
        assert!(parse_tcp(&frag).is_none());
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert!(parse_tcp(&udp).is_none());
        let mut arp = f;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(parse_tcp(&arp).is_none());
    }
}
