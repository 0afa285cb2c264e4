//! A packetdrill-style harness: one engine (a [`Stack`] with one
//! interface, 10.0.0.1/24 and fd00::1/64) and a peer driven by hand. The
//! peer injects crafted Ethernet/IP/TCP frames at chosen simulated times
//! and collects every TCP segment the engine sends, so a test states the
//! segments the engine must answer with. Sequence numbers are relative to
//! the ISNs (the engine's is learnt from its SYN or SYN-ACK; the peer's is
//! [`Peer::peer_isn`]). ARP requests and neighbour solicitations for the
//! peer are answered at once, so the engine can always send.

// Each test file uses a part of the harness and of the names it brings.
#![allow(dead_code, unused_imports)]

pub use capnet_tcpip::tcp::Options;
use capnet_tcpip::tcp::{Conn, ListenerId, TcpId};
use capnet_tcpip::{Cidr, Device, IfaceId, Instant, RxMeta, Stack};
pub use capnet_wire::tcp::Flags;
use capnet_wire::tcp::{Header, SeqNumber};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, TcpPacket,
};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
pub use std::time::Duration;

pub const ENGINE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const ENGINE_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const ENGINE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
/// The port the engine listens on, or connects to.
pub const ENGINE_PORT: u16 = 8080;
pub const PEER_PORT: u16 = 40000;

/// A TCP segment the engine sent.
#[derive(Clone)]
pub struct Seg {
    pub at: Instant,
    pub h: Header,
    pub payload: Vec<u8>,
    /// The whole IP packet, for quoting in an ICMP error.
    pub ip: Vec<u8>,
    /// SEG.SEQ - the engine's ISN, SEG.ACK - the peer's ISN.
    pub seq: i32,
    pub ack: i32,
}

impl Seg {
    pub fn flags(&self) -> Flags {
        self.h.flags
    }
    pub fn len(&self) -> usize {
        self.payload.len()
    }
    pub fn is_pure_ack(&self) -> bool {
        self.h.flags.ack()
            && !self.h.flags.syn()
            && !self.h.flags.fin()
            && !self.h.flags.rst()
            && self.payload.is_empty()
    }
    /// SACK blocks relative to the peer's ISN.
    pub fn sacks(&self, peer_isn: SeqNumber) -> Vec<(i32, i32)> {
        self.h
            .sack_blocks()
            .iter()
            .map(|(a, b)| (*a - peer_isn, *b - peer_isn))
            .collect()
    }
}

impl std::fmt::Debug for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "@{}ms {}>{} [{:?}] seq {} ack {} win {} len {}",
            self.at.millis(),
            self.h.src_port,
            self.h.dst_port,
            self.h.flags,
            self.seq,
            self.ack,
            self.h.window,
            self.payload.len()
        )?;
        if let Some(m) = self.h.mss {
            write!(f, " mss {m}")?;
        }
        if let Some(s) = self.h.window_scale {
            write!(f, " ws {s}")?;
        }
        if self.h.sack_permitted {
            write!(f, " sackOK")?;
        }
        if let Some((v, e)) = self.h.timestamp {
            write!(f, " ts {v}/{e}")?;
        }
        if self.h.sack_len > 0 {
            write!(f, " sack {:?}", self.h.sack_blocks())?;
        }
        Ok(())
    }
}

/// Frames the engine sent during one call.
#[derive(Default)]
struct Capture {
    frames: Vec<Vec<u8>>,
}

impl Device for Capture {
    fn transmit(&mut self, _iface: IfaceId, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let mut f = vec![0u8; len];
        fill(&mut f);
        self.frames.push(f);
        true
    }
}

pub struct Peer {
    pub stack: Stack,
    pub iface: IfaceId,
    pub now: Instant,
    pub v6: bool,
    /// The engine's end and the peer's end of the connection under test.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub engine_isn: SeqNumber,
    pub peer_isn: SeqNumber,
    /// The peer's window field and whether it sends timestamps.
    pub window: u16,
    pub timestamps: bool,
    /// The peer's TSval clock: `ts_base` + milliseconds.
    pub ts_base: u32,
    /// The last TSval the engine sent (the peer's TSecr).
    pub ts_recent: u32,
    /// The round trip the scripted handshakes take.
    pub rtt: Duration,
    queue: VecDeque<Seg>,
    /// ICMP messages the engine sent (the IP payload).
    pub icmp: Vec<Vec<u8>>,
}

impl Peer {
    /// A fresh engine at t = 1 s, on IPv4 or IPv6.
    pub fn new(v6: bool) -> Peer {
        Peer::with_config(v6, capnet_tcpip::Config::default())
    }

    pub fn with_config(v6: bool, mut config: capnet_tcpip::Config) -> Peer {
        let now = Instant::from_millis(1_000);
        if config.secret == [0; 32] {
            for (i, b) in config.secret.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37).wrapping_add(11);
            }
        }
        let mut stack = Stack::new(now, config);
        let iface = stack.add_iface(ENGINE_MAC, 1500);
        stack
            .add_address(iface, Cidr::new(ENGINE_V4.into(), 24).unwrap())
            .unwrap();
        stack
            .add_address(iface, Cidr::new(ENGINE_V6.into(), 64).unwrap())
            .unwrap();
        let (e, p): (IpAddr, IpAddr) = if v6 {
            (ENGINE_V6.into(), PEER_V6.into())
        } else {
            (ENGINE_V4.into(), PEER_V4.into())
        };
        Peer {
            stack,
            iface,
            now,
            v6,
            local: SocketAddr::new(e, ENGINE_PORT),
            remote: SocketAddr::new(p, PEER_PORT),
            engine_isn: SeqNumber(0),
            peer_isn: SeqNumber(1_000_000),
            window: 65535,
            timestamps: true,
            ts_base: 500_000,
            ts_recent: 0,
            rtt: Duration::from_millis(50),
            queue: VecDeque::new(),
            icmp: Vec::new(),
        }
    }

    // ---- time ----

    /// Runs every timer due up to `t`, then sets the clock to `t`.
    pub fn run_to(&mut self, t: Instant) {
        let mut guard = 0u32;
        while let Some(d) = self.stack.next_deadline() {
            if d > t {
                break;
            }
            self.now = d.max(self.now);
            self.poll();
            guard += 1;
            assert!(guard < 1_000_000, "timers do not settle at {:?}", self.now);
        }
        self.now = t.max(self.now);
        self.poll();
    }

    /// Moves the clock on by `d`, running timers on the way.
    pub fn advance(&mut self, d: Duration) {
        self.run_to(self.now + d);
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Runs timers until the engine sends a TCP segment, at most `limit`
    /// later; returns it (left out of the queue) or None.
    pub fn wait_segment(&mut self, limit: Duration) -> Option<Seg> {
        let end = self.now + limit;
        loop {
            if let Some(s) = self.queue.pop_front() {
                return Some(s);
            }
            let d = self.stack.next_deadline()?;
            if d > end {
                self.run_to(end);
                return self.queue.pop_front();
            }
            self.now = d.max(self.now);
            self.poll();
        }
    }

    /// Polls as the bindings do: again while the engine says work is due
    /// now (a neighbour solicitation queued by output leaves on the next).
    fn poll(&mut self) {
        for _ in 0..16 {
            let mut cap = Capture::default();
            self.stack.poll(self.now, &mut cap);
            self.absorb(cap.frames);
            if self.stack.next_deadline().is_none_or(|d| d > self.now) {
                break;
            }
        }
    }

    pub fn millis_since(&self, t: Instant) -> u64 {
        self.now.since(t).as_millis() as u64
    }

    // ---- what the engine sent ----

    /// The next segment the engine sent, if any.
    pub fn next(&mut self) -> Option<Seg> {
        self.queue.pop_front()
    }

    /// The next segment the engine sent; panics (naming `what`) if none.
    #[track_caller]
    pub fn expect(&mut self, what: &str) -> Seg {
        match self.queue.pop_front() {
            Some(s) => s,
            None => panic!(
                "expected {what} at {}ms; the engine sent nothing",
                self.now.millis()
            ),
        }
    }

    /// The next segment, which must satisfy `check`.
    #[track_caller]
    pub fn expect_that(&mut self, what: &str, check: impl FnOnce(&Seg) -> bool) -> Seg {
        let s = self.expect(what);
        assert!(check(&s), "expected {what}, got {s}");
        s
    }

    /// Nothing was sent (beyond what was taken).
    #[track_caller]
    pub fn expect_none(&mut self, why: &str) {
        if let Some(s) = self.queue.front() {
            let all: Vec<String> = self.queue.iter().map(|s| s.to_string()).collect();
            panic!("{why}: expected no segment, got {s} (all: {all:#?})");
        }
    }

    /// Everything sent so far, taken.
    pub fn take_all(&mut self) -> Vec<Seg> {
        self.queue.drain(..).collect()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    // ---- what the peer sends ----

    /// The peer's TSval now.
    pub fn tsval(&self) -> u32 {
        self.ts_base.wrapping_add(self.now.millis() as u32)
    }

    /// A header from the peer with sequence numbers relative to the ISNs
    /// (`seq` to the peer's, `ack` to the engine's), the peer's window,
    /// and a timestamp when the peer uses them.
    pub fn hdr(&self, flags: Flags, seq: i64, ack: i64) -> Header {
        Header {
            src_port: self.remote.port(),
            dst_port: self.local.port(),
            seq: self.peer_isn + (seq as u32),
            ack: if flags.ack() {
                self.engine_isn + (ack as u32)
            } else {
                SeqNumber(0)
            },
            flags,
            window: self.window,
            timestamp: self.timestamps.then(|| (self.tsval(), self.ts_recent)),
            ..Header::default()
        }
    }

    /// Sends a segment from the peer to the engine (relative numbers).
    pub fn send(&mut self, flags: Flags, seq: i64, ack: i64, payload: &[u8]) {
        let h = self.hdr(flags, seq, ack);
        self.inject(&h, payload);
    }

    /// Sends a header as it is (absolute numbers, given ports).
    pub fn inject(&mut self, h: &Header, payload: &[u8]) {
        let frame = self.tcp_frame(h, payload);
        self.receive(&frame);
    }

    /// Sends segments that arrive together: the engine takes them all, then
    /// is polled once, as bindings that drain a ring of frames per wakeup do.
    pub fn inject_batch(&mut self, segments: &[(Header, Vec<u8>)]) {
        let mut cap = Capture::default();
        for (h, payload) in segments {
            let frame = self.tcp_frame(h, payload);
            self.stack
                .receive(self.now, self.iface, &frame, RxMeta::default(), &mut cap);
        }
        self.absorb(cap.frames);
        self.poll();
    }

    /// The frame that carries a segment from the peer.
    fn tcp_frame(&self, h: &Header, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (self.remote.ip(), self.local.ip());
        let hl = h.header_len();
        let mut l4 = vec![0u8; hl + payload.len()];
        h.emit(&mut l4);
        l4[hl..].copy_from_slice(payload);
        TcpPacket::new_unchecked(&mut l4[..]).fill_checksum(&src.into(), &dst.into());
        ip_frame(src, dst, IpProtocol::Tcp, &l4, 64)
    }

    /// Hands the engine a raw frame, then polls it as the bindings do
    /// (output that the frame made due leaves at once).
    pub fn receive(&mut self, frame: &[u8]) {
        let mut cap = Capture::default();
        self.stack
            .receive(self.now, self.iface, frame, RxMeta::default(), &mut cap);
        self.absorb(cap.frames);
        self.poll();
    }

    /// An ICMP "fragmentation needed" (v4) or "packet too big" (v6) from a
    /// router on the path, quoting `quoted` (an IP packet the engine sent,
    /// perhaps edited).
    pub fn send_too_big(&mut self, quoted: &[u8], mtu: u32) {
        let (src, dst) = (self.remote.ip(), self.local.ip());
        let frame = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let q = &quoted[..quoted.len().min(548)];
                let mut body = vec![3u8, 4, 0, 0, 0, 0];
                body.extend_from_slice(&(mtu as u16).to_be_bytes());
                body.extend_from_slice(q);
                Icmpv4Packet::new_unchecked(&mut body[..]).fill_checksum();
                ip_frame(src, dst, IpProtocol::Icmp, &body, 64)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let q = &quoted[..quoted.len().min(1232)];
                let mut body = vec![2u8, 0, 0, 0];
                body.extend_from_slice(&mtu.to_be_bytes());
                body.extend_from_slice(q);
                Icmpv6Packet::new_unchecked(&mut body[..]).fill_checksum(&s, &d);
                ip_frame(src, dst, IpProtocol::Icmpv6, &body, 64)
            }
            _ => unreachable!(),
        };
        self.receive(&frame);
    }

    // ---- the engine's sockets ----

    pub fn listen(&mut self, backlog: usize, opts: Options) -> ListenerId {
        let any: IpAddr = if self.v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        self.stack
            .tcp_listen(SocketAddr::new(any, ENGINE_PORT), backlog, opts)
            .unwrap()
    }

    /// The engine connects from an ephemeral port to the peer's port.
    pub fn connect(&mut self, opts: Options) -> TcpId {
        let id = self
            .stack
            .tcp_connect(self.now, None, self.remote, opts)
            .unwrap();
        let flow = self.stack.tcp.conn(id).unwrap().flow;
        self.local = flow.local;
        self.poll();
        id
    }

    pub fn accept(&mut self, l: ListenerId) -> Option<TcpId> {
        self.stack.tcp.accept(l).unwrap().map(|(id, _)| id)
    }

    pub fn conn(&self, id: TcpId) -> &Conn {
        self.stack.tcp.conn(id).expect("connection exists")
    }

    pub fn alive(&self, id: TcpId) -> bool {
        self.stack.tcp.conn(id).is_ok()
    }

    /// Runs a socket call, then lets the engine send what it wants to.
    pub fn with<R>(&mut self, id: TcpId, f: impl FnOnce(&mut Conn) -> R) -> R {
        let r = self.stack.tcp(self.now, id, f).expect("connection exists");
        self.poll();
        r
    }

    pub fn write(&mut self, id: TcpId, data: &[u8]) -> usize {
        self.with(id, |c| c.write(data))
    }

    pub fn read_all(&mut self, id: TcpId) -> Vec<u8> {
        self.with(id, |c| {
            let mut v = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = c.read(&mut buf);
                if n == 0 {
                    break v;
                }
                v.extend_from_slice(&buf[..n]);
            }
        })
    }

    pub fn close(&mut self, id: TcpId) {
        let mut cap = Capture::default();
        self.stack.tcp_close(self.now, id, &mut cap);
        self.absorb(cap.frames);
        self.poll();
    }

    pub fn close_listener(&mut self, l: ListenerId) {
        let mut cap = Capture::default();
        self.stack.tcp_close_listener(self.now, l, &mut cap);
        self.absorb(cap.frames);
        self.poll();
    }

    // ---- scripted handshakes ----

    /// The peer's SYN with every option Linux sends.
    pub fn syn(&self, mss: u16, wscale: Option<u8>) -> Header {
        let mut h = self.hdr(Flags::SYN, 0, 0);
        h.mss = Some(mss);
        h.window_scale = wscale;
        h.sack_permitted = true;
        if self.timestamps {
            h.timestamp = Some((self.tsval(), 0));
        }
        h
    }

    /// Passive open: the engine listens, the peer connects (SYN with
    /// MSS 1460, window scale `wscale`, SACK, timestamps), the engine's
    /// SYN-ACK comes back, the peer ACKs. Returns the accepted connection.
    pub fn passive_open(&mut self, opts: Options, wscale: Option<u8>) -> (ListenerId, TcpId) {
        let l = self.listen(16, opts);
        let syn = self.syn(1460, wscale);
        self.inject(&syn, &[]);
        let synack = self.expect_that("SYN-ACK", |s| s.flags() == Flags::SYN | Flags::ACK);
        assert_eq!(synack.ack, 1);
        self.advance(self.rtt);
        self.send(Flags::ACK, 1, 1, &[]);
        let id = self.accept(l).expect("an accepted connection");
        assert!(self.conn(id).is_established());
        (l, id)
    }

    /// Active open: the engine connects, the peer answers the SYN with a
    /// SYN-ACK (MSS 1460, `wscale`, SACK, timestamps) and the engine ACKs.
    pub fn active_open(&mut self, opts: Options, wscale: Option<u8>) -> TcpId {
        let id = self.connect(opts);
        self.expect_that("SYN", |s| s.flags() == Flags::SYN);
        self.advance(self.rtt);
        let mut sa = self.syn(1460, wscale);
        sa.flags = Flags::SYN | Flags::ACK;
        sa.ack = self.engine_isn + 1u32;
        if self.timestamps {
            sa.timestamp = Some((self.tsval(), self.ts_recent));
        }
        self.inject(&sa, &[]);
        self.expect_that("ACK of the SYN-ACK", |s| {
            s.is_pure_ack() && s.seq == 1 && s.ack == 1
        });
        assert!(self.conn(id).is_established());
        id
    }

    // ---- frames the engine sent ----

    fn absorb(&mut self, frames: Vec<Vec<u8>>) {
        let mut pending: VecDeque<Vec<u8>> = frames.into();
        while let Some(f) = pending.pop_front() {
            let eth = EthernetFrame::new_checked(&f[..]).expect("an Ethernet frame");
            assert_eq!(eth.src_addr().0, ENGINE_MAC);
            let answer = match eth.ethertype() {
                EthernetProtocol::Arp => arp_answer(eth.payload()),
                EthernetProtocol::Ipv4 => {
                    let p = Ipv4Packet::new_checked(eth.payload()).expect("IPv4");
                    assert!(p.verify_checksum());
                    let ip = eth.payload()[..usize::from(p.total_len())].to_vec();
                    let body = p.payload().to_vec();
                    let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
                    match p.next_header() {
                        IpProtocol::Tcp => self.take_tcp(src, dst, &body, ip),
                        IpProtocol::Icmp => self.icmp.push(body),
                        other => panic!("unexpected IPv4 protocol {other}"),
                    }
                    None
                }
                EthernetProtocol::Ipv6 => {
                    let p = Ipv6Packet::new_checked(eth.payload()).expect("IPv6");
                    let ip = eth.payload()[..40 + usize::from(p.payload_len())].to_vec();
                    let body = p.payload().to_vec();
                    let (src, dst) = (p.src_addr(), p.dst_addr());
                    match p.next_header() {
                        IpProtocol::Tcp => {
                            self.take_tcp(src.into(), dst.into(), &body, ip);
                            None
                        }
                        IpProtocol::Icmpv6 => self.icmpv6(src, dst, &body),
                        other => panic!("unexpected IPv6 next header {other}"),
                    }
                }
                other => panic!("unexpected ethertype {other}"),
            };
            if let Some(frame) = answer {
                let mut cap = Capture::default();
                self.stack
                    .receive(self.now, self.iface, &frame, RxMeta::default(), &mut cap);
                pending.extend(cap.frames);
            }
        }
    }

    fn take_tcp(&mut self, src: IpAddr, dst: IpAddr, body: &[u8], ip: Vec<u8>) {
        let t = TcpPacket::new_checked(body).expect("a TCP segment");
        assert!(
            t.verify_checksum(&src.into(), &dst.into()),
            "the engine's TCP checksum is wrong"
        );
        let (h, off) = Header::parse(body).expect("a TCP header");
        if h.flags.syn() && h.src_port == self.local.port() && h.dst_port == self.remote.port() {
            self.engine_isn = h.seq;
        }
        if let Some((val, _)) = h.timestamp {
            self.ts_recent = val;
        }
        self.queue.push_back(Seg {
            at: self.now,
            seq: h.seq - self.engine_isn,
            ack: h.ack - self.peer_isn,
            h,
            payload: body[off..].to_vec(),
            ip,
        });
    }

    fn icmpv6(&mut self, src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Option<Vec<u8>> {
        let caps = ChecksumCapabilities::default();
        let p = Icmpv6Packet::new_checked(body).expect("ICMPv6");
        match Icmpv6Repr::parse(&src, &dst, &p, &caps) {
            Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, .. }))
                if target_addr == PEER_V6 =>
            {
                let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                    target_addr: PEER_V6,
                    lladdr: Some(EthernetAddress(PEER_MAC).into()),
                });
                let mut b = vec![0u8; na.buffer_len()];
                na.emit(
                    &PEER_V6,
                    &src,
                    &mut Icmpv6Packet::new_unchecked(&mut b[..]),
                    &caps,
                );
                Some(ip_frame(
                    PEER_V6.into(),
                    src.into(),
                    IpProtocol::Icmpv6,
                    &b,
                    255,
                ))
            }
            Ok(Icmpv6Repr::Ndisc(_)) => None,
            _ => {
                self.icmp.push(body.to_vec());
                None
            }
        }
    }
}

/// The reply to an ARP request for the peer's address.
fn arp_answer(payload: &[u8]) -> Option<Vec<u8>> {
    let repr = ArpRepr::parse(&ArpPacket::new_checked(payload).ok()?).ok()?;
    let ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = repr
    else {
        return None;
    };
    if target_protocol_addr != PEER_V4 {
        return None;
    }
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_V4,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let mut f = vec![0u8; 14 + reply.buffer_len()];
    EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(ENGINE_MAC),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    reply.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    Some(f)
}

/// An Ethernet frame from the peer to the engine carrying `l4`.
pub fn ip_frame(src: IpAddr, dst: IpAddr, protocol: IpProtocol, l4: &[u8], hops: u8) -> Vec<u8> {
    let (ethertype, header) = if src.is_ipv4() {
        (EthernetProtocol::Ipv4, 20)
    } else {
        (EthernetProtocol::Ipv6, 40)
    };
    let mut f = vec![0u8; 14 + header + l4.len()];
    EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(ENGINE_MAC),
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            next_header: protocol,
            payload_len: l4.len(),
            hop_limit: hops,
        }
        .emit(
            &mut Ipv4Packet::new_unchecked(&mut f[14..]),
            &ChecksumCapabilities::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: protocol,
            payload_len: l4.len(),
            hop_limit: hops,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[14..])),
        _ => panic!("mixed families"),
    }
    f[14 + header..].copy_from_slice(l4);
    f
}

// ---------------------------------------------------------------------------
// What every scripted test file uses.

pub use capnet_tcpip::tcp::{ConnError, State};

pub const A: Flags = Flags::ACK;
pub const PA: Flags = Flags(Flags::PSH.0 | Flags::ACK.0);

pub const SA: Flags = Flags(Flags::SYN.0 | Flags::ACK.0);
pub const RA: Flags = Flags(Flags::RST.0 | Flags::ACK.0);
pub const RST: Flags = Flags::RST;

/// The segments fill the peer's window `wnd` in segments of at most
/// `mss`, stopping short of a runt at its edge (RFC 9293 3.8.6.2.1, sender
/// SWS avoidance; Linux's `tcp_snd_wnd_test`).
#[track_caller]
pub fn assert_fills_window(segs: &[Seg], wnd: usize, mss: usize) {
    let sent: usize = segs.iter().map(|s| s.len()).sum();
    assert!(segs.iter().all(|s| s.len() <= mss), "MSS {mss}: {segs:?}");
    assert!(sent <= wnd && sent + mss > wnd, "window {wnd}: {segs:?}");
}

pub fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Options with a small receive buffer (and so a small window scale).
pub fn opts() -> Options {
    Options::default()
}
