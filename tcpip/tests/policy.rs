//! The IP policy hook sees every packet sent (after routing) and every
//! datagram received (before its transport), and what it discards is
//! counted and goes nowhere.

mod sim;

use capnet_tcpip::ip::policy::{Policy, Selector, Verdict};
use capnet_tcpip::tcp::Options;
use sim::{Link, Net};
use smoltcp::wire::IpProtocol;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Discards UDP to port 9 going out and TCP to port 23 coming in; logs what
/// it saw.
struct Spd {
    seen: Rc<RefCell<Vec<(bool, Selector)>>>,
}

impl Policy for Spd {
    fn output(&mut self, s: &Selector) -> Verdict {
        self.seen.borrow_mut().push((true, *s));
        if s.protocol == IpProtocol::Udp && s.ports.map(|p| p.1) == Some(9) {
            Verdict::Discard
        } else {
            Verdict::Accept
        }
    }

    fn input(&mut self, s: &Selector) -> Verdict {
        self.seen.borrow_mut().push((false, *s));
        if s.protocol == IpProtocol::Tcp && s.ports.map(|p| p.1) == Some(23) {
            Verdict::Discard
        } else {
            Verdict::Accept
        }
    }
}

#[test]
fn policy_sees_both_ways_and_discards_what_it_says() {
    let mut net = Net::new(2, Link::default(), 11);
    let seen = Rc::new(RefCell::new(Vec::new()));
    net.hosts[0]
        .stack
        .set_policy(Some(Box::new(Spd { seen: seen.clone() })));
    net.hosts[1].stack.set_policy(Some(Box::new(Spd {
        seen: Rc::new(RefCell::new(Vec::new())),
    })));

    // UDP to port 9 never leaves host 0; to port 10 it does.
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let s0 = net.hosts[0].stack.udp_bind(any).unwrap();
    let r9 = net.hosts[1]
        .stack
        .udp_bind("0.0.0.0:9".parse().unwrap())
        .unwrap();
    let r10 = net.hosts[1]
        .stack
        .udp_bind("0.0.0.0:10".parse().unwrap())
        .unwrap();
    let (to9, to10) = (net.addr(1, 9), net.addr(1, 10));
    let r = net.with(0, |s, now, out| s.udp_send(now, s0, to9, b"nine", out));
    assert!(r.is_err());
    net.with(0, |s, now, out| s.udp_send(now, s0, to10, b"ten", out))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(2), |net| {
        net.hosts[1].stack.udp_recv(r10).is_some()
    }));
    assert!(net.hosts[1].stack.udp_recv(r9).is_none());
    assert_eq!(net.hosts[0].stack.ip.counters.policy_discards_out, 1);

    // TCP to port 23 on host 0 is discarded coming in: the connect times
    // out rather than being refused; port 24 connects.
    let _l23 = net.listen(0, 23, Options::default());
    let l24 = net.listen(0, 24, Options::default());
    let c23 = net.connect(1, net.addr(0, 23), Options::default());
    let c24 = net.connect(1, net.addr(0, 24), Options::default());
    let ok = net.run_until(Duration::from_secs(3), |net| net.accept(0, l24).is_some());
    assert!(ok);
    let state = |net: &Net, id| net.hosts[1].stack.tcp.conn(id).map(|c| c.is_established());
    assert_eq!(state(&net, c24), Ok(true));
    assert_eq!(state(&net, c23), Ok(false));
    assert!(net.hosts[0].stack.ip.counters.policy_discards_in >= 1);

    // It saw both directions, with ports and the interface.
    let seen = seen.borrow();
    assert!(seen
        .iter()
        .any(|(out, s)| *out && s.ports == Some((s.ports.unwrap().0, 10))));
    assert!(seen
        .iter()
        .any(|(out, s)| !*out && s.protocol == IpProtocol::Tcp));
    assert!(seen.iter().all(|(_, s)| s.iface == net.hosts[0].iface));
}
