//! libclient's accept queue: a listener takes connections ahead of the
//! application (so an accept loop waits for the service only when nothing
//! is queued), never more than its queue holds, and when it goes it closes
//! those not taken and frees its port.

use capnet_tests::{cli_ok, status_counter, two_hosts, Scratch};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connections made before the application accepts any.
const CLIENTS: usize = 12;
/// libclient's queue of connections accepted ahead (`accept.rs`).
const QUEUED: u64 = 8;
/// What any single wait may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(5);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn connections_accepted_ahead_are_bounded_and_closed_with_the_listener() {
    let scratch = Scratch::new("accept-queue");
    let (a, b) = two_hosts(&scratch, "");
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let listener = nb.tcp_listen(addr("0.0.0.0:7300"), 16).unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = na.tcp_connect(addr("10.0.0.2:7300"), None).unwrap();
            (&c).write_all(&[i as u8]).unwrap();
            c.set_read_timeout(Some(PATIENCE)).unwrap();
            c
        })
        .collect();

    let (first, _) = listener.accept().unwrap();
    // Behind the connection taken, the pump fills the queue and stops.
    let accepts = || status_counter(&cli_ok(&b, &["status"]), "accepts");
    let deadline = Instant::now() + PATIENCE;
    while accepts() < 1 + QUEUED && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        accepts(),
        1 + QUEUED,
        "the service handed out the connection taken and a full queue, no more"
    );

    let mut which = [0u8];
    (&first).read_exact(&mut which).unwrap();
    let taken = which[0] as usize;
    drop(listener);

    // Every other client's connection ends, queued or still in the
    // service's backlog; none is left waiting.
    for (i, c) in clients.iter().enumerate().filter(|(i, _)| *i != taken) {
        let r = (&*c).read(&mut [0u8; 1]);
        assert!(
            matches!(&r, Ok(0))
                || r.as_ref().is_err_and(|e| !matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut
                )),
            "client {i}: {r:?}"
        );
    }
    // The connection taken lives on without its listener.
    (&first).write_all(b"still here").unwrap();
    let mut got = [0u8; 10];
    (&clients[taken]).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still here");
    // And the port is free at once.
    nb.tcp_listen(addr("0.0.0.0:7300"), 16).unwrap();
}
