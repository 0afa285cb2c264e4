//! Socket ring sets are taken up again: a connection's rings, once its
//! client let go of it and the stack is done with it, serve that client's
//! next connection — empty and open, byte-exact — and never another
//! client's.

use capnet::host::Host;
use capnet_tests::{cli_ok, status_counter, two_hosts, Scratch};
use std::io::{Read, Write};
use std::net::SocketAddr;
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

/// (made, reused) on `host`.
fn ring_sets(host: &Host) -> (u64, u64) {
    let status = cli_ok(host, &["status"]);
    (
        status_counter(&status, "made"),
        status_counter(&status, "reused"),
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
        let (made, reused) = ring_sets(host);
        assert_eq!(
            made + reused,
            ROUNDS as u64,
            "{name}: one set per connection"
        );
        assert!(
            reused >= ROUNDS as u64 / 2,
            "{name}: {made} sets made, only {reused} taken up again"
        );
    }

    // Another client of host a gets sets of its own, however many idle
    // ones the first client left.
    let (made_before, _) = ring_sets(&a);
    let other = a.net().unwrap();
    let listener = nb.tcp_listen(addr("0.0.0.0:7401"), 4).unwrap();
    let c = other.tcp_connect(addr("10.0.0.2:7401"), None).unwrap();
    let (s, _) = listener.accept().unwrap();
    (&c).write_all(b"fresh").unwrap();
    let mut got = [0u8; 5];
    (&s).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fresh");
    let (made_after, _) = ring_sets(&a);
    assert_eq!(
        made_after,
        made_before + 1,
        "a set was shared across clients"
    );
}
