//! Two (or more) engines joined by a simulated wire in one process: a
//! bottleneck with a rate, a drop-tail queue, a propagation delay, and
//! faults on request (random loss, reordering, duplication). Time is
//! simulated, so an hour of TCP runs in moments and every run with one
//! seed is the same run.

#![allow(dead_code)]

use capnet_tcpip::stack::Event;
use capnet_tcpip::tcp::{Conn, ListenerId, Options, TcpId};
use capnet_tcpip::{Cidr, Device, IfaceId, Instant, RxMeta, Stack};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability of dropping a frame.
    pub loss: f64,
    /// Probability of delaying a frame by an extra `reorder_delay`.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Probability of sending a frame twice.
    pub duplicate: f64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(3),
            duplicate: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bottleneck rate in bytes per second (each direction).
    pub rate: u64,
    /// Frames the bottleneck queue holds before dropping.
    pub queue: usize,
    /// A receiver that takes frames in batches (a service woken by a
    /// doorbell): arrivals are held to the next multiple of this and taken
    /// together, then answered with one poll. Zero: each frame on arrival.
    pub batch: Duration,
    pub faults: Faults,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            delay: Duration::from_millis(5),
            rate: 100_000_000 / 8 * 10, // 1 Gbit/s
            queue: 1000,
            batch: Duration::ZERO,
            faults: Faults::default(),
        }
    }
}

struct InFlight {
    at: Instant,
    order: u64,
    to: usize,
    frame: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// Frames a host sent during one call.
#[derive(Default)]
pub struct Outbox {
    pub frames: Vec<Vec<u8>>,
}

impl Device for Outbox {
    fn transmit(&mut self, _iface: IfaceId, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let mut f = vec![0u8; len];
        fill(&mut f);
        self.frames.push(f);
        true
    }
}

pub struct Host {
    pub stack: Stack,
    pub iface: IfaceId,
    pub addr: std::net::IpAddr,
}

pub struct Net {
    pub now: Instant,
    pub hosts: Vec<Host>,
    pub link: Link,
    rng: SmallRng,
    wire: BinaryHeap<InFlight>,
    /// When each direction's bottleneck is free again.
    busy_until: Vec<Instant>,
    /// Frames queued per direction (for the drop-tail bound).
    queued: Vec<Vec<Instant>>,
    order: u64,
    pub frames: u64,
    pub dropped: u64,
    /// Every frame put on the wire, for tests that inspect segments.
    pub capture: Option<Vec<(Instant, usize, Vec<u8>)>>,
    /// The receiving NIC: may change a frame for host `to` and says what
    /// it did (offload marks).
    pub nic: Option<Nic>,
}

/// A receiving NIC's offload, as [`Net::nic`] runs it.
pub type Nic = Box<dyn FnMut(usize, &mut Vec<u8>) -> RxMeta>;

pub fn mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, i as u8 + 1]
}

impl Net {
    /// Hosts 10.0.0.1, .2, ... (and fd00::1, ::2, ...) on one segment.
    pub fn new(n: usize, link: Link, seed: u64) -> Net {
        let now = Instant::from_millis(1_000);
        let mut rng = SmallRng::seed_from_u64(seed);
        let hosts = (0..n)
            .map(|i| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                let config = capnet_tcpip::Config {
                    secret,
                    ..Default::default()
                };
                let mut stack = Stack::new(now, config);
                let iface = stack.add_iface(mac(i), 1500);
                let v4: Cidr = format!("10.0.0.{}/24", i + 1).parse().unwrap();
                let v6: Cidr = format!("fd00::{}/64", i + 1).parse().unwrap();
                stack.add_address(iface, v4).unwrap();
                stack.add_address(iface, v6).unwrap();
                Host {
                    stack,
                    iface,
                    addr: v4.addr,
                }
            })
            .collect();
        Net {
            now,
            hosts,
            link,
            rng,
            wire: BinaryHeap::new(),
            busy_until: vec![now; n],
            queued: vec![Vec::new(); n],
            order: 0,
            frames: 0,
            dropped: 0,
            capture: None,
            nic: None,
        }
    }

    pub fn addr(&self, host: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.hosts[host].addr, port)
    }

    pub fn addr6(&self, host: usize, port: u16) -> SocketAddr {
        format!("[fd00::{}]:{port}", host + 1).parse().unwrap()
    }

    /// Puts what host `from` sent on the wire.
    fn send(&mut self, from: usize, out: Outbox) {
        for frame in out.frames {
            self.frames += 1;
            if let Some(c) = self.capture.as_mut() {
                c.push((self.now, from, frame.clone()));
            }
            let now = self.now;
            self.queued[from].retain(|t| *t > now);
            if self.queued[from].len() >= self.link.queue {
                self.dropped += 1;
                continue;
            }
            let f = self.link.faults;
            if self.rng.gen_bool(f.loss) {
                self.dropped += 1;
                continue;
            }
            // Serialization at the bottleneck, then propagation.
            let start = self.busy_until[from].max(self.now);
            let tx = Duration::from_nanos(frame.len() as u64 * 1_000_000_000 / self.link.rate);
            let done = start + tx;
            self.busy_until[from] = done;
            self.queued[from].push(done);
            let mut at = done + self.link.delay;
            if self.rng.gen_bool(f.reorder) {
                at += f.reorder_delay;
            }
            let batch = self.link.batch.as_micros() as u64;
            if batch > 0 {
                let us = at.micros().div_ceil(batch) * batch;
                at = Instant::from_micros(us);
            }
            let copies = if self.rng.gen_bool(f.duplicate) { 2 } else { 1 };
            let dst = frame[..6].to_vec();
            for to in 0..self.hosts.len() {
                if to == from || (dst != mac(to) && dst[0] & 1 == 0) {
                    continue;
                }
                for _ in 0..copies {
                    self.order += 1;
                    self.wire.push(InFlight {
                        at,
                        order: self.order,
                        to,
                        frame: frame.clone(),
                    });
                }
            }
        }
    }

    /// Runs `f` on a host's stack with a device, then puts its frames on the wire.
    pub fn with<R>(
        &mut self,
        host: usize,
        f: impl FnOnce(&mut Stack, Instant, &mut Outbox) -> R,
    ) -> R {
        let mut out = Outbox::default();
        let now = self.now;
        let r = f(&mut self.hosts[host].stack, now, &mut out);
        self.send(host, out);
        r
    }

    /// One step: deliver what is due, poll every host, advance to the
    /// next event (but not past `limit`).
    pub fn step(&mut self, limit: Instant) {
        while let Some(top) = self.wire.peek() {
            if top.at > self.now {
                break;
            }
            let mut f = self.wire.pop().unwrap();
            let iface = self.hosts[f.to].iface;
            let meta = match &mut self.nic {
                Some(nic) => nic(f.to, &mut f.frame),
                None => RxMeta::default(),
            };
            self.with(f.to, |s, now, out| {
                s.receive(now, iface, &f.frame, meta, out)
            });
        }
        for h in 0..self.hosts.len() {
            self.with(h, |s, now, out| s.poll(now, out));
        }
        let mut next = limit;
        if let Some(top) = self.wire.peek() {
            next = next.min(top.at);
        }
        for h in &self.hosts {
            if let Some(t) = h.stack.next_deadline() {
                next = next.min(t);
            }
        }
        self.now = next.max(self.now + Duration::from_micros(1)).min(limit);
    }

    /// Steps until `done` says so or `timeout` of simulated time passes.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + timeout;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(end);
        }
        done(self)
    }

    pub fn listen(&mut self, host: usize, port: u16, opts: Options) -> ListenerId {
        let addr = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
        self.hosts[host].stack.tcp_listen(addr, 64, opts).unwrap()
    }

    /// Takes a connection off `l`'s queue; every call checks that
    /// `accept_ready` said so beforehand.
    pub fn accept(&mut self, host: usize, l: ListenerId) -> Option<TcpId> {
        let tcp = &mut self.hosts[host].stack.tcp;
        let ready = tcp.accept_ready(l).unwrap();
        let got = tcp.accept(l).unwrap().map(|(id, _)| id);
        assert_eq!(ready, got.is_some(), "accept_ready disagrees with accept");
        got
    }

    pub fn connect(&mut self, host: usize, to: SocketAddr, opts: Options) -> TcpId {
        self.with(host, |s, now, _| {
            s.tcp_connect(now, None, to, opts).unwrap()
        })
    }

    /// Drains a host's events (tests look at sockets directly).
    pub fn drain_events(&mut self, host: usize) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = self.hosts[host].stack.next_event() {
            v.push(e);
        }
        v
    }
}

/// Reads everything `c` holds now onto the end of `got`.
pub fn read_all(c: &mut Conn, got: &mut Vec<u8>) {
    let mut buf = [0u8; 16384];
    loop {
        let n = c.read(&mut buf);
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
    }
}
