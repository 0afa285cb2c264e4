use super::*;

/// A TCP frame over IPv4 or IPv6 with a timestamp option, checksums filled.
fn frame(v6: bool, seq: u32, ident: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let options: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
    let tcp_len = TCP_MIN + options.len();
    let ip = if v6 { IPV6 } else { IPV4 };
    let mut f = vec![0u8; ETH + ip + tcp_len + payload.len()];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    if v6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[ETH] = 0x60;
        write16(&mut f, ETH + 4, (tcp_len + payload.len()) as u16);
        f[ETH + 6] = PROTO_TCP;
        f[ETH + 7] = 64;
        f[ETH + 8] = 0xfd;
        f[ETH + 23] = 1;
        f[ETH + 24] = 0xfd;
        f[ETH + 39] = 2;
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[ETH] = 0x45;
        write16(&mut f, ETH + 2, (IPV4 + tcp_len + payload.len()) as u16);
        write16(&mut f, ETH + 4, ident);
        f[ETH + 6] = 0x40;
        f[ETH + 8] = 64;
        f[ETH + 9] = PROTO_TCP;
        f[ETH + 12..ETH + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[ETH + 16..ETH + 20].copy_from_slice(&[10, 0, 0, 2]);
    }
    let l4 = ETH + ip;
    write16(&mut f, l4, 40000);
    write16(&mut f, l4 + 2, 80);
    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    f[l4 + 8..l4 + 12].copy_from_slice(&77u32.to_be_bytes());
    f[l4 + 12] = ((tcp_len / 4) as u8) << 4;
    f[l4 + 13] = flags;
    write16(&mut f, l4 + 14, 512);
    f[l4 + TCP_MIN..l4 + tcp_len].copy_from_slice(&options);
    f[l4 + tcp_len..].copy_from_slice(payload);
    assert_eq!(csum::fill_tx(&mut f), Ok(true));
    f
}

/// `n` segments of `size` bytes (the last `last` bytes) as netsrv sends them.
fn run(v6: bool, n: usize, size: usize, last: usize, last_flags: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = if i + 1 == n { last } else { size };
            let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i * 13) as u8).collect();
            let flags = if i + 1 == n { ACK | last_flags } else { ACK };
            frame(
                v6,
                1000 + (i * size) as u32,
                0xfff0u16.wrapping_add(i as u16),
                flags,
                &payload,
            )
        })
        .collect()
}

fn merge_all(frames: &[Vec<u8>], ident: Ident) -> (Vec<u8>, Merge, usize) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut m = Merge::start(&mut buf, &frames[0], MAX_FRAME, ident).expect("leads");
    let mut taken = 1;
    for f in &frames[1..] {
        if !m.push(&mut buf, f) {
            break;
        }
        taken += 1;
    }
    let len = m.finish(&mut buf);
    buf.truncate(len);
    (buf, m, taken)
}

fn cut(merged: &[u8], size: u16) -> Vec<Vec<u8>> {
    let s = Segments::new(merged, size, 1500).expect("cuts");
    (0..s.count())
        .map(|i| {
            let mut out = vec![0u8; s.frame_len(i)];
            assert_eq!(s.write(merged, i, &mut out), out.len());
            out
        })
        .collect()
}

#[test]
fn a_merged_run_cuts_back_into_the_same_frames() {
    for v6 in [false, true] {
        let size = if v6 { 1428 } else { 1448 };
        for (n, last, flags) in [
            (2, 1000, PSH),
            (44, size, 0),
            (7, 1, FIN | PSH),
            (3, size, FIN),
        ] {
            let frames = run(v6, n, size, last, flags);
            let (merged, m, taken) = merge_all(&frames, Ident::Consecutive);
            assert_eq!(taken, n, "v6 {v6} n {n}");
            assert_eq!(usize::from(m.segments()), n);
            assert!(csum::check_rx(&merged).is_ok());
            assert_eq!(cut(&merged, m.size()), frames, "v6 {v6} n {n} last {last}");
        }
    }
}

#[test]
fn a_merged_frame_has_the_whole_length_and_a_good_ip_checksum() {
    let frames = run(false, 5, 1448, 100, PSH);
    let (merged, _, _) = merge_all(&frames, Ident::Consecutive);
    assert_eq!(merged.len(), ETH + IPV4 + 32 + 4 * 1448 + 100);
    assert_eq!(usize::from(read16(&merged, ETH + 2)), merged.len() - ETH);
    assert_eq!(sum16(&merged[ETH..ETH + IPV4]), 0xffff);
    assert_eq!(merged[ETH + IPV4 + 13], ACK | PSH);
}

#[test]
fn a_merge_stops_at_what_does_not_continue_it() {
    let base = run(false, 3, 1448, 1448, 0);
    let (mut buf, max) = (vec![0u8; MAX_FRAME], MAX_FRAME);
    let start =
        || Merge::start(&mut vec![0u8; MAX_FRAME], &base[0], max, Ident::Consecutive).unwrap();
    let changed = |at: usize, v: u8| {
        let mut f = base[1].clone();
        f[at] ^= v;
        f
    };
    let l4 = ETH + IPV4;
    let refused = [
        ("a gap", frame(false, 1000 + 1449, 0xfff1, ACK, &[0; 1448])),
        (
            "a bigger segment",
            frame(false, 1448 + 1000, 0xfff1, ACK, &[0; 1449]),
        ),
        (
            "a skipped ident",
            frame(false, 1448 + 1000, 0xfff3, ACK, &[0; 1448]),
        ),
        ("no payload", frame(false, 1448 + 1000, 0xfff1, ACK, &[])),
        (
            "a SYN",
            frame(false, 1448 + 1000, 0xfff1, ACK | SYN, &[0; 10]),
        ),
        ("another port", changed(l4 + 1, 1)),
        ("another ack", changed(l4 + 11, 1)),
        ("another window", changed(l4 + 15, 1)),
        ("another timestamp", changed(l4 + 27, 1)),
        ("another address", changed(ETH + 19, 1)),
        ("another ttl", changed(ETH + 8, 1)),
        ("another MAC", changed(0, 2)),
    ];
    for (what, f) in refused {
        let mut m = start();
        assert!(!m.push(&mut buf, &f), "{what} was merged");
        assert_eq!(m.segments(), 1);
    }
    // Receive coalescing takes any ident.
    let mut m = Merge::start(&mut buf, &base[0], max, Ident::Any).unwrap();
    assert!(m.push(&mut buf, &frame(false, 1448 + 1000, 7, ACK, &[0; 1448])));
    // A short segment, or PSH, ends it.
    for f in [
        frame(false, 1448 + 1000, 0xfff1, ACK, &[0; 100]),
        frame(false, 1448 + 1000, 0xfff1, ACK | PSH, &[0; 1448]),
    ] {
        let mut m = start();
        assert!(m.push(&mut buf, &f));
        assert!(m.is_closed());
        assert!(!m.push(&mut buf, &base[2]));
    }
    // Room.
    let mut m = Merge::start(&mut buf, &base[0], base[0].len() + 1447, Ident::Consecutive).unwrap();
    assert!(!m.push(&mut buf, &base[1]));
}

#[test]
fn only_a_plain_ack_with_payload_leads() {
    let mut buf = vec![0u8; MAX_FRAME];
    for f in [
        frame(false, 1, 1, ACK | PSH, &[1; 100]),
        frame(false, 1, 1, ACK | FIN, &[1; 100]),
        frame(false, 1, 1, SYN, &[]),
        frame(false, 1, 1, ACK, &[]),
    ] {
        assert!(Merge::leads(&f).is_none());
        assert!(Merge::start(&mut buf, &f, MAX_FRAME, Ident::Any).is_none());
    }
    assert!(Merge::leads(&frame(false, 1, 1, ACK, &[1; 100])).is_some());
    let mut fragment = frame(false, 1, 1, ACK, &[1; 100]);
    fragment[ETH + 6] |= 0x20;
    assert!(Merge::start(&mut buf, &fragment, MAX_FRAME, Ident::Any).is_none());
    let mut padded = frame(false, 1, 1, ACK, &[1; 100]);
    padded.push(0);
    assert!(Merge::start(&mut buf, &padded, MAX_FRAME, Ident::Any).is_none());
}

#[test]
fn a_cut_refuses_what_it_cannot_cut() {
    let f = frame(false, 1, 1, ACK, &[1; 3000]);
    assert_eq!(Segments::new(&f, 63, 1500).unwrap_err(), CutError::Size);
    assert_eq!(Segments::new(&f, 1449, 1500).unwrap_err(), CutError::Size);
    assert_eq!(Segments::new(&f, 1448, 1500).unwrap().count(), 3);
    let syn = frame(false, 1, 1, ACK | SYN, &[1; 3000]);
    assert_eq!(
        Segments::new(&syn, 1448, 1500).unwrap_err(),
        CutError::Flags
    );
    let empty = frame(false, 1, 1, ACK, &[]);
    assert_eq!(
        Segments::new(&empty, 1448, 1500).unwrap_err(),
        CutError::NoPayload
    );
    let mut udp = f.clone();
    udp[ETH + 9] = 17;
    assert_eq!(
        Segments::new(&udp, 1448, 1500).unwrap_err(),
        CutError::NotTcp
    );
    // The CWR of a cut frame is on its first segment only.
    let cwr = frame(true, 1, 0, ACK | CWR | PSH, &[1; 3000]);
    let segs = cut(&cwr, 1428);
    let flags: Vec<u8> = segs.iter().map(|s| s[ETH + IPV6 + 13]).collect();
    assert_eq!(flags, [ACK | CWR, ACK, ACK | PSH]);
    assert!(segs
        .iter()
        .all(|s| csum::check_rx(s) == Ok(csum::RxCheck::Verified)));
}

#[test]
fn junk_never_panics() {
    let mut buf = vec![0u8; MAX_FRAME];
    let good = frame(false, 1, 1, ACK, &[1; 2000]);
    for len in 0..good.len().min(200) {
        for flip in 0..len {
            let mut f = good[..len].to_vec();
            f[flip] ^= 0xa5;
            if let Some(mut m) = Merge::start(&mut buf, &f, MAX_FRAME, Ident::Any) {
                m.push(&mut buf, &f);
                m.finish(&mut buf);
            }
            if let Ok(s) = Segments::new(&f, 64, 1500) {
                let mut out = vec![0u8; 1514];
                for i in 0..s.count() {
                    s.write(&f, i, &mut out);
                }
            }
        }
    }
}

/// One's complement addition of two 16-bit words.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

#[test]
fn a_frame_readied_for_a_device_cuts_as_linux_cuts_it() {
    for v6 in [false, true] {
        let size = if v6 { 1428 } else { 1448 };
        let frames = run(v6, 9, size, 700, PSH);
        let (mut merged, m, _) = merge_all(&frames, Ident::Consecutive);
        let s = Segments::new(&merged, m.size(), 1500).unwrap();
        let l4 = ETH + if v6 { IPV6 } else { IPV4 };
        let dc = s.for_device(&mut merged);
        assert_eq!(
            dc,
            DeviceCut {
                v6,
                cwr: false,
                l4: l4 as u16,
                headers: (l4 + 32) as u16,
                size: size as u16,
            }
        );
        if !v6 {
            assert_eq!(sum16(&merged[ETH..ETH + IPV4]), 0xffff);
        }
        // What Linux's tcp_gso_segment does with the partial checksum:
        // takes the whole length out, puts the segment's in, and the
        // device sums the segment from the TCP header on.
        let partial = read16(&merged, l4 + 16);
        let whole = (merged.len() - l4) as u16;
        for (i, want) in frames.iter().enumerate() {
            let mut seg = vec![0u8; s.frame_len(i)];
            s.write(&merged, i, &mut seg);
            let len = (seg.len() - l4) as u16;
            write16(&mut seg, l4 + 16, ones_add(ones_add(partial, !whole), len));
            let sum = !sum16(&seg[l4..]);
            write16(&mut seg, l4 + 16, sum);
            assert_eq!(&seg, want, "v6 {v6} segment {i}");
        }
    }
    let mut cwr = frame(false, 1, 2, ACK | CWR, &[1u8; 3000]);
    let s = Segments::new(&cwr, 1448, 1500).unwrap();
    assert!(s.for_device(&mut cwr).cwr);
}
