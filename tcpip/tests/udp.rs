//! UDP between two engines, both families, fragmented when the path
//! needs it.

mod netpeer;
mod sim;

use netpeer::*;

// UDP between two engines.

fn recv_all(net: &mut Net, host: usize, id: UdpId) -> Vec<capnet_tcpip::udp::Datagram> {
    let mut v = Vec::new();
    while let Some(d) = net.hosts[host].stack.udp_recv(id) {
        v.push(d);
    }
    v
}

#[test]
fn udp_both_ways_on_both_families() {
    let mut net = Net::new(2, Link::default(), 11);
    for v6 in [false, true] {
        let (wild, a_addr, b_addr) = if v6 {
            ("[::]", net.addr6(0, 5000), net.addr6(1, 6000))
        } else {
            ("0.0.0.0", net.addr(0, 5000), net.addr(1, 6000))
        };
        let a = net.hosts[0]
            .stack
            .udp_bind(sa(&format!("{wild}:5000")))
            .unwrap();
        let b = net.hosts[1]
            .stack
            .udp_bind(sa(&format!("{wild}:6000")))
            .unwrap();
        net.with(0, |s, now, out| s.udp_send(now, a, b_addr, b"ping", out))
            .unwrap();
        let mut got = Vec::new();
        assert!(net.run_until(Duration::from_secs(1), |net| {
            got.extend(recv_all(net, 1, b));
            !got.is_empty()
        }));
        assert!(net.drain_events(1).contains(&Event::Udp(b)));
        assert_eq!(got[0].payload, b"ping");
        assert_eq!(got[0].from, a_addr);
        assert_eq!(got[0].to, b_addr);
        net.with(1, |s, now, out| {
            s.udp_send(now, b, got[0].from, b"pong", out)
        })
        .unwrap();
        let mut back = Vec::new();
        assert!(net.run_until(Duration::from_secs(1), |net| {
            back.extend(recv_all(net, 0, a));
            !back.is_empty()
        }));
        assert!(net.drain_events(0).contains(&Event::Udp(a)));
        assert_eq!(back[0].payload, b"pong");
        assert_eq!(back[0].from, b_addr);
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(11) as u8 ^ salt)
        .collect()
}

#[test]
fn large_datagrams_leave_in_fragments_and_arrive_byte_exact() {
    for v6 in [false, true] {
        let mut net = Net::new(2, Link::default(), 12);
        let (a_addr, b_addr) = if v6 {
            (net.addr6(0, 5000), net.addr6(1, 6000))
        } else {
            (net.addr(0, 5000), net.addr(1, 6000))
        };
        let a = net.hosts[0].stack.udp_bind(a_addr).unwrap();
        let b = net.hosts[1].stack.udp_bind(b_addr).unwrap();
        let max = if v6 { MAX_PAYLOAD_V6 } else { MAX_PAYLOAD_V4 };
        // The first before the neighbour is known: every fragment waits
        // for resolution and none is lost.
        let sizes = [3000, 1473, max, 1, 9000];
        for (i, &n) in sizes.iter().enumerate() {
            let data = pattern(n, i as u8);
            net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &data, out))
                .unwrap_or_else(|e| panic!("v6 {v6}: {n} bytes: {e:?}"));
        }
        let mut got = Vec::new();
        net.run_until(Duration::from_secs(2), |net| {
            got.extend(recv_all(net, 1, b));
            got.len() == sizes.len()
        });
        let lens: Vec<usize> = got.iter().map(|d| d.payload.len()).collect();
        assert_eq!(lens, sizes, "v6 {v6}");
        for (i, d) in got.iter().enumerate() {
            assert!(
                d.payload == pattern(sizes[i], i as u8),
                "v6 {v6}: datagram {i}"
            );
        }
        let c = net.hosts[0].stack.counters;
        assert!(c.fragments_sent > 45, "{c:?}");
        assert_eq!(net.hosts[1].stack.counters.reassembled, 4, "v6 {v6}");
        // One byte more than a datagram holds is refused, and nothing leaves.
        let frames = net.frames;
        let too_big = vec![0u8; max + 1];
        let r = net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &too_big, out));
        assert_eq!(r, Err(UdpSendError::TooBig));
        net.run_until(Duration::from_millis(100), |_| false);
        assert_eq!(net.frames, frames);
    }
}

#[test]
fn a_full_receive_buffer_drops_and_counts() {
    let mut net = Net::new(2, Link::default(), 13);
    let b_addr = net.addr(1, 6000);
    let a_addr = net.addr(0, 5000);
    let a = net.hosts[0].stack.udp_bind(a_addr).unwrap();
    let b = net.hosts[1].stack.udp_bind(b_addr).unwrap();
    net.hosts[1].stack.udp.set_recv_buffer(b, 4096);
    for i in 0..20u8 {
        net.with(0, |s, now, out| s.udp_send(now, a, b_addr, &[i; 1000], out))
            .unwrap();
    }
    net.run_until(Duration::from_millis(200), |_| false);
    let got = recv_all(&mut net, 1, b);
    let c = net.hosts[1].stack.udp.counters();
    assert!(!got.is_empty() && got.len() < 20, "{}", got.len());
    assert_eq!(c.dropped_full, 20 - got.len() as u64, "{c:?}");
    assert_eq!(c.delivered, got.len() as u64);
    // What was kept is the oldest, in order.
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.payload[0], i as u8);
    }
    // A full buffer is no closed port: no ICMP error.
    assert_eq!(net.hosts[1].stack.counters.icmp_errors_sent, 0);
}

// ---------------------------------------------------------------------------
