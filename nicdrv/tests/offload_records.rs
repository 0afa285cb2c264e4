//! TLS records through TLS offload contexts on real `nicdrv --backend sim`
//! processes. What leaves a TX context's port is checked against records
//! sealed whole by an independent AES-GCM (`offload_support::records`);
//! what an RX context's port hands up is checked against the plaintext.
//! Neither the wire nor a capture ever holds the plaintext.

mod common;
mod offload_support;

use capnet_ring::flags;
use capnet_schema::offload_capnp::OffloadKind;
use offload_support::frames::{contains, payload, tcp_frame, tcp_seq_of, ACK, PSH};
use offload_support::records::{Rec, Tls, SECRET};
use offload_support::{
    assert_dropped, assert_word, ctx_info, linked, local_test, recv, sa, send, tmpdir, wait_heard,
    Heard, Offloads, Proc, Told,
};

#[test]
fn tx_context_seals_what_leaves() {
    let dir = tmpdir("tx");
    let wire = dir.join("wire.sock");
    let pcap = dir.join("a.pcap");
    let mut a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &["--tls-offload", "--pcap", pcap.to_str().unwrap()],
    );
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    let (local, remote) = (sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
    // TLS 1.2 with AES-256, starting just before the wrap of the sequence space.
    let tls = Tls::new(0x0303, 32, u32::MAX - 1500, 5);
    let recs: Vec<Rec> = [(23u8, 100usize), (23, 1000), (21, 2), (23, 600)]
        .iter()
        .enumerate()
        .map(|(i, (ty, len))| tls.record(tls.rec_seq + i as u64, *ty, &Tls::plain(i, *len)))
        .collect();
    let framed: Vec<u8> = recs.iter().flat_map(|r| r.framed.clone()).collect();
    let sealed: Vec<u8> = recs.iter().flat_map(|r| r.sealed.clone()).collect();
    local_test(async {
        let (ca, _cb, mut ra, mut rb) = linked(&a, &b).await;
        let heard = Heard::default();
        let (ctx, id) = ca
            .offload(
                OffloadKind::TlsTx,
                "10.0.0.1:40000",
                "10.0.0.2:443",
                &tls,
                &heard,
            )
            .await
            .unwrap();

        // The framed stream in 700-byte segments; checksums left to the NIC
        // (asked for or not: a sealed frame always gets them).
        let segs: Vec<(u32, std::ops::Range<usize>)> = (0..framed.len())
            .step_by(700)
            .map(|o| {
                (
                    tls.tcp_seq.wrapping_add(o as u32),
                    o..(o + 700).min(framed.len()),
                )
            })
            .collect();
        let tagged = |i: usize| {
            let (seq, r) = &segs[i];
            let csum = if i & 1 == 0 { flags::TX_CSUM } else { 0 };
            (
                tcp_frame(local, remote, *seq, 1, ACK | PSH, &framed[r.clone()], false),
                flags::OFFLOAD_TX | csum,
                id,
            )
        };
        let frames: Vec<_> = (0..segs.len()).map(tagged).collect();
        send(&mut ra, &frames).await;
        let got = recv(&mut rb, segs.len()).await;
        for (i, g) in got.iter().enumerate() {
            assert_eq!(
                g.flags,
                flags::CSUM_VERIFIED,
                "segment {i}: checksums filled"
            );
            assert_eq!(tcp_seq_of(&g.frame), segs[i].0);
            assert_eq!(
                payload(&g.frame),
                &sealed[segs[i].1.clone()],
                "segment {i} sealed"
            );
        }
        // A retransmission leaves byte-identical.
        send(&mut ra, &frames[1..2]).await;
        let again = recv(&mut rb, 1).await;
        assert_eq!(again[0].frame, got[1].frame);

        // A segment beyond what was sent (a gap): dropped and counted.
        let end = tls.tcp_seq.wrapping_add(framed.len() as u32);
        let next = tls.record(tls.rec_seq + 4, 23, &Tls::plain(4, 50));
        let gap = tcp_frame(
            local,
            remote,
            end.wrapping_add(10),
            1,
            ACK,
            &next.framed,
            true,
        );
        assert_dropped(&mut ra, &mut rb, &[(gap.clone(), flags::OFFLOAD_TX, id)], 1).await;
        // A tagged frame naming no context: dropped.
        assert_dropped(
            &mut ra,
            &mut rb,
            &[(gap.clone(), flags::OFFLOAD_TX, id + 100)],
            2,
        )
        .await;
        // A frame of another flow naming the context: dropped.
        let other = tcp_frame(local, sa("10.0.0.2:444"), end, 1, ACK, &next.framed, true);
        assert_dropped(&mut ra, &mut rb, &[(other, flags::OFFLOAD_TX, id)], 3).await;
        // A pure ACK has nothing to seal: it leaves, whatever it names.
        let pure = tcp_frame(local, remote, end, 1, ACK, b"", false);
        send(
            &mut ra,
            &[(pure.clone(), flags::OFFLOAD_TX | flags::TX_CSUM, id + 100)],
        )
        .await;
        let p = recv(&mut rb, 1).await;
        assert_eq!(p[0].flags, flags::CSUM_VERIFIED);
        assert_eq!(payload(&p[0].frame), b"");
        // The next record, in order, is sealed.
        let in_order = tcp_frame(local, remote, end, 1, ACK | PSH, &next.framed, false);
        send(&mut ra, &[(in_order, flags::OFFLOAD_TX, id)]).await;
        assert_eq!(payload(&recv(&mut rb, 1).await[0].frame), &next.sealed[..]);

        let s = ca.counters().await;
        let k = s.offload.get(OffloadKind::TlsTx);
        assert_eq!((k.records, s.offload_tx_dropped), (5, 3));
        let total = (framed.len() + next.framed.len()) as u64;
        // records, bytes, -, -, -, dropped (the unknown id is nobody's).
        assert_eq!(ctx_info(&ctx).await.unwrap(), [5, total, 0, 0, 0, 2]);

        // The peer acknowledges everything: the records are forgotten, and
        // a late retransmission of them can no longer leave.
        let acked = tcp_frame(
            remote,
            local,
            1,
            end.wrapping_add(next.framed.len() as u32),
            ACK,
            b"",
            true,
        );
        send(&mut rb, &[(acked.clone(), 0, 0)]).await;
        assert_eq!(recv(&mut ra, 1).await[0].frame, acked);
        assert_dropped(&mut ra, &mut rb, &frames[..1], 4).await;
        assert_eq!(ca.counters().await.offload_tx_dropped, 4);

        ctx.release_request().send().promise.await.unwrap();
        // Frames naming a released context are dropped.
        assert_dropped(&mut ra, &mut rb, &frames[..1], 5).await;
        let s = ca.counters().await;
        assert_eq!((s.offload_released, s.offload_tx_dropped), (1, 5));
        // No plaintext ever reached B.
        let all = [got, again, p].concat();
        assert!(all.iter().all(|g| !contains(&g.frame, SECRET)));
    });
    // Nor A's capture of what it sent (recorded after sealing).
    assert!(a.terminate().success());
    let (_, captured) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
    assert!(captured.len() >= 8, "{} frames captured", captured.len());
    assert!(captured.iter().all(|r| !contains(&r.data, SECRET)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rx_context_opens_records_and_resyncs() {
    let dir = tmpdir("rx");
    let wire = dir.join("wire.sock");
    let pcap = dir.join("a.pcap");
    let mut a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &["--tls-offload", "--pcap", pcap.to_str().unwrap()],
    );
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    let (local, remote) = (sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
    let tls = Tls::new(0x0304, 16, 7000, 0);
    let recs: Vec<Rec> = [300usize, 250, 200, 400, 150, 350]
        .iter()
        .enumerate()
        .map(|(i, len)| tls.record(i as u64, 23, &Tls::plain(i, *len)))
        .collect();
    // Where each record starts in TCP sequence space.
    let mut starts = vec![tls.tcp_seq];
    for r in &recs {
        starts.push(starts.last().unwrap().wrapping_add(r.sealed.len() as u32));
    }
    // The peer's frames (B's stack sends them, checksums by B's NIC).
    let seg = |seq: u32, bytes: &[u8]| {
        (
            tcp_frame(remote, local, seq, 1, ACK | PSH, bytes, false),
            flags::TX_CSUM,
            0u32,
        )
    };
    local_test(async {
        let (ca, _cb, mut ra, mut rb) = linked(&a, &b).await;
        let heard = Heard::default();
        let (ctx, id) = ca
            .offload(
                OffloadKind::TlsRx,
                "10.0.0.1:40000",
                "10.0.0.2:443",
                &tls,
                &heard,
            )
            .await
            .unwrap();
        let decrypted = flags::CSUM_VERIFIED | flags::OFFLOADED;

        // Record 0 in three pieces, record 1 whole: opened and marked.
        let r0 = &recs[0].sealed;
        let frames = vec![
            seg(starts[0], &r0[..100]),
            seg(starts[0] + 100, &r0[100..250]),
            seg(starts[0] + 250, &r0[250..]),
            seg(starts[1], &recs[1].sealed),
        ];
        send(&mut rb, &frames).await;
        let got = recv(&mut ra, 4).await;
        let opened: Vec<u8> = [recs[0].opened.clone(), recs[1].opened.clone()].concat();
        let mut at = 0;
        for g in &got {
            assert_eq!((g.flags, g.context), (decrypted, id), "{g:?}");
            let p = payload(&g.frame);
            assert_eq!(p, &opened[at..at + p.len()]);
            at += p.len();
        }
        assert!(contains(&got[3].frame, SECRET));

        // Record 2 is lost. Record 3 comes up as it came, and the holder is
        // asked whether a record starts where it does.
        send(&mut rb, &[seg(starts[3], &recs[3].sealed)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!((g[0].flags, g[0].context), (flags::CSUM_VERIFIED, 0));
        assert_eq!(payload(&g[0].frame), &recs[3].sealed[..]);
        let told = wait_heard(&heard, |t| matches!(t, Told::ResyncRequest(_))).await;
        assert_eq!(told, Told::ResyncRequest(starts[3]));
        // A position the NIC did not ask about is refused.
        let mut bad = ctx.resync_request();
        bad.get().set_tcp_seq(starts[3] + 1);
        bad.get().set_record_seq(3);
        assert_word(bad.send().promise.await, "invalid");
        let mut req = ctx.resync_request();
        req.get().set_tcp_seq(starts[3]);
        req.get().set_record_seq(3);
        req.send().promise.await.unwrap();

        // A copy of record 4 with a broken checksum passes untouched and
        // does not move the engine: the good record 4 after it is opened.
        let mut broken = tcp_frame(
            remote,
            local,
            starts[4],
            1,
            ACK | PSH,
            &recs[4].sealed,
            true,
        );
        let n = broken.len();
        broken[n - 1] ^= 1;
        send(&mut rb, &[(broken.clone(), 0, 0)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!((g[0].flags, g[0].frame.clone()), (flags::CSUM_BAD, broken));
        send(
            &mut rb,
            &[
                seg(starts[4], &recs[4].sealed),
                seg(starts[5], &recs[5].sealed),
            ],
        )
        .await;
        let got = recv(&mut ra, 2).await;
        for (g, r) in got.iter().zip(&recs[4..]) {
            assert_eq!((g.flags, g.context), (decrypted, id));
            assert_eq!(payload(&g.frame), &r.opened[..]);
        }

        let s = ca.counters().await.offload.get(OffloadKind::TlsRx);
        assert_eq!((s.records, s.resync_requests, s.auth_failures), (4, 1, 0));
        let [records, bytes, requests, resyncs, auth, dropped] = ctx_info(&ctx).await.unwrap();
        assert_eq!((records, requests, resyncs, auth, dropped), (4, 1, 1, 0, 0));
        let marked: usize = [0, 1, 4, 5].iter().map(|i| recs[*i].sealed.len()).sum();
        assert_eq!(bytes, marked as u64);
        // A tampered record fails authentication and comes up untouched.
        let extra = tls.record(6, 23, &Tls::plain(6, 80));
        let mut tampered = extra.sealed.clone();
        tampered[10] ^= 0x40;
        send(&mut rb, &[seg(starts[6], &tampered)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!(g[0].flags, flags::CSUM_VERIFIED);
        assert_eq!(payload(&g[0].frame), &tampered[..]);
        let k = ca.counters().await.offload.get(OffloadKind::TlsRx);
        assert_eq!(k.auth_failures, 1);
        assert_eq!(
            heard.borrow().len(),
            1,
            "one request per candidate: {:?}",
            heard.borrow()
        );
    });
    // The capture holds the frames as they came from the wire (sealed).
    assert!(a.terminate().success());
    let (_, captured) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
    assert!(captured.len() >= 8, "{} frames captured", captured.len());
    assert!(captured.iter().all(|r| !contains(&r.data, SECRET)));
    let _ = std::fs::remove_dir_all(&dir);
}
