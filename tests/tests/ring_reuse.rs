//! Socket ring sets are taken up again: a connection's rings, once its
//! client let go of it and the stack is done with it, serve that client's
//! next connection — empty and open, byte-exact — and never another
//! client's; what a hostile client does to a set it released reaches no
//! further than that.

use capnet::host::Host;
use capnet_ring::handoff::{self, Token};
use capnet_ring::SocketRings;
use capnet_schema::net_capnp::{net, tcp_socket};
use capnet_tests::{cli_ok, raw_net, scribble, status_counter, two_hosts, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Connections, one after another.
const ROUNDS: usize = 24;
/// Bytes each way per connection: several ring wraps' worth would need
/// more, but enough that a ring left with stale indices shows.
const BYTES: usize = 100_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A payload no other round sends.
fn payload(round: usize, from_client: bool) -> Vec<u8> {
    let seed = (round as u32) * 2 + from_client as u32;
    (0..BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as u8)
        .collect()
}

/// (made, reused, of those still mapped by the client) on `host`.
fn ring_sets(host: &Host) -> (u64, u64, u64) {
    let status = cli_ok(host, &["status"]);
    (
        status_counter(&status, "made"),
        status_counter(&status, "reused"),
        status_counter(&status, "still-mapped"),
    )
}

#[test]
fn ring_sets_serve_their_clients_next_connections_and_nobody_elses() {
    let scratch = Scratch::new("ring-reuse");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7400"), 16).unwrap();
    let server = std::thread::spawn(move || {
        for round in 0..ROUNDS {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = vec![0u8; BYTES];
            (&s).read_exact(&mut got).unwrap();
            assert!(
                got == payload(round, true),
                "round {round}: server read other bytes"
            );
            (&s).write_all(&payload(round, false)).unwrap();
            // The client closes first; then this end.
            assert_eq!((&s).read(&mut [0u8; 1]).unwrap(), 0, "round {round}");
        }
    });
    for round in 0..ROUNDS {
        let c = na.tcp_connect(addr("10.0.0.2:7400"), None).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // A stream whose descriptor the application saw gets a bell of its
        // own next time; the others pass theirs on.
        if round % 3 == 1 {
            assert!(c.as_raw_fd() >= 0);
        }
        (&c).write_all(&payload(round, true)).unwrap();
        let mut got = vec![0u8; BYTES];
        (&c).read_exact(&mut got).unwrap();
        assert!(
            got == payload(round, false),
            "round {round}: client read other bytes"
        );
        drop(c);
        // Let the close finish, so the set is free for the next round.
        std::thread::sleep(Duration::from_millis(50));
    }
    server.join().unwrap();

    for (name, host) in [("client", &a), ("server", &b)] {
        let (made, reused, mapped) = ring_sets(host);
        assert_eq!(
            made + reused,
            ROUNDS as u64,
            "{name}: one set per connection"
        );
        assert!(
            reused >= ROUNDS as u64 / 2,
            "{name}: {made} sets made, only {reused} taken up again"
        );
        assert!(mapped <= reused, "{name}");
    }
    // The connecting side asks for its rings after the last connection
    // released its set: it gets that set back over the mapping it kept.
    let (_, reused, mapped) = ring_sets(&a);
    assert!(
        mapped >= reused / 2,
        "client: of {reused} sets taken up again only {mapped} without a new mapping"
    );

    // Another client of host a gets sets of its own, however many idle
    // ones the first client left.
    let (made_before, ..) = ring_sets(&a);
    let other = a.net().unwrap();
    let listener = nb.tcp_listen(addr("0.0.0.0:7401"), 4).unwrap();
    let c = other.tcp_connect(addr("10.0.0.2:7401"), None).unwrap();
    let (s, _) = listener.accept().unwrap();
    (&c).write_all(b"fresh").unwrap();
    let mut got = [0u8; 5];
    (&s).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fresh");
    let (made_after, ..) = ring_sets(&a);
    assert_eq!(
        made_after,
        made_before + 1,
        "a set was shared across clients"
    );
}

/// What a raw capnp client's `openRings` brought.
struct Raw {
    sock: tcp_socket::Client,
    /// `[region, ring_server, wait_client]`, unless the set was one it
    /// named as held.
    fds: Option<Vec<OwnedFd>>,
    ring_bytes: u32,
    set: u64,
    gone: Vec<u64>,
}

/// A raw capnp client's connect to `to` and `openRings` naming `held`,
/// with a grant redeemed on `handoff`.
async fn raw_rings(
    net: &net::Client,
    handoff: &UnixStream,
    to: SocketAddr,
    held: &[u64],
) -> Result<Raw, capnp::Error> {
    let mut req = net.tcp_connect_request();
    let mut ra = req.get().init_remote();
    ra.set_ip(&[10, 0, 0, 2]);
    ra.set_port(to.port());
    let resp = req.send().promise.await?;
    let sock = resp.get()?.get_socket()?;
    let mut req = sock.open_rings_request();
    let mut list = req.get().init_held(held.len() as u32);
    for (i, id) in held.iter().enumerate() {
        list.set(i as u32, *id);
    }
    let g = req.send().promise.await?;
    let r = g.get()?;
    let (grant, set) = (r.get_grant()?, r.get_set()?);
    assert_eq!(
        set.get_reused(),
        grant.get_token()?.is_empty(),
        "a token with a held set, or none with a new one"
    );
    let fds = match set.get_reused() {
        true => None,
        false => {
            let token = Token::from_slice(grant.get_token()?).unwrap();
            Some(handoff::redeem(handoff.as_fd(), &token, 3).unwrap())
        }
    };
    Ok(Raw {
        sock,
        fds,
        ring_bytes: grant.get_ring_bytes(),
        set: set.get_id(),
        gone: set.get_gone()?.iter().collect(),
    })
}

/// What the peer sends on the second connection.
const SENT: [u8; 4096] = [7; 4096];

#[test]
fn what_a_client_does_to_a_set_it_released_does_not_reach_its_next_connection() {
    let scratch = Scratch::new("ring-reuse-hostile");
    let (a, b) = two_hosts(&scratch, "");
    let nb = b.net().unwrap();
    let listener = nb.tcp_listen(addr("0.0.0.0:7402"), 4).unwrap();
    // The peer closes each of the first two connections once the client
    // has; it sends on the second; it keeps the third, and the listener
    // (the fourth waits in its queue).
    let peer = std::thread::spawn(move || {
        for round in 0..2 {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if round == 1 {
                (&s).write_all(&SENT).unwrap();
            }
            assert_eq!((&s).read(&mut [0u8; 1]).unwrap(), 0, "round {round}");
        }
        (listener.accept().unwrap().0, listener)
    });
    let (made, reused, mapped) = ring_sets(&a);
    let socket = a.socket.clone();
    let to = addr("10.0.0.2:7402");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    tokio::task::LocalSet::new().block_on(&rt, async {
        let (net, handoff) = raw_net(&socket);

        // Released and closed: its set goes to this client's pool. The
        // client keeps its mapping, then writes garbage over all of it,
        // indices and flags included.
        let first = raw_rings(&net, &handoff, to, &[]).await.unwrap();
        let fds = first.fds.unwrap();
        let region = fds[0].try_clone().unwrap();
        let mut kept = SocketRings::attach(fds, first.ring_bytes).unwrap();
        drop(first.sock);
        settle().await;
        scribble(&region, |_| 0xff);

        // Named as held, it comes back without descriptors, reset: over
        // the old mapping the peer's bytes arrive whole in a good ring,
        // where netsrv would otherwise end the socket for broken indices.
        let second = raw_rings(&net, &handoff, to, &[first.set, 999])
            .await
            .unwrap();
        assert!(second.fds.is_none() && second.set == first.set);
        assert_eq!(second.gone, [999], "a set it never had is gone");
        let (_up, mut down) = kept.mapping.rings().unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            let mut buf = [0u8; 4096];
            let n = down.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if got.len() >= SENT.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(got == SENT, "{} bytes, not the peer's", got.len());
        assert_eq!(
            ring_sets(&a),
            (made + 1, reused + 1, mapped + 1),
            "the set was not taken up over the kept mapping"
        );
        let status = cli_ok(&a, &["status"]);
        assert_eq!(status_counter(&status, "bad-ring-indices"), 0, "{status}");

        // A wait end its client shut down would stay readable for ever:
        // that set is not reused, the next connection gets a new one, and
        // the client hears that the old one is gone.
        // SAFETY: shutdown(2) on a socket fd we hold.
        let shut = unsafe { libc::shutdown(kept.wake_me.as_fd().as_raw_fd(), libc::SHUT_RDWR) };
        assert_eq!(shut, 0);
        down.close();
        kept.up.close();
        kept.wake_peer.ring();
        drop(second.sock);
        settle().await;
        let third = raw_rings(&net, &handoff, to, &[first.set]).await.unwrap();
        assert!(third.fds.is_some() && third.set != first.set);
        assert_eq!(third.gone, [first.set]);
        assert_eq!(
            ring_sets(&a),
            (made + 2, reused + 1, mapped + 1),
            "a broken set was reused"
        );

        // Naming more sets than any client keeps is refused with `limit`.
        let many: Vec<u64> = (1..=65).collect();
        let err = raw_rings(&net, &handoff, to, &many).await.err().unwrap();
        assert!(
            err.to_string().contains("limit") && err.to_string().contains("65 held"),
            "{err}"
        );
        kept.down.close();
        drop(third.sock);
    });
    drop(peer.join().unwrap());
}

/// An application that registered a stream's descriptor in its own epoll
/// and then dropped the stream must not hear of the next stream that takes
/// up the same ring set: that stream gets a doorbell epoll of its own.
#[test]
fn a_stream_whose_descriptor_was_seen_hands_no_registration_to_the_next() {
    let scratch = Scratch::new("ring-reuse-epoll");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7403"), 4).unwrap();

    let first = na.tcp_connect(addr("10.0.0.2:7403"), None).unwrap();
    let (peer, _) = listener.accept().unwrap();
    // SAFETY: plain syscalls on fds this test owns; the event is a local.
    let app_epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(app_epoll >= 0);
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 1,
    };
    // SAFETY: as above.
    let added =
        unsafe { libc::epoll_ctl(app_epoll, libc::EPOLL_CTL_ADD, first.as_raw_fd(), &mut ev) };
    assert_eq!(added, 0);
    drop(first);
    drop(peer);
    std::thread::sleep(Duration::from_millis(100));

    let (_, _, mapped) = ring_sets(&a);
    let second = na.tcp_connect(addr("10.0.0.2:7403"), None).unwrap();
    let (peer, _) = listener.accept().unwrap();
    assert_eq!(
        ring_sets(&a).2,
        mapped + 1,
        "the set did not come back mapped"
    );
    // A read that finds nothing asks netsrv for a wakeup; the peer's byte
    // then rings the second stream's doorbell, which nobody drains.
    second.set_nonblocking(true).unwrap();
    let err = (&second).read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    (&peer).write_all(b"x").unwrap();
    let mut pfd = libc::pollfd {
        fd: second.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "no wakeup");
    let mut out = [libc::epoll_event { events: 0, u64: 0 }];
    // SAFETY: one event slot, no waiting.
    let n = unsafe { libc::epoll_wait(app_epoll, out.as_mut_ptr(), 1, 0) };
    assert_eq!(n, 0, "the first stream's registration heard the second");
    // SAFETY: closing our own epoll fd.
    unsafe { libc::close(app_epoll) };
}
