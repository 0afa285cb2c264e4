//! Two engines over a simulated wire: every byte arrives once and in
//! order, both ways, with and without loss, reordering and duplication.

mod sim;

use capnet_tcpip::tcp::{Options, State, TcpId};
use sim::{Faults, Link, Net};
use std::time::Duration;

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(7) as u8 ^ salt)
        .collect()
}

/// Moves `a_data` from host 0 to 1 and `b_data` back at once; returns the
/// bytes each side received and the simulated time it took.
fn exchange(
    net: &mut Net,
    a_data: &[u8],
    b_data: &[u8],
    timeout: Duration,
) -> (Vec<u8>, Vec<u8>, Duration) {
    let l = net.listen(1, 7000, Options::default());
    let to = net.addr(1, 7000);
    let a = net.connect(0, to, Options::default());
    let mut b: Option<TcpId> = None;
    let (mut sent_a, mut sent_b) = (0usize, 0usize);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let start = net.now;
    let ok = net.run_until(timeout, |net| {
        if b.is_none() {
            b = net.accept(1, l);
        }
        let now = net.now;
        let s0 = &mut net.hosts[0].stack;
        s0.tcp(now, a, |c| {
            if c.is_established() {
                sent_a += c.write(&a_data[sent_a..]);
                if sent_a == a_data.len() {
                    c.shutdown_write();
                }
            }
            sim::read_all(c, &mut got_a);
        })
        .unwrap();
        if let Some(b) = b {
            let s1 = &mut net.hosts[1].stack;
            s1.tcp(now, b, |c| {
                sent_b += c.write(&b_data[sent_b..]);
                if sent_b == b_data.len() {
                    c.shutdown_write();
                }
                sim::read_all(c, &mut got_b);
            })
            .unwrap();
        }
        net.drain_events(0);
        net.drain_events(1);
        got_a.len() == b_data.len() && got_b.len() == a_data.len()
    });
    let took = net.now - start;
    assert!(
        ok,
        "timed out: a got {} of {}, b got {} of {}; {}",
        got_a.len(),
        b_data.len(),
        got_b.len(),
        a_data.len(),
        net.hosts[0]
            .stack
            .tcp
            .conn(a)
            .map(|c| c.summary())
            .unwrap_or_default()
    );
    (got_a, got_b, took)
}

#[test]
fn a_clean_wire_moves_every_byte_both_ways_without_retransmitting() {
    let mut net = Net::new(2, Link::default(), 1);
    let (a, b) = (pattern(4 << 20, 1), pattern(3 << 20, 2));
    let (got_a, got_b, took) = exchange(&mut net, &a, &b, Duration::from_secs(30));
    assert!(got_a == b && got_b == a);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let c = net.hosts[0].stack.tcp.conns().next().unwrap().1.counters;
    assert_eq!(c.retransmits, 0, "{c:?}");
}

#[test]
fn loss_reordering_and_duplication_lose_and_repeat_nothing() {
    for (seed, loss, reorder, dup) in [
        (2, 0.01, 0.0, 0.0),
        (3, 0.05, 0.0, 0.0),
        (4, 0.0, 0.05, 0.0),
        (5, 0.0, 0.0, 0.05),
        (6, 0.02, 0.02, 0.02),
        (7, 0.15, 0.05, 0.05),
    ] {
        let link = Link {
            faults: Faults {
                loss,
                reorder,
                duplicate: dup,
                ..Faults::default()
            },
            ..Link::default()
        };
        let mut net = Net::new(2, link, seed);
        let (a, b) = (pattern(1 << 20, 3), pattern(700_000, 4));
        let (got_a, got_b, took) = exchange(&mut net, &a, &b, Duration::from_secs(600));
        assert!(got_a == b && got_b == a, "seed {seed}");
        eprintln!("seed {seed} loss {loss} reorder {reorder} dup {dup}: {took:?}");
    }
}

#[test]
fn both_close_and_time_wait_frees_the_connections() {
    let mut net = Net::new(2, Link::default(), 9);
    let (a, b) = (pattern(10_000, 5), pattern(20_000, 6));
    exchange(&mut net, &a, &b, Duration::from_secs(10));
    for h in 0..2 {
        let ids: Vec<_> = net.hosts[h].stack.tcp.conns().map(|(id, _)| id).collect();
        for id in ids {
            net.with(h, |s, now, out| s.tcp_close(now, id, out));
        }
    }
    let live = |net: &Net| net.hosts[0].stack.tcp.len() + net.hosts[1].stack.tcp.len();
    net.run_until(Duration::from_secs(1), |net| {
        net.hosts.iter().all(|h| {
            h.stack
                .tcp
                .conns()
                .all(|(_, c)| c.state() == State::TimeWait)
        }) || live(net) < 2
    });
    assert!(net.hosts[0].stack.tcp.time_wait() + net.hosts[1].stack.tcp.time_wait() >= 1);
    // TIME-WAIT lasts 60 s, then nothing is left.
    assert!(!net.run_until(Duration::from_secs(59), |net| live(net) == 0));
    assert!(net.run_until(Duration::from_secs(2), |net| live(net) == 0));
}

#[test]
fn rewritten_queued_bytes_are_what_is_sent_again() {
    // An offload holder leaving its NIC rewrites framed bytes in place:
    // whatever was lost goes out again as rewritten, and the receiver
    // gets the new bytes, byte-exact, with nothing lost or repeated.
    let mut net = Net::new(2, Link::default(), 31);
    let l = net.listen(1, 7300, Options::default());
    let a = net.connect(0, net.addr(1, 7300), Options::default());
    let mut b = None;
    assert!(net.run_until(Duration::from_secs(5), |net| {
        b = b.or_else(|| net.accept(1, l));
        b.is_some()
    }));
    let b = b.unwrap();
    let (old, new) = (pattern(200_000, 5), pattern(200_000, 6));
    // Everything written is lost on the wire the first time.
    net.link.faults.loss = 1.0;
    let now = net.now;
    let n = net.hosts[0].stack.tcp(now, a, |c| c.write(&old)).unwrap();
    assert!(n > 100_000, "wrote {n}");
    net.run_until(Duration::from_millis(300), |_| false);
    let rewritten = net.hosts[0]
        .stack
        .tcp(now, a, |c| c.rewrite_queued(0, &new[..n]))
        .unwrap();
    assert_eq!(rewritten, n);
    net.link.faults.loss = 0.0;
    let mut got = Vec::new();
    let ok = net.run_until(Duration::from_secs(30), |net| {
        let now = net.now;
        net.hosts[1]
            .stack
            .tcp(now, b, |c| {
                let mut buf = [0u8; 8192];
                loop {
                    let k = c.read(&mut buf);
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
            })
            .unwrap();
        net.drain_events(0);
        net.drain_events(1);
        got.len() >= n
    });
    assert!(ok, "got {} of {n}", got.len());
    assert!(
        got == new[..n],
        "the receiver got other bytes than the rewritten ones"
    );
}
