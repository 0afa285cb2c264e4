//! Seeds of the frame targets: frames from the wire and from the stack,
//! segments to merge and cut, what a TAP with virtio-net headers hands up.

use super::*;

pub(super) fn wire_frame() -> Vec<Vec<u8>> {
    let (sealed, _) = records(&[b"hello"]);
    let mut arp = ethernet(EthernetProtocol::Arp, 28, |b| b.fill(0));
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    vec![
        tcp(
            sa(LOCAL),
            sa(REMOTE),
            1000,
            Some(2000),
            TcpControl::Psh,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
        tcp(sa(LOCAL), sa(REMOTE), 1000, None, TcpControl::Syn, b""),
        tcp(
            sa(REMOTE),
            sa(LOCAL),
            7,
            Some(9),
            TcpControl::None,
            &sealed[0],
        ),
        tcp(
            sa("[fd00::2]:443"),
            sa("[fd00::1]:40000"),
            1,
            Some(1),
            TcpControl::Psh,
            b"six",
        ),
        udp4(b"query"),
        arp,
    ]
}

pub(super) fn nicdrv_frames() -> Vec<Vec<u8>> {
    let (sealed, framed) = records(&[b"first record", b"second", b"third one"]);
    let (rx_seq, tx_seq) = (500u32, 9000u32);
    let mut rx = vec![0u8];
    rx.extend_from_slice(&tx_seq.to_le_bytes());
    rx.extend_from_slice(&rx_seq.to_le_bytes());
    let mut tx = rx.clone();
    let mut seq = rx_seq;
    for r in &sealed {
        rx.push(0);
        piece(
            &mut rx,
            &tcp(sa(REMOTE), sa(LOCAL), seq, Some(tx_seq), TcpControl::Psh, r),
        );
        seq = seq.wrapping_add(r.len() as u32);
    }
    let mut seq = tx_seq;
    for r in &framed {
        tx.push(0x41); // transmit, context 1
        piece(
            &mut tx,
            &tcp(sa(LOCAL), sa(REMOTE), seq, Some(rx_seq), TcpControl::Psh, r),
        );
        seq = seq.wrapping_add(r.len() as u32);
        tx.push(0); // the peer's ACK
        piece(
            &mut tx,
            &tcp(
                sa(REMOTE),
                sa(LOCAL),
                rx_seq,
                Some(seq),
                TcpControl::None,
                b"",
            ),
        );
    }
    // A lost record, then a resync at the next one.
    let mut lossy = rx.clone();
    lossy.truncate(9);
    let at = rx_seq + sealed[0].len() as u32;
    lossy.push(0);
    piece(
        &mut lossy,
        &tcp(sa(REMOTE), sa(LOCAL), at, None, TcpControl::Psh, &sealed[1]),
    );
    lossy.push(0x82 | 1 << 2);
    piece(&mut lossy, &at.to_le_bytes());
    vec![rx, tx, lossy]
}

pub(super) fn netsrv_frames() -> Vec<Vec<u8>> {
    let (sealed, framed) = records(&[b"a record", b"another"]);
    let decrypted = (capnet_ring::flags::OFFLOADED << 3) as u8;
    let mut v = Vec::new();
    v.push(0); // the SYN
    piece(
        &mut v,
        &tcp(sa(REMOTE), sa(LOCAL), 99, None, TcpControl::Syn, b""),
    );
    v.extend_from_slice(&[3, 0, 0]); // bind RX, confirm at 0
    let mut seq = 100u32;
    for (i, r) in sealed.iter().enumerate() {
        v.push(if i == 0 { decrypted } else { 0 });
        piece(
            &mut v,
            &tcp(sa(REMOTE), sa(LOCAL), seq, Some(1), TcpControl::Psh, r),
        );
        v.extend_from_slice(&(r.len() as u16).to_le_bytes());
        seq = seq.wrapping_add(r.len() as u32);
    }
    v.push(4); // bind TX
    for r in &framed {
        v.push(2);
        piece(
            &mut v,
            &tcp(sa(LOCAL), sa(REMOTE), 1, Some(seq), TcpControl::Psh, r),
        );
    }
    v.extend_from_slice(&[5, 8, 0, 6]);
    piece(&mut v, b"replacement");
    v.push(7);
    vec![v]
}

/// A run of full segments (each its own input's first frame is cut; the
/// run coalesces), and a merged frame to cut.
pub(super) fn segmentation() -> Vec<Vec<u8>> {
    let segs: Vec<Vec<u8>> = (0..4u32)
        .map(|i| {
            let payload = vec![i as u8; 1000];
            tcp(
                sa(LOCAL),
                sa(REMOTE),
                1000 + i * 1000,
                Some(1),
                TcpControl::None,
                &payload,
            )
        })
        .collect();
    let input = |size: u16, frames: &[Vec<u8>]| {
        let mut v = size.to_le_bytes().to_vec();
        for f in frames {
            v.extend_from_slice(&(f.len() as u16).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    };
    let mut buf = vec![0u8; capnet_wire::gso::MAX_FRAME];
    let max = buf.len();
    let mut m =
        capnet_wire::gso::Merge::start(&mut buf, &segs[0], max, capnet_wire::gso::Ident::Any)
            .expect("a full ACK segment leads");
    for s in &segs[1..] {
        assert!(m.push(&mut buf, s));
    }
    let len = m.finish(&mut buf);
    vec![
        input(1000, &segs),
        input(400, &[buf[..len].to_vec()]),
        input(64, &segs[..1]),
    ]
}

/// Linux's frames over a TAP: a merged frame with a partial checksum
/// (GSO), a segment with a partial checksum, one Linux verified, and a
/// plain one.
pub(super) fn tap_frames() -> Vec<Vec<u8>> {
    use capnet_wire::gso::Segments;
    use capnet_wire::vnet::{Header, F_DATA_VALID, GSO_NONE, LEN};
    let with = |h: Header, frame: &[u8]| {
        let mut v = vec![0u8; LEN];
        h.emit((&mut v[..]).try_into().expect("LEN bytes"));
        v.extend_from_slice(frame);
        v
    };
    let mut merged = tcp(
        sa(LOCAL),
        sa(REMOTE),
        1000,
        Some(1),
        TcpControl::None,
        &[5; 6000],
    );
    let cut = Segments::new(&merged, 1448, 1500)
        .expect("a plain TCP frame cuts")
        .for_device(&mut merged);
    let gso = Header::tso(&cut);
    let mut small = tcp(
        sa(LOCAL),
        sa(REMOTE),
        1,
        Some(1),
        TcpControl::Psh,
        b"partial",
    );
    let small_cut = Segments::new(&small, 1448, 1500)
        .expect("a plain TCP frame cuts")
        .for_device(&mut small);
    let partial = Header {
        gso_type: GSO_NONE,
        gso_size: 0,
        ..Header::tso(&small_cut)
    };
    let plain = tcp(
        sa(LOCAL),
        sa(REMOTE),
        9,
        Some(1),
        TcpControl::None,
        b"plain",
    );
    let valid = Header {
        flags: F_DATA_VALID,
        ..Header::default()
    };
    vec![
        with(gso, &merged),
        with(partial, &small),
        with(valid, &plain),
        with(Header::default(), &plain),
    ]
}
