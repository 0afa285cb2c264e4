use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const A: Mac = [2, 0, 0, 0, 0, 0xa];
const B: Mac = [2, 0, 0, 0, 0, 0xb];
const SEC: Duration = Duration::from_secs(1);

type Cache = NeighborCache<u32>;

fn cache() -> Cache {
    NeighborCache::new(NeighborConfig::default(), 7)
}

fn t(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn v6(n: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n as u16))
}

fn poll(c: &mut Cache, now: Instant) -> Vec<Action<u32>> {
    let mut out = Vec::new();
    c.poll(now, &mut |a| out.push(a));
    check_invariants(c);
    out
}

fn state(c: &Cache, ip: IpAddr) -> Option<(NeighborState, Option<Mac>)> {
    c.get(Instant::ZERO, 0, ip).map(|e| (e.state, e.mac))
}

fn solicit(ip: IpAddr, unicast: Option<Mac>) -> Action<u32> {
    Action::Solicit {
        iface: 0,
        target: ip,
        unicast,
    }
}

/// The indexes agree with the table.
fn check_invariants(c: &Cache) {
    assert!(c.entries.len() <= c.config.capacity);
    assert_eq!(c.deadlines.len(), c.entries.len());
    for (&key, e) in &c.entries {
        assert!(c.deadlines.contains(&(e.deadline, key)));
        if let Some(k) = e.evict_key(key) {
            assert!(c.evictable.contains(&k));
        }
        if let State::Incomplete { queue, .. } = &e.state {
            assert!(queue.len() <= c.config.queue_len);
        }
    }
    let evictable = c
        .entries
        .iter()
        .filter(|(&k, e)| e.evict_key(k).is_some())
        .count();
    assert_eq!(c.evictable.len(), evictable);
    let min = c.entries.values().map(|e| e.deadline).min();
    assert_eq!(c.next_deadline(), min);
}

/// An entry in each state with address `mac`, made at `now` the way
/// traffic makes it.
fn make(c: &mut Cache, now: Instant, ip: IpAddr, want: NeighborState, mac: Mac) {
    match want {
        NeighborState::Incomplete => {
            let r = c.resolve(now, 0, ip, 1);
            assert_eq!(r, Resolve::Queued { displaced: None });
            assert_eq!(poll(c, now), vec![solicit(ip, None)]);
        }
        NeighborState::Reachable => {
            make(c, now, ip, NeighborState::Incomplete, mac);
            let released = c.learn(
                now,
                0,
                ip,
                mac,
                Learned::Solicited {
                    override_flag: true,
                },
            );
            assert_eq!(released, vec![1]);
        }
        NeighborState::Stale => {
            assert!(c.learn(now, 0, ip, mac, Learned::Request).is_empty());
        }
        NeighborState::Delay => {
            make(c, now, ip, NeighborState::Stale, mac);
            assert_eq!(c.resolve(now, 0, ip, 2), Resolve::Send { mac, packet: 2 });
        }
        NeighborState::Probe => {
            let then = now - c.config.delay_first_probe_time;
            make(c, then, ip, NeighborState::Delay, mac);
            assert_eq!(poll(c, now), vec![solicit(ip, Some(mac))]);
        }
        NeighborState::Failed => {
            let then = now - 3 * c.config.retrans_time;
            make(c, then, ip, NeighborState::Incomplete, mac);
            poll(c, then + SEC);
            poll(c, then + 2 * SEC);
            let out = poll(c, now);
            assert_eq!(
                out,
                vec![Action::Dropped {
                    packet: 1,
                    reason: DropReason::ResolutionFailed
                }]
            );
        }
    }
    assert_eq!(state(c, ip).map(|s| s.0), Some(want), "making {want}");
    check_invariants(c);
}

// ---- RFC 4861 Appendix C, row by row ----

#[test]
fn packet_to_unknown_neighbour_creates_incomplete_and_solicits_at_once() {
    let mut c = cache();
    let ip = v4(1);
    assert_eq!(
        c.resolve(t(10), 0, ip, 1),
        Resolve::Queued { displaced: None }
    );
    assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
    assert_eq!(c.next_deadline(), Some(t(10)));
    assert_eq!(poll(&mut c, t(10)), vec![solicit(ip, None)]);
    assert_eq!(c.next_deadline(), Some(t(11)));
    assert!(poll(&mut c, t(11) - Duration::from_micros(1)).is_empty());
    // More packets queue; they do not solicit again.
    assert_eq!(
        c.resolve(t(10), 0, ip, 2),
        Resolve::Queued { displaced: None }
    );
    assert_eq!(c.next_deadline(), Some(t(11)));
    assert_eq!(c.counters().solicits, 1);
}

#[test]
fn incomplete_retransmits_then_fails_and_drops_the_queue() {
    let mut c = cache();
    let ip = v6(1);
    c.resolve(t(0), 0, ip, 1);
    c.resolve(t(0), 0, ip, 2);
    assert_eq!(poll(&mut c, t(0)), vec![solicit(ip, None)]);
    assert_eq!(poll(&mut c, t(1)), vec![solicit(ip, None)]);
    assert_eq!(poll(&mut c, t(2)), vec![solicit(ip, None)]);
    assert_eq!(
        poll(&mut c, t(3)),
        vec![
            Action::Dropped {
                packet: 1,
                reason: DropReason::ResolutionFailed
            },
            Action::Dropped {
                packet: 2,
                reason: DropReason::ResolutionFailed
            }
        ]
    );
    assert_eq!(state(&c, ip), Some((NeighborState::Failed, None)));
    let k = c.counters();
    assert_eq!((k.solicits, k.failed, k.dropped_failed), (3, 1, 2));
    // FAILED is garbage after gc_stale_time.
    assert!(poll(&mut c, t(62)).is_empty());
    assert_eq!(state(&c, ip).map(|s| s.0), Some(NeighborState::Failed));
    assert!(poll(&mut c, t(63)).is_empty());
    assert!(c.is_empty());
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn a_packet_to_a_failed_neighbour_restarts_resolution() {
    let mut c = cache();
    let ip = v4(1);
    make(&mut c, t(10), ip, NeighborState::Failed, A);
    assert_eq!(
        c.resolve(t(11), 0, ip, 9),
        Resolve::Queued { displaced: None }
    );
    assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
    assert_eq!(poll(&mut c, t(11)), vec![solicit(ip, None)]);
}

#[test]
fn incomplete_learns_from_each_kind_of_message() {
    // (how, state with an empty queue, state after releasing a queue)
    let rows = [
        (
            Learned::Solicited {
                override_flag: false,
            },
            NeighborState::Reachable,
            NeighborState::Reachable,
        ),
        (
            Learned::Solicited {
                override_flag: true,
            },
            NeighborState::Reachable,
            NeighborState::Reachable,
        ),
        (
            Learned::Unsolicited {
                override_flag: false,
            },
            NeighborState::Stale,
            NeighborState::Delay,
        ),
        (
            Learned::Unsolicited {
                override_flag: true,
            },
            NeighborState::Stale,
            NeighborState::Delay,
        ),
        (Learned::Request, NeighborState::Stale, NeighborState::Delay),
    ];
    for (how, _, with_queue) in rows {
        let mut c = cache();
        let ip = v6(1);
        make(&mut c, t(0), ip, NeighborState::Incomplete, A);
        c.resolve(t(0), 0, ip, 2);
        assert_eq!(c.learn(t(1), 0, ip, A, how), vec![1, 2], "{how:?}");
        assert_eq!(state(&c, ip), Some((with_queue, Some(A))), "{how:?}");
        assert_eq!(c.counters().resolved, 1);
        check_invariants(&c);
    }
    // With nothing queued (queue_len 0), nothing is sent through the
    // entry, so STALE stays STALE.
    for (how, empty, _) in rows {
        let ip = v6(1);
        let mut c = NeighborCache::new(
            NeighborConfig {
                queue_len: 0,
                ..NeighborConfig::default()
            },
            1,
        );
        assert_eq!(
            c.resolve(t(0), 0, ip, 1),
            Resolve::Dropped {
                packet: 1,
                reason: DropReason::QueueFull
            }
        );
        assert_eq!(state(&c, ip), Some((NeighborState::Incomplete, None)));
        assert!(c.learn(t(1), 0, ip, A, how).is_empty());
        assert_eq!(state(&c, ip), Some((empty, Some(A))), "{how:?}");
    }
}

#[test]
fn advertisements_on_known_entries_follow_section_7_2_5() {
    use NeighborState::*;
    // Appendix C's rows for "!INCOMPLETE" and an NA with a link-layer
    // address: (state, S, O, same address?) -> (state, cached address).
    let rows: &[(NeighborState, bool, bool, bool, NeighborState, Mac)] = &[
        // S=1, O=0, same address: REACHABLE.
        (Reachable, true, false, true, Reachable, A),
        (Stale, true, false, true, Reachable, A),
        (Delay, true, false, true, Reachable, A),
        (Probe, true, false, true, Reachable, A),
        // S=1, O=0, different: REACHABLE -> STALE, others unchanged;
        // the address is not updated.
        (Reachable, true, false, false, Stale, A),
        (Stale, true, false, false, Stale, A),
        (Delay, true, false, false, Delay, A),
        (Probe, true, false, false, Probe, A),
        // S=1, O=1: record the address, REACHABLE.
        (Reachable, true, true, false, Reachable, B),
        (Stale, true, true, false, Reachable, B),
        (Delay, true, true, false, Reachable, B),
        (Probe, true, true, false, Reachable, B),
        (Stale, true, true, true, Reachable, A),
        // S=0, O=0: unchanged, except §7.2.5 (a): a REACHABLE entry
        // with a different address goes STALE.
        (Reachable, false, false, true, Reachable, A),
        (Stale, false, false, true, Stale, A),
        (Probe, false, false, true, Probe, A),
        (Reachable, false, false, false, Stale, A),
        (Stale, false, false, false, Stale, A),
        (Delay, false, false, false, Delay, A),
        (Probe, false, false, false, Probe, A),
        // S=0, O=1, different: record the address, STALE.
        (Reachable, false, true, false, Stale, B),
        (Stale, false, true, false, Stale, B),
        (Delay, false, true, false, Stale, B),
        (Probe, false, true, false, Stale, B),
        // S=0, O=1, same: unchanged.
        (Reachable, false, true, true, Reachable, A),
        (Delay, false, true, true, Delay, A),
        (Probe, false, true, true, Probe, A),
    ];
    for &(from, s, o, same, to, mac) in rows {
        let mut c = cache();
        let ip = v6(1);
        make(&mut c, t(100), ip, from, A);
        let how = if s {
            Learned::Solicited { override_flag: o }
        } else {
            Learned::Unsolicited { override_flag: o }
        };
        let sent = if same { A } else { B };
        assert!(c.learn(t(101), 0, ip, sent, how).is_empty());
        assert_eq!(
            state(&c, ip),
            Some((to, Some(mac))),
            "{from} S={s} O={o} same={same}"
        );
        check_invariants(&c);
    }
}

#[test]
fn requests_on_known_entries_follow_section_7_2_3() {
    use NeighborState::*;
    for from in [Reachable, Stale, Delay, Probe] {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(100), ip, from, A);
        c.learn(t(101), 0, ip, A, Learned::Request);
        assert_eq!(state(&c, ip), Some((from, Some(A))), "{from} same");
        c.learn(t(102), 0, ip, B, Learned::Request);
        assert_eq!(state(&c, ip), Some((Stale, Some(B))), "{from} different");
    }
}

#[test]
fn only_requests_create_entries() {
    let mut c = cache();
    for how in [
        Learned::Solicited {
            override_flag: true,
        },
        Learned::Unsolicited {
            override_flag: true,
        },
    ] {
        assert!(c.learn(t(0), 0, v4(1), A, how).is_empty());
        assert!(c.is_empty(), "{how:?}");
    }
    c.learn(t(0), 0, v4(1), A, Learned::Request);
    assert_eq!(state(&c, v4(1)), Some((NeighborState::Stale, Some(A))));
    // Never for a non-unicast address.
    c.learn(
        t(0),
        0,
        IpAddr::V4(Ipv4Addr::BROADCAST),
        A,
        Learned::Request,
    );
    c.learn(t(0), 0, "ff02::1".parse().unwrap(), A, Learned::Request);
    assert_eq!(c.len(), 1);
}

#[test]
fn failed_entries_accept_addresses_like_linux() {
    let mut c = cache();
    let ip = v4(1);
    make(&mut c, t(10), ip, NeighborState::Failed, A);
    c.learn(
        t(11),
        0,
        ip,
        B,
        Learned::Solicited {
            override_flag: true,
        },
    );
    assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
    assert_eq!(c.counters().resolved, 0);
}

#[test]
fn upper_layer_confirmation_makes_known_entries_reachable() {
    use NeighborState::*;
    for from in [Reachable, Stale, Delay, Probe] {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(100), ip, from, A);
        c.confirm(t(101), 0, ip);
        assert_eq!(state(&c, ip), Some((Reachable, Some(A))), "{from}");
        check_invariants(&c);
    }
    for from in [Incomplete, Failed] {
        let mut c = cache();
        let ip = v4(1);
        make(&mut c, t(100), ip, from, A);
        c.confirm(t(100), 0, ip);
        assert_eq!(state(&c, ip).map(|s| s.0), Some(from));
    }
    let mut c = cache();
    c.confirm(t(1), 0, v4(1));
    assert!(c.is_empty());
}

#[test]
fn reachable_times_out_to_stale_or_to_delay_when_in_use() {
    let mut c = cache();
    let rt = c.reachable_time();
    let ip = v4(1);
    make(&mut c, t(0), ip, NeighborState::Reachable, A);
    assert_eq!(c.next_deadline(), Some(t(0) + rt));
    assert!(poll(&mut c, t(0) + rt - Duration::from_micros(1)).is_empty());
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Reachable);
    poll(&mut c, t(0) + rt);
    assert_eq!(state(&c, ip), Some((NeighborState::Stale, Some(A))));

    // Used within DELAY_FIRST_PROBE_TIME of the timeout: DELAY at once.
    let ip = v4(2);
    make(&mut c, t(1000), ip, NeighborState::Reachable, A);
    let rt = c.reachable_time();
    let used = t(1000) + rt - 4 * SEC;
    assert_eq!(
        c.resolve(used, 0, ip, 5),
        Resolve::Send { mac: A, packet: 5 }
    );
    poll(&mut c, t(1000) + rt);
    assert_eq!(state(&c, ip), Some((NeighborState::Delay, Some(A))));
    assert_eq!(c.next_deadline(), Some(t(1005) + rt));
}

#[test]
fn confirmation_while_reachable_extends_it_without_touching_timers() {
    let mut c = cache();
    let ip = v4(1);
    make(&mut c, t(0), ip, NeighborState::Reachable, A);
    let rt = c.reachable_time();
    let first = c.next_deadline().unwrap();
    c.confirm(t(10), 0, ip);
    assert_eq!(c.next_deadline(), Some(first), "lazy");
    poll(&mut c, first);
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Reachable);
    assert_eq!(c.next_deadline(), Some(t(10) + rt));
    poll(&mut c, t(10) + rt);
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Stale);
}

#[test]
fn stale_delay_probe_failed() {
    let mut c = cache();
    let ip = v6(3);
    make(&mut c, t(0), ip, NeighborState::Stale, A);
    // Sending through STALE sends and starts the delay timer.
    assert_eq!(
        c.resolve(t(1), 0, ip, 7),
        Resolve::Send { mac: A, packet: 7 }
    );
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Delay);
    assert_eq!(c.next_deadline(), Some(t(6)));
    // DELAY and PROBE still send.
    assert_eq!(
        c.resolve(t(2), 0, ip, 8),
        Resolve::Send { mac: A, packet: 8 }
    );
    assert_eq!(poll(&mut c, t(6)), vec![solicit(ip, Some(A))]);
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Probe);
    assert_eq!(
        c.resolve(t(6), 0, ip, 9),
        Resolve::Send { mac: A, packet: 9 }
    );
    assert_eq!(poll(&mut c, t(7)), vec![solicit(ip, Some(A))]);
    assert_eq!(poll(&mut c, t(8)), vec![solicit(ip, Some(A))]);
    assert!(poll(&mut c, t(9)).is_empty());
    assert_eq!(state(&c, ip), Some((NeighborState::Failed, None)));
    let k = c.counters();
    assert_eq!((k.solicits, k.failed), (3, 1));
}

#[test]
fn unused_stale_entries_are_collected() {
    let mut c = cache();
    make(&mut c, t(0), v4(1), NeighborState::Stale, A);
    assert_eq!(c.next_deadline(), Some(t(60)));
    poll(&mut c, t(60));
    assert!(c.is_empty());
}

#[test]
fn arp_locktime_keeps_the_first_answer() {
    let mut c = cache();
    let ip = v4(1);
    make(&mut c, t(0), ip, NeighborState::Reachable, A);
    let reply = Learned::Solicited {
        override_flag: true,
    };
    c.learn(t(0) + SEC / 2, 0, ip, B, reply);
    assert_eq!(state(&c, ip), Some((NeighborState::Stale, Some(A))));
    c.learn(t(0) + 2 * SEC, 0, ip, B, reply);
    assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
    // IPv6 has no locktime.
    let ip = v6(1);
    make(&mut c, t(10), ip, NeighborState::Reachable, A);
    c.learn(t(10), 0, ip, B, reply);
    assert_eq!(state(&c, ip), Some((NeighborState::Reachable, Some(B))));
}

// ---- queues and bounds ----

#[test]
fn a_full_queue_drops_its_oldest_packet() {
    let mut c = cache();
    let ip = v4(1);
    for p in 1..=3 {
        assert_eq!(
            c.resolve(t(0), 0, ip, p),
            Resolve::Queued { displaced: None }
        );
    }
    assert_eq!(
        c.resolve(t(0), 0, ip, 4),
        Resolve::Queued { displaced: Some(1) }
    );
    assert_eq!(
        c.resolve(t(0), 0, ip, 5),
        Resolve::Queued { displaced: Some(2) }
    );
    assert_eq!(c.get(t(0), 0, ip).unwrap().queued, 3);
    assert_eq!(c.counters().dropped_queue_full, 2);
    let released = c.learn(t(0), 0, ip, A, Learned::Request);
    assert_eq!(released, vec![3, 4, 5]);
}

#[test]
fn non_unicast_destinations_are_refused() {
    let mut c = cache();
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::",
        "ff02::1:ff00:1",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(
            c.resolve(t(0), 0, ip, 1),
            Resolve::Dropped {
                packet: 1,
                reason: DropReason::NotUnicast
            }
        );
    }
    assert!(c.is_empty());
    assert_eq!(c.counters().dropped_not_unicast, 5);
}

fn small(capacity: usize) -> Cache {
    NeighborCache::new(
        NeighborConfig {
            capacity,
            ..NeighborConfig::default()
        },
        3,
    )
}

#[test]
fn eviction_takes_failed_then_unused_stale_then_least_recently_used() {
    let mut c = small(4);
    // Two used STALE entries (used at 1 and 2), an unused STALE one, a
    // FAILED one.
    for (n, at) in [(1, 2), (2, 1)] {
        make(&mut c, t(at), v4(n), NeighborState::Reachable, A);
    }
    let rt = c.reachable_time();
    poll(&mut c, t(10) + rt);
    assert_eq!(state(&c, v4(1)).unwrap().0, NeighborState::Stale);
    make(&mut c, t(20) + rt, v4(3), NeighborState::Stale, A);
    make(&mut c, t(30) + rt, v4(4), NeighborState::Failed, A);
    let now = t(40) + rt;
    let order = [v4(4), v4(3), v4(2), v4(1)];
    for (i, gone) in order.into_iter().enumerate() {
        let r = c.resolve(now, 0, v4(100 + i as u32), 0);
        assert_eq!(r, Resolve::Queued { displaced: None });
        assert!(state(&c, gone).is_none(), "step {i}");
        assert_eq!(c.len(), 4);
        check_invariants(&c);
    }
    assert_eq!(c.counters().evictions, 4);
    // Now every entry is INCOMPLETE: nothing may go.
    let r = c.resolve(now, 0, v4(200), 9);
    assert_eq!(
        r,
        Resolve::Dropped {
            packet: 9,
            reason: DropReason::NoRoom
        }
    );
    c.learn(now, 0, v4(201), A, Learned::Request);
    assert_eq!(c.len(), 4);
    let k = c.counters();
    assert_eq!((k.dropped_no_room, k.refused_unsolicited), (1, 1));
}

#[test]
fn a_request_flood_never_evicts_entries_in_use() {
    let mut c = small(64);
    let mut rng = SmallRng::seed_from_u64(1);
    let gateway = v4(1);
    make(&mut c, t(0), gateway, NeighborState::Reachable, A);
    let pending = v4(2);
    c.resolve(t(0), 0, pending, 77);
    let mut now = t(0);
    for i in 0..20_000u32 {
        now += Duration::from_micros(500);
        let forged = IpAddr::V4(Ipv4Addr::from(
            (rng.gen::<u32>() & 0x7fff_ffff) | 0x0100_0000,
        ));
        let mac = [2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
        c.learn(now, 0, forged, mac, Learned::Request);
        if i % 100 == 0 {
            // The gateway is in use: TCP confirms it.
            assert!(matches!(
                c.resolve(now, 0, gateway, i),
                Resolve::Send { .. }
            ));
            c.confirm(now, 0, gateway);
            poll(&mut c, now);
        }
        assert!(c.len() <= 64);
    }
    check_invariants(&c);
    assert_eq!(
        state(&c, gateway),
        Some((NeighborState::Reachable, Some(A)))
    );
    // The INCOMPLETE entry went FAILED after 3 s, then was recycled.
    assert!(c.counters().evictions > 19_000);
    assert_eq!(c.counters().dropped_failed, 1);
}

#[test]
fn forget_iface_and_remove_hand_back_queued_packets() {
    let mut c = cache();
    c.resolve(t(0), 1, v4(1), 10);
    c.resolve(t(0), 1, v6(1), 11);
    c.resolve(t(0), 2, v4(1), 20);
    c.learn(t(0), 1, v4(2), A, Learned::Request);
    c.learn(t(0), 3, v4(2), A, Learned::Request);
    let mut flushed = c.forget_iface(1);
    flushed.sort();
    assert_eq!(flushed, vec![10, 11]);
    let left: Vec<(usize, IpAddr)> = c.entries(t(0)).map(|e| (e.iface, e.ip)).collect();
    assert_eq!(left, vec![(2, v4(1)), (3, v4(2))]);
    assert_eq!(c.remove(2, v4(1)), vec![20]);
    assert!(c.remove(3, v4(2)).is_empty());
    assert!(c.remove(3, v4(9)).is_empty());
    assert!(c.is_empty());
    assert_eq!(c.counters().dropped_flushed, 3);
    check_invariants(&c);
}

#[test]
fn listing_shows_state_address_and_ages() {
    let mut c = cache();
    c.resolve(t(5), 0, v4(2), 1);
    c.learn(t(1), 0, v4(1), A, Learned::Request);
    let l: Vec<NeighborEntry> = c.entries(t(10)).collect();
    assert_eq!(
        l,
        vec![
            NeighborEntry {
                iface: 0,
                ip: v4(1),
                mac: Some(A),
                state: NeighborState::Stale,
                updated: 9 * SEC,
                used: None,
                confirmed: None,
                queued: 0,
            },
            NeighborEntry {
                iface: 0,
                ip: v4(2),
                mac: None,
                state: NeighborState::Incomplete,
                updated: 5 * SEC,
                used: Some(5 * SEC),
                confirmed: None,
                queued: 1,
            },
        ]
    );
    assert_eq!(l[0].state.to_string(), "STALE");
}

// ---- randomization and time ----

#[test]
fn reachable_time_is_randomized_within_half_to_one_and_a_half() {
    let base = NeighborConfig::default().base_reachable_time;
    let (lo, hi) = (base / 2, base * 3 / 2);
    let mut seen = Vec::new();
    for seed in 0..2000u64 {
        let c = Cache::new(NeighborConfig::default(), seed);
        seen.push(c.reachable_time());
    }
    // One cache, redrawn every 300 s.
    let mut c = cache();
    for i in 0..200u64 {
        let ip = v4(i as u32 + 1);
        make(&mut c, t(i * 301), ip, NeighborState::Reachable, A);
        let e = c.get(t(i * 301), 0, ip).unwrap();
        assert_eq!(e.confirmed, Some(Duration::ZERO));
        seen.push(c.reachable_time());
        let deadline = c.entries[&(0, ip)].deadline;
        assert_eq!(deadline, t(i * 301) + c.reachable_time());
    }
    assert!(seen.iter().all(|&d| lo <= d && d < hi));
    let min = *seen.iter().min().unwrap();
    let max = *seen.iter().max().unwrap();
    assert!(
        min < base * 11 / 20 && max > base * 29 / 20,
        "{min:?} {max:?}"
    );
    // Same seed, same draws: the core is deterministic.
    assert_eq!(Cache::new(NeighborConfig::default(), 5).reachable_time(), {
        Cache::new(NeighborConfig::default(), 5).reachable_time()
    });
}

#[test]
fn a_jump_in_time_takes_one_step_per_poll() {
    let mut c = cache();
    let ip = v4(1);
    make(&mut c, t(0), ip, NeighborState::Incomplete, A);
    // An hour passes: one more solicitation, not instant failure.
    assert_eq!(poll(&mut c, t(3600)), vec![solicit(ip, None)]);
    assert_eq!(c.next_deadline(), Some(t(3601)));
    // A REACHABLE entry an hour later is STALE.
    let ip = v6(1);
    make(&mut c, t(3600), ip, NeighborState::Reachable, A);
    poll(&mut c, t(7200));
    assert_eq!(state(&c, ip).unwrap().0, NeighborState::Stale);
    // Time going backwards runs nothing and breaks nothing.
    assert!(poll(&mut c, t(0)).is_empty());
    assert!(matches!(c.resolve(t(0), 0, ip, 1), Resolve::Send { .. }));
    // The end of time saturates.
    let end = Instant::from_micros(u64::MAX);
    c.resolve(end, 0, v4(9), 3);
    let out = poll(&mut c, end);
    assert!(out.contains(&solicit(v4(9), None)));
    for _ in 0..10 {
        poll(&mut c, end);
    }
    check_invariants(&c);
}

#[test]
fn zero_timers_are_raised_so_poll_cannot_spin() {
    let mut c: Cache = NeighborCache::new(
        NeighborConfig {
            retrans_time: Duration::ZERO,
            base_reachable_time: Duration::ZERO,
            delay_first_probe_time: Duration::ZERO,
            gc_stale_time: Duration::ZERO,
            max_multicast_solicit: 0,
            ..NeighborConfig::default()
        },
        0,
    );
    assert_eq!(c.config().retrans_time, MIN_TIMER);
    c.resolve(t(0), 0, v4(1), 1);
    let out = poll(&mut c, t(0));
    assert_eq!(
        out,
        vec![Action::Dropped {
            packet: 1,
            reason: DropReason::ResolutionFailed
        }]
    );
}

// ---- a random workout against a model of packet conservation ----

#[test]
fn random_operations_keep_invariants_and_lose_no_packet() {
    for seed in 0..20u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut c: Cache = NeighborCache::new(
            NeighborConfig {
                capacity: 16,
                queue_len: rng.gen_range(0..4),
                ..NeighborConfig::default()
            },
            seed,
        );
        let mut now = t(0);
        let mut next_packet = 0u32;
        // Every packet handed in comes out exactly once, or is queued.
        let mut out_count = 0usize;
        for _ in 0..3000 {
            now += Duration::from_millis(rng.gen_range(0..1500));
            let iface = rng.gen_range(0..2);
            let ip = if rng.gen() {
                v4(rng.gen_range(0..24))
            } else {
                v6(rng.gen_range(0..24))
            };
            let mac = if rng.gen() { A } else { B };
            match rng.gen_range(0..10) {
                0..=3 => {
                    next_packet += 1;
                    match c.resolve(now, iface, ip, next_packet) {
                        Resolve::Send { .. } | Resolve::Dropped { .. } => out_count += 1,
                        Resolve::Queued { displaced } => {
                            out_count += usize::from(displaced.is_some())
                        }
                    }
                }
                4 => {
                    let how = match rng.gen_range(0..3) {
                        0 => Learned::Request,
                        1 => Learned::Solicited {
                            override_flag: rng.gen(),
                        },
                        _ => Learned::Unsolicited {
                            override_flag: rng.gen(),
                        },
                    };
                    let before = c.get(now, iface, ip);
                    let released = c.learn(now, iface, ip, mac, how);
                    if !released.is_empty() {
                        assert_eq!(before.unwrap().queued, released.len());
                        assert_eq!(c.get(now, iface, ip).unwrap().mac, Some(mac));
                    }
                    out_count += released.len();
                }
                5 => c.confirm(now, iface, ip),
                6 if rng.gen_range(0..20) == 0 => out_count += c.forget_iface(iface).len(),
                7 if rng.gen_range(0..5) == 0 => out_count += c.remove(iface, ip).len(),
                _ => {
                    let mut dropped = 0;
                    c.poll(now, &mut |a| {
                        if let Action::Dropped { .. } = a {
                            dropped += 1
                        }
                    });
                    out_count += dropped;
                }
            }
            check_invariants(&c);
            let queued: usize = c.entries(now).map(|e| e.queued).sum();
            assert_eq!(out_count + queued, next_packet as usize, "seed {seed}");
            for e in c.entries(now) {
                let has_mac = !matches!(e.state, NeighborState::Incomplete | NeighborState::Failed);
                assert_eq!(e.mac.is_some(), has_mac);
            }
        }
    }
}
