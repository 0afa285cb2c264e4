use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr};

const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

fn v4(a: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
}

fn v6(a: u16, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, a)), port)
}

fn eph(start: u32) -> EphemeralPorts {
    EphemeralPorts {
        range: PortRange::LINUX,
        start,
    }
}

fn table() -> UdpSockets {
    UdpSockets::new(UdpLimits::default())
}

#[test]
fn port_ranges() {
    assert_eq!(PortRange::LINUX.len(), 28232);
    assert_eq!(PortRange::IANA.len(), 16384);
    assert_eq!(PortRange::new(0, 10), None);
    assert_eq!(PortRange::new(10, 9), None);
    let r = PortRange::new(65535, 65535).unwrap();
    assert_eq!((r.low(), r.high(), r.len()), (65535, 65535, 1));
}

#[test]
fn specific_and_wildcard_conflict_on_one_port_and_family() {
    let mut t = table();
    let a = t.bind(v4(1, 53), eph(0)).unwrap();
    // Same address: in use. Wildcard over a specific: in use.
    assert_eq!(t.bind(v4(1, 53), eph(0)), Err(BindError::InUse));
    assert_eq!(
        t.bind(SocketAddr::new(ANY4, 53), eph(0)),
        Err(BindError::InUse)
    );
    // Another address, another port, the other family: free.
    let b = t.bind(v4(2, 53), eph(0)).unwrap();
    t.bind(v4(1, 54), eph(0)).unwrap();
    let w6 = t.bind(SocketAddr::new(ANY6, 53), eph(0)).unwrap();
    // Specific under a v6 wildcard: in use.
    assert_eq!(t.bind(v6(1, 53), eph(0)), Err(BindError::InUse));
    // Closing both specifics frees the port for the v4 wildcard.
    assert!(t.close(a));
    assert_eq!(
        t.bind(SocketAddr::new(ANY4, 53), eph(0)),
        Err(BindError::InUse)
    );
    assert!(t.close(b));
    let w4 = t.bind(SocketAddr::new(ANY4, 53), eph(0)).unwrap();
    assert_eq!(t.bind(v4(9, 53), eph(0)), Err(BindError::InUse));
    assert!(t.close(w4));
    assert!(t.close(w6));
    t.bind(v6(1, 53), eph(0)).unwrap();
}

#[test]
fn ipv6_scope_and_flowinfo_do_not_matter() {
    let mut t = table();
    let ip = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let a = SocketAddr::V6(std::net::SocketAddrV6::new(ip, 7, 0, 2));
    let b = SocketAddr::V6(std::net::SocketAddrV6::new(ip, 7, 99, 3));
    let id = t.bind(a, eph(0)).unwrap();
    assert_eq!(t.bind(b, eph(0)), Err(BindError::InUse));
    assert_eq!(t.lookup(b), Some(id));
    assert_eq!(t.local_addr(id), Some(a));
}

#[test]
fn ephemeral_ports_start_where_the_caller_says_and_skip_conflicts() {
    let mut t = table();
    let range = PortRange::new(1000, 1003).unwrap();
    let e = |start| EphemeralPorts { range, start };
    let a = t.bind(v4(1, 0), e(2)).unwrap();
    assert_eq!(t.local_addr(a).unwrap().port(), 1002);
    // Start is taken modulo the range.
    let b = t.bind(v4(1, 0), e(6)).unwrap();
    assert_eq!(t.local_addr(b).unwrap().port(), 1003);
    // Wraps around.
    let c = t.bind(v4(1, 0), e(3)).unwrap();
    assert_eq!(t.local_addr(c).unwrap().port(), 1000);
    // Another address does not conflict on the same ports...
    let d = t.bind(v4(2, 0), e(2)).unwrap();
    assert_eq!(t.local_addr(d).unwrap().port(), 1002);
    // ...but the wildcard conflicts with both.
    let w = t.bind(SocketAddr::new(ANY4, 0), e(0)).unwrap();
    assert_eq!(t.local_addr(w).unwrap().port(), 1001);
    assert_eq!(t.bind(v4(1, 0), e(0)), Err(BindError::NoPorts));
    // 10.0.0.3 is only held off the wildcard's port.
    let g = t.bind(v4(3, 0), e(u32::MAX)).unwrap();
    assert_eq!(t.local_addr(g).unwrap().port(), 1003);
    // The other family has its own ports.
    t.bind(SocketAddr::new(ANY6, 0), e(0)).unwrap();
    t.close(b);
    let f = t.bind(v4(1, 0), e(0)).unwrap();
    assert_eq!(t.local_addr(f).unwrap().port(), 1003);
}

#[test]
fn ephemeral_range_at_the_top_of_the_port_space() {
    let mut t = table();
    let range = PortRange::new(65534, 65535).unwrap();
    for (start, port) in [(u32::MAX, 65535), (u32::MAX, 65534)] {
        let id = t.bind(v4(1, 0), EphemeralPorts { range, start }).unwrap();
        assert_eq!(t.local_addr(id).unwrap().port(), port);
    }
    let id = t.bind(
        v4(1, 0),
        EphemeralPorts {
            range: PortRange::IANA,
            start: u32::MAX,
        },
    );
    assert!(id.is_ok());
}

#[test]
fn the_socket_limit_holds() {
    let mut t = UdpSockets::new(UdpLimits {
        max_sockets: 2,
        ..UdpLimits::default()
    });
    let a = t.bind(v4(1, 1), eph(0)).unwrap();
    t.bind(v4(1, 2), eph(0)).unwrap();
    assert_eq!(t.bind(v4(1, 3), eph(0)), Err(BindError::Limit));
    assert_eq!(t.len(), 2);
    t.close(a);
    t.bind(v4(1, 3), eph(0)).unwrap();
    let mut none = UdpSockets::new(UdpLimits {
        max_sockets: 0,
        ..UdpLimits::default()
    });
    assert!(none.is_empty());
    assert_eq!(none.bind(v4(1, 1), eph(0)), Err(BindError::Limit));
}

#[test]
fn a_stale_id_never_names_the_new_socket() {
    let mut t = table();
    let old = t.bind(v4(1, 7), eph(0)).unwrap();
    assert!(t.close(old));
    assert!(!t.close(old));
    let new = t.bind(v4(1, 7), eph(0)).unwrap();
    assert_ne!(old, new);
    assert_eq!(t.local_addr(old), None);
    assert_eq!(
        t.deliver(old, v4(9, 1), v4(1, 7), b"x"),
        Err(UdpDrop::NoSocket)
    );
    assert_eq!(t.recv(old), None);
    assert_eq!(t.peek_len(old), None);
    assert_eq!(t.set_recv_buffer(old, 9000), None);
    assert_eq!(t.socket_counters(old), None);
    assert_eq!(t.check_send(old, v4(9, 1), 1), Err(SendError::NoSocket));
    assert!(!t.record_sent(old));
    // The new socket saw none of it.
    assert_eq!(t.peek_len(new), None);
    assert_eq!(t.socket_counters(new), Some(UdpSocketCounters::default()));
    // An id from another table's slab is just unknown.
    let forged = UdpId {
        index: 1000,
        generation: 0,
    };
    assert_eq!(t.local_addr(forged), None);
    assert!(!t.close(forged));
}

#[test]
fn lookup_prefers_the_exact_address() {
    let mut t = table();
    let w = t.bind(SocketAddr::new(ANY4, 0), eph(5)).unwrap();
    let port = t.local_addr(w).unwrap().port();
    assert_eq!(t.lookup(v4(1, port)), Some(w));
    assert_eq!(t.lookup(v4(1, port + 1)), None);
    assert_eq!(t.lookup(v6(1, port)), None);
    assert_eq!(t.lookup(v4(1, 0)), None);
    let mut t = table();
    let e = t.bind(v4(1, 80), eph(0)).unwrap();
    let e6 = t.bind(v6(1, 80), eph(0)).unwrap();
    let w6 = t.bind(SocketAddr::new(ANY6, 81), eph(0)).unwrap();
    assert_eq!(t.lookup(v4(1, 80)), Some(e));
    assert_eq!(t.lookup(v4(2, 80)), None);
    assert_eq!(t.lookup(v6(1, 80)), Some(e6));
    assert_eq!(t.lookup(v6(7, 81)), Some(w6));
}

#[test]
fn datagrams_queue_in_order_and_are_charged_with_overhead() {
    let mut t = table();
    let id = t.bind(v4(1, 9), eph(0)).unwrap();
    let size = 3 * (1300 + DATAGRAM_OVERHEAD);
    assert_eq!(t.set_recv_buffer(id, size), Some(size));
    for i in 0..3u8 {
        t.deliver(id, v4(2, 1000 + u16::from(i)), v4(1, 9), &[i; 1300])
            .unwrap();
    }
    assert_eq!(
        t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]),
        Err(UdpDrop::ReceiveBufferFull)
    );
    assert_eq!(t.peek_len(id), Some(1300));
    let d = t.recv(id).unwrap();
    assert_eq!(
        (d.from, d.to, d.payload),
        (v4(2, 1000), v4(1, 9), vec![0; 1300])
    );
    // Room for exactly one more of the same size.
    t.deliver(id, v4(2, 1), v4(1, 9), &[7; 1300]).unwrap();
    assert_eq!(
        t.deliver(id, v4(2, 1), v4(1, 9), &[]),
        Err(UdpDrop::ReceiveBufferFull)
    );
    let got: Vec<u8> = std::iter::from_fn(|| t.recv(id))
        .map(|d| d.payload[0])
        .collect();
    assert_eq!(got, vec![1, 2, 7]);
    assert_eq!(t.peek_len(id), None);
    let c = t.socket_counters(id).unwrap();
    assert_eq!((c.received, c.delivered, c.dropped_full), (6, 4, 2));
}

#[test]
fn empty_datagrams_cannot_exhaust_memory() {
    let mut t = table();
    let id = t.bind(v4(1, 9), eph(0)).unwrap();
    let limit = t.recv_buffer(id).unwrap();
    assert_eq!(limit, 256 * 1024);
    let mut queued = 0;
    while t.deliver(id, v4(2, 1), v4(1, 9), &[]).is_ok() {
        queued += 1;
    }
    assert_eq!(queued, limit / DATAGRAM_OVERHEAD);
    // Zero-length datagrams are real datagrams.
    assert_eq!(t.peek_len(id), Some(0));
    assert_eq!(t.recv(id).unwrap().payload, Vec::<u8>::new());
}

#[test]
fn an_empty_queue_takes_one_datagram_larger_than_its_buffer() {
    let mut t = table();
    let id = t.bind(v4(1, 9), eph(0)).unwrap();
    assert_eq!(t.set_recv_buffer(id, 0), Some(MIN_RECV_BUFFER));
    let big = vec![0u8; 9000];
    t.deliver(id, v4(2, 1), v4(1, 9), &big).unwrap();
    assert_eq!(
        t.deliver(id, v4(2, 1), v4(1, 9), &[]),
        Err(UdpDrop::ReceiveBufferFull)
    );
    assert_eq!(t.recv(id).unwrap().payload.len(), 9000);
    // Beyond any legal UDP payload, not even an empty queue takes it.
    let huge = vec![0u8; 70_000];
    assert_eq!(
        t.deliver(id, v4(2, 1), v4(1, 9), &huge),
        Err(UdpDrop::ReceiveBufferFull)
    );
}

#[test]
fn recv_buffer_clamps() {
    let mut t = UdpSockets::new(UdpLimits {
        recv_bytes_per_socket: usize::MAX,
        recv_bytes_max: 1 << 20,
        max_sockets: 8,
    });
    let id = t.bind(v4(1, 9), eph(0)).unwrap();
    assert_eq!(t.recv_buffer(id), Some(1 << 20));
    assert_eq!(t.set_recv_buffer(id, usize::MAX), Some(1 << 20));
    assert_eq!(t.set_recv_buffer(id, 1), Some(MIN_RECV_BUFFER));
    assert_eq!(t.set_recv_buffer(id, 50_000), Some(50_000));
    let t = UdpSockets::new(UdpLimits {
        recv_bytes_per_socket: 0,
        recv_bytes_max: 0,
        max_sockets: 8,
    });
    assert_eq!(t.limits.recv_bytes_per_socket, MIN_RECV_BUFFER);
    assert_eq!(t.limits.recv_bytes_max, MIN_RECV_BUFFER);
}

#[test]
fn shrinking_the_buffer_keeps_what_is_queued() {
    let mut t = table();
    let id = t.bind(v4(1, 9), eph(0)).unwrap();
    for _ in 0..10 {
        t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1000]).unwrap();
    }
    t.set_recv_buffer(id, 0);
    assert_eq!(
        t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]),
        Err(UdpDrop::ReceiveBufferFull)
    );
    assert_eq!(std::iter::from_fn(|| t.recv(id)).count(), 10);
    t.deliver(id, v4(2, 1), v4(1, 9), &[0; 1]).unwrap();
}

#[test]
fn receive_counts_misses_and_hits() {
    let mut t = table();
    let id = t.bind(SocketAddr::new(ANY4, 53), eph(0)).unwrap();
    assert_eq!(t.receive(v4(2, 1), v4(1, 53), b"q"), Ok(id));
    assert_eq!(t.receive(v4(2, 1), v4(1, 54), b"q"), Err(UdpDrop::NoSocket));
    t.set_recv_buffer(id, 0);
    t.receive(v4(2, 1), v4(1, 53), &[0; 3500]).unwrap();
    assert_eq!(
        t.receive(v4(2, 1), v4(1, 53), b"q"),
        Err(UdpDrop::ReceiveBufferFull)
    );
    assert!(t.record_sent(id));
    assert!(t.record_send_error(id));
    let c = t.counters();
    assert_eq!(
        c,
        UdpCounters {
            received: 4,
            delivered: 2,
            dropped_full: 1,
            no_port: 1,
            sent: 1,
            send_errors: 1,
        }
    );
    assert_eq!(
        t.socket_counters(id),
        Some(UdpSocketCounters {
            received: 3,
            delivered: 2,
            dropped_full: 1,
            sent: 1,
            send_errors: 1,
        })
    );
    t.close(id);
    assert!(!t.record_sent(id));
    assert_eq!(t.counters().sent, 2);
}

#[test]
fn check_send() {
    let mut t = table();
    let id = t.bind(SocketAddr::new(ANY4, 0), eph(1)).unwrap();
    let local = t.local_addr(id).unwrap();
    assert_eq!(t.check_send(id, v4(2, 53), MAX_PAYLOAD_V4), Ok(local));
    assert_eq!(
        t.check_send(id, v4(2, 53), MAX_PAYLOAD_V4 + 1),
        Err(SendError::TooLong)
    );
    assert_eq!(t.check_send(id, v4(2, 0), 1), Err(SendError::PortZero));
    assert_eq!(
        t.check_send(id, v6(2, 53), 1),
        Err(SendError::FamilyMismatch)
    );
    let id6 = t.bind(v6(1, 0), eph(1)).unwrap();
    assert!(t.check_send(id6, v6(2, 53), MAX_PAYLOAD_V6).is_ok());
    assert_eq!(
        t.check_send(id6, v6(2, 53), MAX_PAYLOAD_V6 + 1),
        Err(SendError::TooLong)
    );
}

/// The table against a list of bound addresses searched naively, under
/// random binds, closes and lookups.
#[test]
fn matches_a_naive_model() {
    let mut rng = SmallRng::seed_from_u64(0x05ee_d0dd);
    let ips: Vec<IpAddr> = vec![
        ANY4,
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        ANY6,
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
    ];
    let range = PortRange::new(5000, 5007).unwrap();
    for _round in 0..20 {
        let mut t = UdpSockets::new(UdpLimits {
            max_sockets: 24,
            ..UdpLimits::default()
        });
        let mut model: Vec<(UdpId, SocketAddr)> = Vec::new();
        let mut dead: Vec<UdpId> = Vec::new();
        let conflicts = |model: &[(UdpId, SocketAddr)], ip: IpAddr, port: u16| {
            model.iter().any(|(_, a)| {
                a.port() == port
                    && a.is_ipv4() == ip.is_ipv4()
                    && (a.ip() == ip || a.ip().is_unspecified() || ip.is_unspecified())
            })
        };
        for _ in 0..400 {
            match rng.gen_range(0..4) {
                0 | 1 => {
                    let ip = ips[rng.gen_range(0..ips.len())];
                    let port = if rng.gen_bool(0.5) {
                        0
                    } else {
                        rng.gen_range(5000..5008)
                    };
                    let start = rng.gen();
                    let got = t.bind(SocketAddr::new(ip, port), EphemeralPorts { range, start });
                    let want = if model.len() >= 24 {
                        Err(BindError::Limit)
                    } else if port != 0 {
                        if conflicts(&model, ip, port) {
                            Err(BindError::InUse)
                        } else {
                            Ok(port)
                        }
                    } else {
                        (0..8)
                            .map(|i| 5000 + ((start % 8 + i) % 8) as u16)
                            .find(|&p| !conflicts(&model, ip, p))
                            .ok_or(BindError::NoPorts)
                    };
                    match (got, want) {
                        (Ok(id), Ok(p)) => {
                            let a = SocketAddr::new(ip, p);
                            assert_eq!(t.local_addr(id), Some(a));
                            model.push((id, a));
                        }
                        (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ())),
                    }
                }
                2 => {
                    if !model.is_empty() && rng.gen_bool(0.8) {
                        let (id, _) = model.swap_remove(rng.gen_range(0..model.len()));
                        assert!(t.close(id));
                        dead.push(id);
                    } else if let Some(&id) = dead.last() {
                        assert!(!t.close(id));
                    }
                }
                _ => {
                    let ip = ips[rng.gen_range(0..ips.len())];
                    if ip.is_unspecified() {
                        continue;
                    }
                    let dst = SocketAddr::new(ip, rng.gen_range(4999..5009));
                    let want = model
                        .iter()
                        .find(|(_, a)| *a == dst)
                        .or_else(|| {
                            model.iter().find(|(_, a)| {
                                a.port() == dst.port()
                                    && a.ip().is_unspecified()
                                    && a.is_ipv4() == dst.is_ipv4()
                            })
                        })
                        .map(|(id, _)| *id);
                    assert_eq!(t.lookup(dst), want);
                }
            }
            assert_eq!(t.len(), model.len());
            for id in &dead {
                assert_eq!(t.local_addr(*id), None);
            }
        }
    }
}
