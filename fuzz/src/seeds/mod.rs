//! Seed inputs for every target: real frames, real records, valid capnp
//! calls built with the generated builders, the example configurations.
//! `tests/corpus.rs` writes them to `fuzz/corpus/TARGET/` (on request) and
//! checks that the checked-in corpus still holds them.
//!
//! By target family: `frames` (frames from the wire and from the stack,
//! segmentation, a TAP's frames), `rings`, `calls` (capnp), `tcpip` (the
//! engine's frames); the frame and record builders they share, TLS records
//! and configurations here.

mod calls;
mod frames;
mod rings;
mod tcpip;

use crate::engine;
use crate::frames::{IV, KEY, LOCAL, REMOTE};
use crate::input::piece;
use crate::records::{keys, SUITES};
use capnet_schema::addr::write_socket_addr;
use capnet_schema::net_capnp::{net, net_admin, tcp_socket, udp_socket};
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnet_schema::tls_capnp::tls;
use capnet_wire::tls::ContentType;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::message;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
};
use std::net::{IpAddr, SocketAddr};
use tlsd::record::RecordSealer;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a fixed address")
}

fn ethernet(proto: EthernetProtocol, payload_len: usize, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![0u8; ETHERNET_HEADER_LEN + payload_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: proto,
    }
    .emit(&mut frame);
    f(frame.payload_mut());
    buf
}

/// A TCP segment from `src` to `dst` (one family) with right checksums.
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    control: TcpControl,
    payload: &[u8],
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 4096,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            ethernet(
                EthernetProtocol::Ipv4,
                ip.buffer_len() + tcp.buffer_len(),
                |b| {
                    let mut p = Ipv4Packet::new_unchecked(b);
                    ip.emit(&mut p, &caps);
                    let mut t = TcpPacket::new_unchecked(p.payload_mut());
                    tcp.emit(&mut t, &s.into(), &d.into(), &caps);
                },
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            ethernet(
                EthernetProtocol::Ipv6,
                ip.buffer_len() + tcp.buffer_len(),
                |b| {
                    let mut p = Ipv6Packet::new_unchecked(b);
                    ip.emit(&mut p);
                    let mut t = TcpPacket::new_unchecked(p.payload_mut());
                    tcp.emit(&mut t, &s.into(), &d.into(), &caps);
                },
            )
        }
        _ => panic!("a TCP segment needs one address family"),
    }
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let (s, d) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let udp = UdpRepr {
        src_port: 5000,
        dst_port: 53,
    };
    let ip = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    ethernet(
        EthernetProtocol::Ipv4,
        ip.buffer_len() + ip.payload_len,
        |b| {
            let mut p = Ipv4Packet::new_unchecked(b);
            ip.emit(&mut p, &caps);
            let mut u = UdpPacket::new_unchecked(p.payload_mut());
            udp.emit(
                &mut u,
                &s.into(),
                &d.into(),
                payload.len(),
                |buf| buf.copy_from_slice(payload),
                &caps,
            );
        },
    )
}

/// TLS 1.3 AES-128-GCM records as the peer sends them (`sealed`) and as
/// tlsd frames them for the NIC (`framed`), from record 0 on.
fn records(plain: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut sealer = RecordSealer::new(keys(0), 0).expect("a sealer");
    let mut framer = RecordSealer::new(keys(0), 0).expect("a sealer");
    let mut sealed = Vec::new();
    let mut framed = Vec::new();
    for p in plain {
        let mut out = Vec::new();
        sealer
            .seal(ContentType::ApplicationData, p, &mut out)
            .expect("seal");
        sealed.push(out);
        let mut out = Vec::new();
        framer
            .frame_for_device(ContentType::ApplicationData, p, &mut out)
            .expect("frame");
        framed.push(out);
    }
    (sealed, framed)
}

fn tls_record() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for suite in 0..SUITES.len() as u8 {
        let mut sealer = RecordSealer::new(keys(suite), 0).expect("a sealer");
        let mut v = vec![suite];
        for (i, text) in [&b"first"[..], b"", &[0x42; 300]].iter().enumerate() {
            let mut rec = Vec::new();
            sealer
                .seal(ContentType::ApplicationData, text, &mut rec)
                .expect("seal");
            // The first record in two pieces, as TCP may cut it.
            if i == 0 {
                let (a, b) = rec.split_at(3);
                v.push(0);
                piece(&mut v, a);
                v.push(0);
                piece(&mut v, b);
            } else {
                v.push(0);
                piece(&mut v, &rec);
            }
        }
        out.push(v);
    }
    // A record the NIC decrypted: its framing with the plaintext in place.
    let (_, framed) = records(&[b"decrypted by the NIC"]);
    let mut v = vec![0, 1];
    piece(&mut v, &framed[0]);
    out.push(v);
    out
}

fn config() -> Vec<Vec<u8>> {
    let mut v = vec![capnet::config::DEFAULT.as_bytes().to_vec()];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for name in ["capnet.toml", "host-b.toml", "bond-a.toml", "tls-a.toml"] {
        v.push(std::fs::read(format!("{dir}/{name}")).expect("an example configuration"));
    }
    v
}

/// The seeds of target `name`.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "wire_frame" => frames::wire_frame(),
        "nicdrv_frames" => frames::nicdrv_frames(),
        "netsrv_frames" => frames::netsrv_frames(),
        "ring_channel" => rings::ring_channel(),
        "ring_bytes" => rings::ring_bytes(),
        "chunks" => rings::chunks(),
        "arena" => rings::arena(),
        "capnp" => calls::capnp(),
        "tls_record" => tls_record(),
        "config" => config(),
        "engine_frames" => tcpip::engine_frames(),
        "segmentation" => frames::segmentation(),
        "tap_frames" => frames::tap_frames(),
        _ => Vec::new(),
    }
}
