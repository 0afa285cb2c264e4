//! libclient's offload contexts and egress subscriptions, against the fake
//! netsrv (`fake_netsrv`): a context's info and events on its fd, resyncs,
//! `offloadStop` and `sendUnacked`; how it ends (revoked, released, the
//! driver or the service gone); refused offloads; and the egress watcher's
//! changes on a subscription fd.

mod fake_netsrv;

use capnet_schema::offload_capnp::OffloadKind as WireKind;
use fake_netsrv::client::{connect, data, eventually, params, read_marked_exact, Waiter};
use fake_netsrv::{addr, Cmd, FakeNetsrv, LOCAL, REMOTE, SEQ_BASE, UNSUPPORTED_SEQ};
use libclient::{OffloadEvent, OffloadKind};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn events_wake_the_fd_and_revocation_ends_the_context() {
    let fake = FakeNetsrv::start();
    let (_net, mut s) = connect(&fake);
    s.write_all(&data(4, 5000)).unwrap();
    assert_eq!(s.write_offset(), 5000);
    let ctx = s
        .offload_tls(OffloadKind::TlsTx, &params(3), s.write_offset())
        .unwrap();
    // TX leaves the receive side alone.
    assert_eq!(s.marked_chunks_from(), None);
    let info = ctx.initial_info();
    assert_eq!(info.id, 7);
    assert_eq!(info.port, "sim0");
    assert_eq!(info.driver_epoch, 2);
    assert_eq!(info.kind, OffloadKind::TlsTx);
    assert_eq!(info.local, Some(addr(LOCAL)));
    assert_eq!(info.remote, Some(addr(REMOTE)));
    assert_eq!(info.state, "active");
    assert_eq!(ctx.tcp_seq(), SEQ_BASE.wrapping_add(5000));
    assert_eq!(
        ctx.stream_offset_of(SEQ_BASE.wrapping_add(5100), 5000),
        5100
    );

    // A resync request: the fd turns readable, the event is queued.
    assert_eq!(ctx.try_event(), None);
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    assert!(
        !waiter.wait(Duration::from_millis(20)),
        "readable too early"
    );
    fake.command(Cmd::ResyncRequest(0x1234));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    assert_eq!(
        ctx.try_event(),
        Some(OffloadEvent::ResyncRequest { tcp_seq: 0x1234 })
    );
    assert_eq!(ctx.try_event(), None);
    assert!(!waiter.wait(Duration::from_millis(20)), "still readable");

    // From another thread than the connection's.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ctx.resync(0x1234, 9).unwrap();
                ctx.resync_reject(0x2000).unwrap();
            })
            .join()
            .unwrap();
    });
    assert_eq!(*fake.seen().resyncs.lock().unwrap(), vec![(0x1234, 9)]);
    assert_eq!(*fake.seen().rejects.lock().unwrap(), vec![0x2000]);
    let e = ctx.resync(0, 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let info = ctx.info().unwrap();
    assert_eq!((info.resyncs, info.resync_requests), (1, 3));
    assert_eq!((info.records, info.bytes), (100, 1_600_000));
    assert_eq!((info.auth_failures, info.dropped), (1, 2));

    // offloadStop and sendUnacked, with their arguments.
    eventually("the pump to read the send ring", || {
        fake.pump(|p| p.bytes_up == 5000)
    });
    assert_eq!(s.send_unacked().unwrap(), 4990);
    s.offload_stop(OffloadKind::TlsTx, 4990, b"sealed again")
        .unwrap();
    assert_eq!(
        *fake.seen().stops.lock().unwrap(),
        vec![(WireKind::TlsTx, 4990, b"sealed again".to_vec())]
    );

    // Revocation: an event, then every call answers NotConnected.
    fake.command(Cmd::Revoke("port sim0 is going away".into()));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    assert_eq!(
        ctx.try_event(),
        Some(OffloadEvent::Revoked {
            reason: "port sim0 is going away".into()
        })
    );
    assert!(ctx.is_revoked());
    for e in [
        ctx.resync(1, 1).unwrap_err(),
        ctx.resync_reject(1).unwrap_err(),
        ctx.release().unwrap_err(),
    ] {
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
        assert!(e.to_string().contains("revoked"), "{e}");
    }
    assert_eq!(ctx.info().unwrap().state, "revoked");
    // The callbacks going away after a revocation add nothing.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ctx.try_event(), None);

    // Dropping the context drops the capability.
    drop(ctx);
    eventually("the context to be dropped", || {
        fake.seen().contexts_dropped.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn release_then_drop() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    s.offload_stop(OffloadKind::TlsRx, 0, &[]).unwrap();
    ctx.release().unwrap();
    assert_eq!(fake.seen().releases.load(Ordering::Relaxed), 1);
    let e = ctx.resync(5, 5).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    // A released context's callbacks going away is no revocation.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ctx.try_event(), None);
    assert!(!ctx.is_revoked());
    drop(ctx);
    eventually("the context to be dropped", || {
        fake.seen().contexts_dropped.load(Ordering::Relaxed) == 1
    });
    // The receive side stays in chunk mode.
    fake.feed(b"after", false);
    assert_eq!(read_marked_exact(&s, 5, 16).0, b"after");
}

#[test]
fn a_dead_driver_counts_as_revocation() {
    let fake = FakeNetsrv::start();
    let (net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsRx, &params(1), 0).unwrap();
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    fake.command(Cmd::DriverDies);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    ctx.clear_wakeup();
    match ctx.try_event() {
        Some(OffloadEvent::Revoked { reason }) => {
            assert!(reason.contains("went away"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(ctx.is_revoked());
    let e = ctx.info().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    // The connection itself is fine.
    assert!(net.is_connected());
    fake.feed(b"still here", false);
    assert_eq!(read_marked_exact(&s, 10, 16).0, b"still here");
}

#[test]
fn refused_offloads_change_nothing() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    fake.feed(b"before", false);
    let e = s
        .offload_tls(OffloadKind::TlsRx, &params(UNSUPPORTED_SEQ), 0)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert_eq!(s.marked_chunks_from(), None);
    fake.feed(b" after", false);
    assert_eq!(
        read_marked_exact(&s, 12, 64),
        (b"before after".to_vec(), vec![false; 12])
    );

    // Bad parameters never leave the process.
    let mut bad = params(1);
    bad.key = vec![1; 32];
    let e = s.offload_tls(OffloadKind::TlsTx, &bad, 0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(fake.seen().offloads.lock().unwrap().len(), 1);
    // Nor does the key through Debug.
    assert!(!format!("{bad:?}").contains("1, 1"));
}

#[test]
fn the_service_going_away_resets_offload_calls() {
    let fake = FakeNetsrv::start();
    let (net, s) = connect(&fake);
    let ctx = s.offload_tls(OffloadKind::TlsTx, &params(1), 0).unwrap();
    let mut waiter = Waiter::on(ctx.as_raw_fd());
    drop(fake);
    eventually("the connection to notice", || !net.is_connected());
    // The context went with it: an event, and ConnectionReset for calls.
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    assert!(matches!(
        ctx.try_event(),
        Some(OffloadEvent::Revoked { .. })
    ));
    assert_eq!(
        ctx.info().unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        s.send_unacked().unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        s.offload_tls(OffloadKind::TlsRx, &params(1), 0)
            .unwrap_err()
            .kind(),
        io::ErrorKind::ConnectionReset
    );
}

#[test]
fn egress_subscription_fd() {
    let fake = FakeNetsrv::start();
    let (_net, s) = connect(&fake);
    let egress = s.egress().unwrap();
    let sub = egress.subscribe().unwrap();
    let mut waiter = Waiter::on(sub.as_raw_fd());
    assert!(
        !waiter.wait(Duration::from_millis(20)),
        "readable too early"
    );
    fake.command(Cmd::EgressChange("sim1"));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    sub.clear_wakeup();
    let info = sub.try_recv().expect("a change");
    assert_eq!(info.port.as_deref(), Some("sim1"));
    assert_eq!(info.reason, libclient::EgressReason::Failover);
    assert_eq!(sub.try_recv(), None);
    assert!(!sub.ended());

    // Two changes, one wakeup drain, both there.
    fake.command(Cmd::EgressChange("sim0"));
    fake.command(Cmd::EgressChange("sim1"));
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup");
    let mut ports = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while ports.len() < 2 && Instant::now() < until {
        sub.clear_wakeup();
        while let Some(i) = sub.try_recv() {
            ports.push(i.port.unwrap());
        }
        if ports.len() < 2 {
            waiter.wait(Duration::from_millis(100));
        }
    }
    assert_eq!(ports, ["sim0", "sim1"]);

    // netsrv ends the subscription: readable, and ended.
    fake.command(Cmd::EndSubscription);
    assert!(waiter.wait(Duration::from_secs(5)), "no wakeup at the end");
    eventually("the end", || sub.ended());
    // The blocking API is still there.
    assert!(sub.recv().is_err());
    assert_eq!(sub.recv_timeout(Duration::from_millis(10)), None);
}
