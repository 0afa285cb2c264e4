//! TLS offload contexts on real `nicdrv --backend sim` processes, as
//! capabilities: what a port refuses (no feature, bad parameters, a second
//! context for a flow and kind), and how a context ends (release, the
//! capability dropped, the ring session ending, the driver shutting down)
//! and what its holder is told. The harness is in `offload_support`.

mod common;
mod offload_support;

use capnet_schema::offload_capnp::OffloadKind;
use offload_support::records::Tls;
use offload_support::{
    assert_word, ctx_info, is_word, local_test, tmpdir, wait_heard, Conn, Heard, Offloads, Proc,
    Told, WAIT,
};

use std::time::{Duration, Instant};

#[test]
fn offload_refused_without_the_feature_or_with_bad_parameters() {
    let dir = tmpdir("refused");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &["--tls-offload"]);
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, cb) = (Conn::open(&a), Conn::open(&b));
        assert_eq!(ca.offered().await, [OffloadKind::TlsTx, OffloadKind::TlsRx]);
        assert_eq!(cb.offered().await, []);
        let heard = Heard::default();
        let good = Tls::new(0x0304, 16, 1000, 0);
        let (l, r) = ("10.0.0.1:40000", "10.0.0.2:443");
        let tx = OffloadKind::TlsTx;

        // A port without the feature says so for either kind, and a port
        // with TLS for every kind it does not list.
        let _rb = cb.open_rings(&b).await;
        for kind in [OffloadKind::TlsTx, OffloadKind::TlsRx] {
            assert_word(cb.offload(kind, l, r, &good, &heard).await, "unsupported");
        }
        for kind in capnet_schema::offload::KINDS {
            if !matches!(kind, OffloadKind::TlsTx | OffloadKind::TlsRx) {
                let e = assert_word(ca.offload(kind, l, r, &good, &heard).await, "unsupported");
                let name = capnet_schema::offload::kind_name(kind);
                assert!(
                    e.extra.contains(&format!("offers no {name} offload")),
                    "{e}"
                );
            }
        }
        // A context lives in a ring session.
        assert_word(ca.offload(tx, l, r, &good, &heard).await, "busy");
        let _ra = ca.open_rings(&a).await;

        let bad_key = Tls {
            key: vec![1; 15],
            ..good.clone()
        };
        let e = assert_word(ca.offload(tx, l, r, &bad_key, &heard).await, "invalid");
        assert!(e.extra.contains("15 bytes"), "{e}");
        let key_of_other_cipher = Tls {
            key: vec![1; 32],
            ..good.clone()
        };
        assert_word(
            ca.offload(tx, l, r, &key_of_other_cipher, &heard).await,
            "invalid",
        );
        let short_iv = Tls {
            iv: vec![0; 11],
            ..good.clone()
        };
        assert_word(ca.offload(tx, l, r, &short_iv, &heard).await, "invalid");
        let old = Tls {
            version: 0x0302,
            ..good.clone()
        };
        assert_word(ca.offload(tx, l, r, &old, &heard).await, "unsupported");
        assert_word(
            ca.offload(tx, l, "[fd00::2]:443", &good, &heard).await,
            "invalid",
        );
        assert_word(
            ca.offload(tx, "10.0.0.1:0", r, &good, &heard).await,
            "invalid",
        );

        // One context per flow and kind.
        let (c1, id1) = ca.offload(tx, l, r, &good, &heard).await.unwrap();
        assert_word(ca.offload(tx, l, r, &good, &heard).await, "invalid");
        let (_c2, id2) = ca
            .offload(OffloadKind::TlsRx, l, r, &good, &heard)
            .await
            .unwrap();
        let (_c3, id3) = ca
            .offload(tx, l, "10.0.0.2:444", &good, &heard)
            .await
            .unwrap();
        assert!(id1 != 0 && id1 < id2 && id2 < id3, "{id1} {id2} {id3}");
        assert_eq!(
            ca.contexts().await,
            vec![
                (id1, "active".to_string()),
                (id2, "active".to_string()),
                (id3, "active".to_string())
            ]
        );
        let s = ca.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (3, 0));

        // A request whose flow or parameters do not suit its kind.
        let esp_flow = ca
            .offload_request(
                |mut q| {
                    q.set_kind(tx);
                    let mut sa = q.reborrow().init_flow().init_esp();
                    sa.set_local(&[10, 0, 0, 1]);
                    sa.set_remote(&[10, 0, 0, 2]);
                    sa.set_spi(0x100);
                    q.get_params().init_tls();
                },
                &heard,
            )
            .await;
        let e = assert_word(esp_flow, "invalid");
        assert!(e.extra.contains("not an ESP SA"), "{e}");
        for params in ["esp", "nvme", "none"] {
            let r = ca
                .offload_request(
                    |mut q| {
                        q.set_kind(OffloadKind::TlsRx);
                        capnet_schema::offload::write_tcp_flow(
                            q.reborrow().init_flow().init_tcp(),
                            "10.0.0.1:40001".parse().unwrap(),
                            "10.0.0.2:443".parse().unwrap(),
                            0,
                        );
                        match params {
                            "esp" => {
                                q.get_params().init_esp().set_key(&[1; 16]);
                            }
                            "nvme" => {
                                q.get_params().init_nvme_tcp();
                            }
                            _ => {}
                        }
                    },
                    &heard,
                )
                .await;
            // No parameters at all reads as empty TLS parameters.
            let e = assert_word(
                r,
                if params == "none" {
                    "unsupported"
                } else {
                    "invalid"
                },
            );
            assert!(
                e.extra.contains("tlsRx") || params == "none",
                "{params}: {e}"
            );
        }

        // The calls of other kinds on a TLS context: `invalid`, naming both.
        let e = assert_word(c1.grant_sequence_request().send().promise.await, "invalid");
        assert!(
            e.extra.contains("is tlsTx") && e.extra.contains("espPacketTx"),
            "{e}"
        );
        assert_word(c1.set_lifetime_request().send().promise.await, "invalid");
        assert_word(c1.place_buffer_request().send().promise.await, "invalid");
        assert_word(c1.release_buffer_request().send().promise.await, "invalid");
        let mut resync = c1.resync_request();
        resync.get().set_tcp_seq(1);
        let e = assert_word(resync.send().promise.await, "invalid");
        assert!(e.extra.contains("tlsRx"), "{e}");
        assert_eq!(
            ca.counters().await.offload_contexts,
            3,
            "refusals make none"
        );
        assert!(heard.borrow().is_empty());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_contexts(c: &Conn, want: &[(u32, &str)]) {
    let want: Vec<(u32, String)> = want.iter().map(|(i, s)| (*i, s.to_string())).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = c.contexts().await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "contexts {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn context_lifecycle_release_drop_revoke() {
    let dir = tmpdir("life");
    let wire = dir.join("wire.sock");
    let mut a = Proc::spawn(&dir, "a", &wire, &["--tls-offload"]);
    let tls = Tls::new(0x0304, 16, 1, 0);
    let (l, r) = ("10.0.0.1:40000", "10.0.0.2:443");
    let (tx, rx) = (OffloadKind::TlsTx, OffloadKind::TlsRx);
    local_test(async {
        // conn1 is the stack (it holds the ring session); conn2 the holder.
        let c1 = Conn::open(&a);
        let c2 = Conn::open(&a);
        let _rings = c1.open_rings(&a).await;
        let heard = Heard::default();

        // release(): then every call answers `revoked`, once counted.
        let (ctx, id1) = c2.offload(tx, l, r, &tls, &heard).await.unwrap();
        wait_contexts(&c2, &[(id1, "active")]).await;
        let mut req = ctx.resync_request();
        req.get().set_tcp_seq(1);
        assert_word(req.send().promise.await, "invalid"); // not an RX context
        ctx.release_request().send().promise.await.unwrap();
        assert_word(ctx_info(&ctx).await, "revoked");
        assert_word(ctx.release_request().send().promise.await, "revoked");
        assert_word(ctx.resync_reject_request().send().promise.await, "revoked");
        assert!(c2.contexts().await.is_empty());
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (1, 1));
        drop(ctx);

        // Dropping the capability deletes the context.
        let (ctx, id2) = c2.offload(rx, l, r, &tls, &heard).await.unwrap();
        assert!(id2 > id1);
        wait_contexts(&c2, &[(id2, "active")]).await;
        drop(ctx);
        wait_contexts(&c2, &[]).await;
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (2, 2));
        // The same flow and kind can have a context again.
        let (ctx, id3) = c2.offload(rx, l, r, &tls, &heard).await.unwrap();
        assert!(id3 > id2, "ids are never reused");

        // The ring session ends (the stack's connection closes): the driver
        // revokes the context and tells the holder once.
        c1.close();
        let told = wait_heard(&heard, |t| matches!(t, Told::Revoked(_))).await;
        assert_eq!(
            told,
            Told::Revoked("the ring session with the stack ended".into())
        );
        let e = assert_word(ctx_info(&ctx).await, "revoked");
        assert!(e.extra.contains("ring session"), "{e}");
        assert_word(ctx.release_request().send().promise.await, "revoked");
        // Listed as revoked until the holder lets go; deleted once.
        wait_contexts(&c2, &[(id3, "revoked")]).await;
        assert_eq!(c2.counters().await.offload_released, 3);
        drop(ctx);
        wait_contexts(&c2, &[]).await;
        assert_eq!(c2.counters().await.offload_released, 3);
        assert_eq!(heard.borrow().len(), 1, "{:?}", heard.borrow());

        // A bad descriptor ends the session: revoked too.
        let (rings, region) = loop {
            match c2.try_open_rings(&a).await {
                Ok(x) => break x,
                Err(e) => assert!(is_word(&e, "busy"), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let heard2 = Heard::default();
        let (ctx4, id4) = c2.offload(tx, l, r, &tls, &heard2).await.unwrap();
        common::frames::corrupt_stack_tx_queue(&region, &rings);
        rings.wake_peer.ring();
        let told = wait_heard(&heard2, |t| matches!(t, Told::Revoked(_))).await;
        assert!(
            matches!(&told, Told::Revoked(w) if w.contains("bad descriptor")),
            "{told:?}"
        );
        wait_contexts(&c2, &[(id4, "revoked")]).await;
        drop(ctx4);
        wait_contexts(&c2, &[]).await;

        // The driver shuts down: the holder hears it before it is gone.
        let c3 = Conn::open(&a);
        let _rings = loop {
            match c3.try_open_rings(&a).await {
                Ok(x) => break x,
                Err(e) => assert!(is_word(&e, "busy"), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let heard3 = Heard::default();
        let (_ctx5, _) = c2.offload(tx, l, r, &tls, &heard3).await.unwrap();
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (5, 4));
        a.sigterm();
        let told = wait_heard(&heard3, |t| matches!(t, Told::Revoked(_))).await;
        assert_eq!(told, Told::Revoked("the driver is shutting down".into()));
    });
    let st = a.terminate();
    assert!(st.success(), "{st}");
    let _ = std::fs::remove_dir_all(&dir);
}
