//! Segmentation offload through two `nicdrv --backend sim` processes, this
//! test as both stacks: a merged frame (TSO) leaves as the segments it was
//! merged from and arrives coalesced (GRO); without segmentation each side
//! gets plain frames; a stack's TSO descriptors that cannot be cut are
//! dropped and counted, and the port keeps working; a stack that writes
//! its merged frames while nicdrv cuts them in place changes only their
//! bytes.

use capnet_ring::flags;
use std::time::Duration;

mod common;

use common::conn::{linked, local_test, up};

use common::frames::{recv, send, send_batch, tcp_frame, tso_run, udp_frame, ACK};
use common::{tmpdir, Proc, WAIT};

#[test]
fn a_merged_frame_leaves_as_its_segments_and_arrives_coalesced() {
    // With a capture each segment is cut into private memory, recorded
    // and copied to the wire; without one it is written straight into the
    // wire's buffer. B sees the same either way.
    merged_frame_round_trip(true);
    merged_frame_round_trip(false);
}

fn merged_frame_round_trip(capture: bool) {
    let dir = tmpdir(if capture { "tso-gro-pcap" } else { "tso-gro" });
    let wire = dir.join("wire.sock");
    let pcap = dir.join("a.pcap");
    let args: &[&str] = if capture {
        &["--pcap", pcap.to_str().unwrap()]
    } else {
        &[]
    };
    let mut a = Proc::spawn(&dir, "a", &wire, args);
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    let segments = local_test(async {
        let (ca, cb, mut ra, mut rb) = linked(&a, &b).await;
        assert!(ra.tx.buf_size() as usize >= capnet_wire::gso::MAX_FRAME);
        let (segments, merged) = tso_run(40, 1460);
        send(&mut ra, std::slice::from_ref(&merged)).await;
        // B coalesces what A cut: the same merged frame, checksums verified.
        let got = recv(&mut rb, 1, WAIT).await;
        assert_eq!(got.len(), 1, "one coalesced frame");
        assert_eq!(got[0].0, merged.0, "the merged frame, byte for byte");
        assert_eq!(
            got[0].1,
            flags::with_gso_size(flags::CSUM_VERIFIED | flags::GRO, 1460)
        );
        let (sa, sb) = (ca.counters().await, cb.counters().await);
        assert_eq!((sa.tx_segmented, sa.tx_segments, sa.tx_frames), (1, 40, 40));
        let wire_bytes: usize = segments.iter().map(Vec::len).sum();
        assert_eq!(
            (sa.tx_bytes, sa.tx_checksum_filled),
            (wire_bytes as u64, 40)
        );
        assert_eq!(
            (sb.rx_coalesced, sb.rx_coalesced_segments, sb.rx_frames),
            (1, 40, 40)
        );
        segments
    });
    assert!(a.terminate().success());
    if capture {
        // On the wire (A's capture): the very segments the frame was merged from.
        let (_, captured) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
        let tcp: Vec<&[u8]> = captured
            .iter()
            .map(|r| &r.data[..])
            .filter(|f| f.len() > 60)
            .collect();
        assert_eq!(tcp, segments.iter().map(|s| &s[..]).collect::<Vec<_>>());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_segmentation_frames_stay_plain() {
    let dir = tmpdir("no-tso");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &["--no-segmentation"]);
    let b = Proc::spawn(&dir, "b", &wire, &["--no-segmentation"]);
    local_test(async {
        let (ca, cb, mut ra, mut rb) = linked(&a, &b).await;
        assert_eq!(ra.tx.buf_size(), 1536);
        let (segments, _) = tso_run(3, 1460);
        // The segments go one by one and stay apart.
        let plain: Vec<(Vec<u8>, u32)> = segments
            .iter()
            .map(|s| (s.clone(), flags::TX_CSUM))
            .collect();
        send(&mut ra, &plain).await;
        let got = recv(&mut rb, 3, WAIT).await;
        let frames: Vec<Vec<u8>> = got.iter().map(|g| g.0.clone()).collect();
        assert_eq!(frames, segments);
        assert!(got.iter().all(|g| g.1 == flags::CSUM_VERIFIED));
        let sb = cb.counters().await;
        assert_eq!((sb.rx_coalesced, sb.rx_frames), (0, 3));
        // A merged frame small enough for its buffers is still not cut:
        // dropped and counted, nothing reaches the wire.
        let (_, small) = tso_run(2, 500);
        send(&mut ra, &[small]).await;
        let deadline = std::time::Instant::now() + WAIT;
        while ca.counters().await.tx_segment_errors == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the TSO frame was not counted"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sa = ca.counters().await;
        assert_eq!(
            (sa.tx_segment_errors, sa.tx_segmented, sa.tx_frames),
            (1, 0, 3)
        );
        assert!(recv(&mut rb, 1, Duration::from_millis(100))
            .await
            .is_empty());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tso_frames_that_cannot_be_cut_are_dropped_and_counted() {
    let dir = tmpdir("tso-hostile");
    let wire = dir.join("wire.sock");
    let mut a = Proc::spawn(&dir, "a", &wire, &[]);
    let mut b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, _cb, mut ra, mut rb) = linked(&a, &b).await;
        let (_, (merged, _)) = tso_run(4, 1000);
        let tso = |size: u16| flags::with_gso_size(flags::TSO, size);
        let (src, dst) = (
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        let mut syn = merged.clone();
        syn[14 + 20 + 13] |= 0x02;
        let mut short_ip = merged.clone();
        short_ip[16..18].copy_from_slice(&1000u16.to_be_bytes());
        let bad = vec![
            (merged.clone(), tso(0)),
            (merged.clone(), tso(63)),
            (merged.clone(), tso(1461)),
            (udp_frame(7, true), tso(500)),
            (syn, tso(1000)),
            (short_ip, tso(1000)),
            (tcp_frame(src, dst, 1, 1, ACK, &[], true), tso(1000)),
            (vec![0xff; 80], tso(1000)),
        ];
        send(&mut ra, &bad).await;
        // And the port still works: a good frame after them arrives.
        let good = udp_frame(8, true);
        send(&mut ra, &[(good.clone(), 0)]).await;
        let got = recv(&mut rb, 1, WAIT).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, good);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let s = ca.counters().await;
            if s.tx_segment_errors == bad.len() as u64 {
                assert_eq!(s.tx_segmented, 0);
                assert_eq!(s.bad_descriptors, 0, "a bad frame is not a bad descriptor");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(a.alive() && b.alive(), "a bad TSO frame killed a driver");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stack_writing_merged_frames_while_they_are_cut_changes_only_their_bytes() {
    // A plain merged frame is cut straight from the stack's buffer. The
    // stack here rewrites every buffer of its TX channel while nicdrv cuts
    // (and B takes what arrives): first the payloads, and the segments
    // carry whatever they were cut from with checksums made over the
    // bytes written (B verifies every one); then the headers too, and the
    // frames are anything within their lengths. Every buffer comes back
    // once, and the port keeps working.
    const FRAMES: usize = 128;
    let dir = tmpdir("tso-scribble");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &[]);
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, cb) = up(&a, &b).await;
        let (mut ra, region) = ca.try_open_rings(&a).await.unwrap();
        let mut rb = cb.open_rings(&b).await;
        let (_, merged) = tso_run(40, 1460);
        for from in [64, 0] {
            let scribble = common::frames::StackTxPayloads::map(&region, &ra, from);
            send_batch(&mut ra, &vec![merged.clone(); FRAMES]);
            let (mut fills, mut got) = (0u32, 0);
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                ra.tx.reclaim_returned().unwrap();
                if ra.tx.in_flight() == 0 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "buffers did not come back"
                );
                fills += 1;
                scribble.fill(fills as u8);
                for (frame, f) in recv(&mut rb, 1, Duration::from_millis(1)).await {
                    assert!(from == 0 || f & flags::CSUM_VERIFIED != 0, "flags {f:#x}");
                    got += frame.len() - 54;
                }
            }
            assert!(fills > 0, "written while nicdrv held the frames");
            if from > 0 {
                // B coalesces what arrives within each of its batches: the
                // frames may come up in more pieces than were sent.
                let payload = 40 * 1460 * FRAMES;
                while got < payload {
                    let more = recv(&mut rb, 1, Duration::from_millis(100)).await;
                    assert!(!more.is_empty(), "{got} of {payload} bytes arrived");
                    for (frame, f) in more {
                        assert!(f & flags::CSUM_VERIFIED != 0, "flags {f:#x}");
                        got += frame.len() - 54;
                    }
                }
                assert_eq!(got, payload);
                let (sa, sb) = (ca.counters().await, cb.counters().await);
                assert_eq!(
                    (sa.tx_segmented, sa.tx_segments),
                    (FRAMES as u64, 40 * FRAMES as u64)
                );
                let n = 40 * FRAMES as u64;
                assert_eq!(
                    (
                        sb.rx_frames,
                        sb.rx_checksum_verified,
                        sb.rx_bad_checksum,
                        sb.rx_malformed
                    ),
                    (n, n, 0, 0)
                );
            } else {
                let _ = recv(&mut rb, usize::MAX, Duration::from_millis(100)).await;
            }
        }
        assert_eq!(ca.counters().await.bad_descriptors, 0);
        // Left alone, a merged frame arrives byte for byte.
        send(&mut ra, std::slice::from_ref(&merged)).await;
        let got = recv(&mut rb, 1, WAIT).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, merged.0);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
