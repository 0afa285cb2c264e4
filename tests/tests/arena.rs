//! Socket arenas from a raw client: the arena's descriptors come once,
//! later sockets get slots without any; bytes move both ways through a
//! slot; and a client that lists a slot outside its arena is counted and
//! no longer heard, while netsrv serves everybody else.

use capnet_ring::arena::{ArenaLayout, ClientArena, UP_LIST};
use capnet_ring::handoff::{self, Token};
use capnet_ring::{Desc, Doorbell, End, Producer, SharedRegion};
use capnet_schema::net_capnp::{net, tcp_socket};
use capnet_tests::{cli_ok, raw_net, status_counter, two_hosts, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Slot {
    _sock: tcp_socket::Client,
    slot: u32,
    layout: ArenaLayout,
    fds: Option<Vec<OwnedFd>>,
}

/// A raw client's connect to 10.0.0.2:`port` and `openRings` for an arena
/// slot.
async fn arena_slot(
    net: &net::Client,
    handoff: &UnixStream,
    port: u16,
    mapped: bool,
) -> Result<Slot, capnp::Error> {
    let mut req = net.tcp_connect_request();
    let mut ra = req.get().init_remote();
    ra.set_ip(&[10, 0, 0, 2]);
    ra.set_port(port);
    let resp = req.send().promise.await?;
    let sock = resp.get()?.get_socket()?;
    let mut req = sock.open_rings_request();
    req.get().set_arena(true);
    req.get().set_arena_mapped(mapped);
    let g = req.send().promise.await?;
    let r = g.get()?;
    let (grant, set) = (r.get_grant()?, r.get_set()?);
    assert!(set.get_in_arena());
    let layout = ArenaLayout::new(set.get_arena_slots(), grant.get_ring_bytes()).unwrap();
    assert_eq!(grant.get_region_bytes(), layout.bytes() as u64);
    let fds = match grant.get_token()?.is_empty() {
        true => None,
        false => {
            let token = Token::from_slice(grant.get_token()?).unwrap();
            Some(handoff::redeem(handoff.as_fd(), &token, 3).unwrap())
        }
    };
    Ok(Slot {
        _sock: sock,
        slot: set.get_arena_slot(),
        layout,
        fds,
    })
}

fn bad_ring_indices(host: &capnet::host::Host) -> u64 {
    status_counter(&cli_ok(host, &["status"]), "bad-ring-indices")
}

#[test]
fn an_arena_serves_its_client_and_a_client_that_breaks_it_hurts_only_itself() {
    let scratch = Scratch::new("arena");
    let (a, b) = two_hosts(&scratch, "\n[limits]\nsockets = 64\n");
    let nb = b.net().unwrap();
    let listener = nb.tcp_listen("0.0.0.0:7500".parse().unwrap(), 8).unwrap();
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = [0u8; 5];
        (&s).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        (&s).write_all(b"world").unwrap();
        let second = listener.accept().unwrap();
        (s, second, listener)
    });
    let socket = a.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let (net, handoff) = raw_net(&socket);

        // The first slot brings the arena, sized by the client's socket
        // limit; the second comes without descriptors.
        let first = arena_slot(&net, &handoff, 7500, false).await.unwrap();
        assert_eq!(first.layout.slots, 64);
        let fds = first.fds.unwrap();
        let region_fd = fds[0].try_clone().unwrap();
        let bell = Doorbell::from_peer_fd(fds[1].try_clone().unwrap(), End::Ring).unwrap();
        let mut arena = ClientArena::attach(fds, first.layout).unwrap();
        let second = arena_slot(&net, &handoff, 7500, true).await.unwrap();
        assert!(second.fds.is_none());
        assert_ne!(second.slot, first.slot);

        // Bytes both ways through the first slot.
        let (mapping, waker) = arena.slot(first.slot).unwrap();
        let (mut up, mut down) = mapping.rings().unwrap();
        down.request_signal();
        assert_eq!(up.write(b"hello").unwrap(), 5);
        waker.ring();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < 5 {
            assert!(Instant::now() < deadline, "no answer through the arena");
            let mut buf = [0u8; 16];
            let n = down.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert_eq!(got, b"world");
        assert_eq!(arena.down.take().unwrap(), Some(first.slot), "listed");

        // A slot number outside the arena on the up list.
        let before = bad_ring_indices(&a);
        let region = Arc::new(SharedRegion::from_fd(region_fd, first.layout.bytes()).unwrap());
        let mut raw =
            Producer::attach(region, UP_LIST, first.layout.slots.next_power_of_two()).unwrap();
        // A producer of its own starts at the list's start, where the
        // client's listing of "hello" already went: its second entry is
        // news (rung for on the doorbell itself: the client's own list
        // would write over it).
        for _ in 0..2 {
            raw.enqueue(Desc {
                offset: 9999,
                len: 0,
                flags: 0,
                context: 0,
            })
            .unwrap();
        }
        bell.ring();
        let deadline = Instant::now() + Duration::from_secs(10);
        while bad_ring_indices(&a) == before {
            assert!(Instant::now() < deadline, "the broken list was not counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // netsrv lives and serves another client.
    let (s, second, listener) = peer.join().unwrap();
    drop((s, second));
    let na = a.net().unwrap();
    let mut c = na
        .tcp_connect("10.0.0.2:7500".parse::<SocketAddr>().unwrap(), None)
        .unwrap();
    let (mut t, _) = listener.accept().unwrap();
    c.write_all(b"still").unwrap();
    let mut got = [0u8; 5];
    t.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still");
}
