//! Frames: the checksum and TCP parsers both sides of a port share
//! (`capnet_wire`), nicdrv's intake (its TLS offload engines on frames from
//! the wire and from netsrv), and netsrv's offload path over frames from a
//! port.

use crate::input::Input;
use capnet_offload::gcm::GcmKey;
use capnet_offload::tls::TlsParams;
use capnet_schema::offload_capnp::OffloadKind;
use capnet_wire::csum::{self, RxCheck};
use capnet_wire::tcp::parse_tcp;
use capnet_wire::tls::{self, Version};
use netsrv::offload::{OffloadTable, TxBinding};
use nicdrv::counters::Counters;
use nicdrv::offload::{tls as nic_tls, ContextStats, Engines, Flow, Matches, NewContext};
use std::net::SocketAddr;
use std::sync::Arc;

/// The port MTU the targets judge frames by.
pub const MTU: u32 = 1500;
/// The flow the offload targets bind: local end, remote end.
pub const LOCAL: &str = "10.0.0.1:40000";
pub const REMOTE: &str = "10.0.0.2:443";
/// The fixed TLS key material of the offload contexts and record targets.
pub const KEY: [u8; 32] = [7; 32];
pub const IV: [u8; 12] = [9; 12];

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a fixed address")
}

/// One frame through the checksum verifier, the checksum filler and the
/// TCP segment parser; the payload through the TLS record header parser.
pub fn wire_frame(data: &[u8]) {
    let _ = csum::frame_len_ok(data.len(), MTU);
    let before = csum::check_rx(data);
    if let Some(seg) = parse_tcp(data) {
        let payload = &data[seg.payload];
        if let Ok(h) = tls::RecordHeader::parse(payload) {
            let mut out = [0u8; tls::HEADER_LEN];
            h.emit(&mut out);
            assert_eq!(tls::RecordHeader::parse(&out), Ok(h), "header round trip");
        }
        if let Ok(r) = tls::Record::new_checked(payload) {
            assert_eq!(r.total_len(), tls::HEADER_LEN + r.body().len());
        }
    }
    let mut filled = data.to_vec();
    if let Ok(true) = csum::fill_tx(&mut filled) {
        // What the driver fills, the receiving side finds right (fragments
        // and other protocols get their IPv4 header filled, and stay
        // unchecked).
        let after = csum::check_rx(&filled);
        assert!(
            matches!(after, Ok(RxCheck::Verified | RxCheck::Unchecked)),
            "fill_tx then check_rx: {after:?} (was {before:?})"
        );
    }
}

fn tls_params(version: Version, tcp_seq: u32) -> TlsParams {
    TlsParams {
        version,
        key: GcmKey::new(&KEY[..16]).expect("a 16-byte key"),
        iv: IV,
        tcp_seq,
        rec_seq: 0,
    }
}

/// nicdrv's data plane with a TLS TX context (id 1) and a TLS RX context
/// (id 2) on one flow, fed frames from the wire (RX) and from netsrv (TX).
/// The checksum gate in front of the RX engines is no defence (a hostile
/// peer sends right checksums), so every frame reaches the engines.
///
/// Input: `[version][tx tcp seq u32][rx tcp seq u32]` then ops of
/// `[op][u16 len][frame]`.
pub fn nicdrv_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let version = if input.u8() & 1 == 0 {
        Version::Tls13
    } else {
        Version::Tls12
    };
    let c = Counters::default();
    let mut engines = Engines::default();
    let flow = Flow {
        local: sa(LOCAL),
        remote: sa(REMOTE),
    };
    let tx = nic_tls::engine(OffloadKind::TlsTx, tls_params(version, input.u32()), 0);
    let rx = nic_tls::engine(OffloadKind::TlsRx, tls_params(version, input.u32()), 0);
    for (id, engine) in [(1, tx), (2, rx)] {
        let ctx = NewContext {
            id,
            flow: Matches::Tcp(flow),
            engine,
            stats: Arc::new(ContextStats::default()),
        };
        engines
            .install(ctx, &c)
            .expect("two contexts on a fresh table");
    }
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let mut frame = input.piece().to_vec();
        match op % 4 {
            0 => {
                // From the wire (RxPath::deliver): length, checksum, engines.
                let _ = csum::frame_len_ok(frame.len(), MTU);
                let _ = csum::check_rx(&frame);
                let _ = engines.receive(&mut frame, &c);
            }
            1 => {
                // From netsrv tagged OFFLOAD_TX (TxPath::transmit).
                let _ = engines.transmit(&mut frame, u32::from(op >> 6), &c);
                let _ = csum::fill_tx(&mut frame);
            }
            2 => {
                let tcp_seq = u32::from_le_bytes(
                    frame
                        .get(..4)
                        .map_or([0; 4], |b| b.try_into().expect("four bytes")),
                );
                let rec_seq = (op & 0x80 != 0).then_some(u64::from(op >> 2));
                let _ = engines.resync(2, tcp_seq, rec_seq, &c);
            }
            _ => {
                let _ = engines.delete(u32::from(op >> 6), &c);
            }
        }
    }
    engines.delete_all(&c);
}

/// netsrv's offload path (`OffloadTable`) over frames from a port and
/// frames the engine built, with the connection's RX and TX bound; the
/// receive point only moves forward, as TCP's does.
///
/// Input: ops of `[op][...]`, frames as `[u16 len][frame]`.
pub fn netsrv_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let mut table = OffloadTable::default();
    let tuple = Flow {
        local: sa(LOCAL),
        remote: sa(REMOTE),
    };
    let mut enqueued = 0u64;
    let mut sent = 0u64;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 8 {
            0 | 1 => {
                let frame = input.piece();
                let _ = netsrv::device::software_checksum_ok(frame);
                let flags = u32::from(op >> 3);
                let _ = table.on_rx(frame, flags);
                enqueued += u64::from(input.u16());
                let ooo = u64::from(op >> 4);
                table.observe_rx(&tuple, ooo, ooo / 2);
            }
            2 => {
                let frame = input.piece().to_vec();
                let _ = table.on_tx(&frame, "sim0", 1);
                let _ = table.take_releasable();
            }
            3 => {
                let _ = table.bind_rx(tuple, enqueued, (0, 0));
                let _ = table.confirm_rx(&tuple, u64::from(input.u16()));
            }
            4 => {
                let binding = TxBinding {
                    port: "sim0".into(),
                    epoch: 1,
                    context: 1,
                    start: sent,
                };
                let _ = table.bind_tx(tuple, binding);
            }
            5 => {
                sent += u64::from(input.u16());
            }
            6 => {
                let bytes = input.piece().to_vec();
                let _ = (table.unbind_tx(&tuple), bytes);
            }
            _ => {
                table.topology_changed();
                if op & 0x80 != 0 {
                    table.cancel_rx(&tuple);
                } else {
                    table.unbind_rx(&tuple);
                }
            }
        }
    }
}

/// Segmentation offload's two halves (`capnet_wire::gso`), as nicdrv uses
/// them on what netsrv sends (cut) and on what the wire brings (coalesce).
///
/// Input: `[gso size u16 LE]` then frames as `[u16 LE len][frame]`. The first
/// frame is cut into segments of the size, which must each fit the MTU with
/// right checksums and together carry its payload; all of them are
/// coalesced in order, and the coalesced frame cut again must give as many
/// segments as were coalesced.
pub fn segmentation(data: &[u8]) {
    use capnet_wire::gso::{Ident, Layout, Merge, Segments, MAX_FRAME};
    let mut input = Input::new(data);
    let size = input.u16();
    let mut frames = Vec::new();
    while !input.is_empty() && frames.len() < 64 {
        let len = usize::from(input.u16());
        frames.push(input.bytes(len));
    }
    let Some(first) = frames.first() else { return };
    let mut out = vec![0u8; MAX_FRAME];
    if let Ok(s) = Segments::new(first, size, MTU as usize) {
        let layout = Layout::of(first).expect("a frame that cuts has a layout");
        let mut payload = Vec::new();
        for i in 0..s.count() {
            let n = s.write(first, i, &mut out);
            assert_eq!(n, s.frame_len(i));
            assert!(csum::frame_len_ok(n, MTU), "segment {i} of {n} bytes");
            assert_eq!(csum::check_rx(&out[..n]), Ok(RxCheck::Verified));
            let l = Layout::of(&out[..n]).expect("a segment has the frame's layout");
            payload.extend_from_slice(&out[l.payload..n]);
        }
        assert_eq!(
            payload,
            &first[layout.payload..],
            "the segments carry the payload"
        );
    }
    let mut buf = vec![0u8; MAX_FRAME];
    let Some(mut m) = Merge::start(&mut buf, first, MAX_FRAME, Ident::Any) else {
        return;
    };
    for f in &frames[1..] {
        m.push(&mut buf, f);
    }
    let len = m.finish(&mut buf);
    assert!(
        Layout::of(&buf[..len]).is_some(),
        "a merged frame has a layout"
    );
    if let Ok(s) = Segments::new(&buf[..len], m.size(), MTU as usize) {
        assert_eq!(s.count(), usize::from(m.segments()));
    }
}

/// What a TAP with virtio-net headers hands nicdrv: `[header][frame]`.
/// Whatever the header claims, checking it never panics; a frame it calls
/// merged that cuts gives MTU segments with right checksums; a partial
/// checksum over a TCP frame is completed to one that verifies. And what
/// nicdrv hands Linux, readied by `for_device` behind `Header::tso`, reads
/// back as the same merged frame.
pub fn tap_frames(data: &[u8]) {
    use capnet_wire::gso::{Layout, Segments, MAX_FRAME};
    use capnet_wire::vnet::{Header, F_NEEDS_CSUM, LEN};
    let mut frame = data.get(LEN..).unwrap_or_default().to_vec();
    let Ok(header) = Header::parse(data) else {
        assert!(data.len() < LEN);
        return;
    };
    let Ok(what) = header.receive(&mut frame) else {
        return;
    };
    let mut out = vec![0u8; MAX_FRAME];
    match what.gso_size {
        Some(size) => {
            let Ok(s) = Segments::new(&frame, size, MTU as usize) else {
                return;
            };
            for i in 0..s.count() {
                let n = s.write(&frame, i, &mut out);
                assert!(csum::frame_len_ok(n, MTU), "segment {i} of {n} bytes");
                assert_eq!(csum::check_rx(&out[..n]), Ok(RxCheck::Verified));
            }
            let mut again = frame.clone();
            let cut = s.for_device(&mut again);
            let mut bytes = [0u8; LEN];
            Header::tso(&cut).emit(&mut bytes);
            let back = Header::parse(&bytes).expect("a header we wrote");
            let read = back.receive(&mut again).expect("a header we wrote");
            assert_eq!(read.gso_size, Some(size));
            assert!(read.verified);
        }
        None if header.flags & F_NEEDS_CSUM != 0 => {
            let tcp_checksum_field = Layout::of(&frame).is_some_and(|l| {
                usize::from(header.csum_start) == l.l4 && header.csum_offset == 16
            });
            if tcp_checksum_field {
                // The pseudo-header's part was the sender's to get right.
                let _ = csum::check_rx(&frame);
            }
        }
        None => {}
    }
}
