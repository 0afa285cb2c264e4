//! The `tap` backend against the Linux kernel's own stack, in a network
//! namespace made for the test. Needs root and /dev/net/tun; skipped only with CAPNET_SKIP_ROOT_TESTS (with a
//! message) where they are missing.

use capnet_ring::{flags, ChannelLayout, Duplex, CONNECT_HANDOFF};
use capnet_schema::nic_capnp::{link_watcher, nic};
use capnp::capability::Rc as CapRc;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

mod common;

use common::{arm, connect_nic, wait_change, Events, TimedWatcher, LINK_DEADLINE};

const WAIT: Duration = Duration::from_secs(15);
const TAP: &str = "ntap0";

/// Who the test's frames come from, and whom they ask.
#[derive(Clone, Copy)]
struct Host {
    mac: EthernetAddress,
    ip: Ipv4Address,
    kernel_ip: Ipv4Address,
}

const HOST: Host = Host {
    mac: EthernetAddress([2, 0, 0, 0, 0x0a, 2]),
    ip: Ipv4Address::new(10, 78, 0, 2),
    kernel_ip: Ipv4Address::new(10, 78, 0, 1),
};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace; deleted on drop.
struct Netns(String);

impl Netns {
    /// An empty namespace (lo up), or None without root or /dev/net/tun.
    fn empty(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
            return None;
        }
        let name = format!("nicdrv-{tag}{}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]).then_some(ns)
    }

    /// A namespace with the persistent tap `tap` holding `cidr`, up.
    fn with_tap(tag: &str, tap: &str, cidr: &str) -> Option<Netns> {
        let ns = Netns::empty(tag)?;
        let ok = ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])
            && ns.ip(&["addr", "add", cidr, "dev", tap])
            && ns.ip(&["link", "set", tap, "up"]);
        ok.then_some(ns)
    }

    fn create() -> Option<Netns> {
        Netns::with_tap("t", TAP, "10.78.0.1/24")
    }

    fn ip(&self, args: &[&str]) -> bool {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip -n NS -o link show DEV`, or None if there is no such device.
    fn show(&self, dev: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-o", "link", "show", "dev", dev])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn set_link(&self, dev: &str, up: bool) {
        assert!(self.ip(&["link", "set", dev, if up { "up" } else { "down" }]));
    }

    fn link(&self, up: bool) {
        self.set_link(TAP, up);
    }
}

/// Needs root: a skip only where the user asked for it.
fn skip(test: &str) {
    assert!(
        std::env::var_os("CAPNET_SKIP_ROOT_TESTS").is_some(),
        "needs root, /dev/net/tun and `ip netns` (set CAPNET_SKIP_ROOT_TESTS=1 to skip)"
    );
    eprintln!("SKIPPED {test}: CAPNET_SKIP_ROOT_TESTS is set");
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

struct Proc(Child);

impl Proc {
    /// `nicdrv --backend tap --tap TAP --netns NS --listen LISTEN`; returns once it listens.
    fn spawn(ns: &Netns, tap: &str, name: &str, mac: &str, listen: &Path) -> Proc {
        // A killed predecessor leaves its socket file: wait for the new one.
        let _ = std::fs::remove_file(listen);
        let p = Proc(
            Command::new(env!("CARGO_BIN_EXE_nicdrv"))
                .args(["--name", name, "--backend", "tap", "--tap", tap])
                .args(["--netns", &ns.0, "--mac", mac])
                .arg("--listen")
                .arg(listen)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + WAIT;
        while !listen.exists() {
            assert!(Instant::now() < deadline, "nicdrv {name} did not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        p
    }

    fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One capnp connection to a driver's `--listen` socket.
struct Conn {
    nic: nic::Client,
    task: tokio::task::JoinHandle<()>,
    listen: PathBuf,
}

impl Conn {
    fn open(listen: &Path) -> Conn {
        let (nic, task) = connect_nic(listen);
        Conn {
            nic,
            task,
            listen: listen.to_path_buf(),
        }
    }

    async fn link_up(&self) -> bool {
        let r = self.nic.info_request().send().promise.await.unwrap();
        r.get().unwrap().get_info().unwrap().get_link_up()
    }

    async fn wait_link(&self, up: bool) {
        let deadline = Instant::now() + WAIT;
        while self.link_up().await != up {
            assert!(Instant::now() < deadline, "tap link never became {up}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn set_carrier(&self, up: bool) {
        let mut req = self.nic.set_carrier_request();
        req.get().set_up(up);
        req.send().promise.await.unwrap();
    }

    async fn counters(&self) -> nicdrv::counters::Snapshot {
        let c = self.nic.counters_request().send().promise.await.unwrap();
        nicdrv::service::read_counters(c.get().unwrap().get_counters().unwrap())
    }

    async fn watch_timed(&self) -> Events {
        let ev = Events::default();
        let mut req = self.nic.watch_link_request();
        req.get()
            .set_watcher(capnp_rpc::new_client(TimedWatcher(ev.clone())));
        req.send().promise.await.unwrap();
        ev
    }

    async fn open_rings(&self) -> Duplex {
        let r = self.nic.open_rings_request().send().promise.await.unwrap();
        let g = r.get().unwrap().get_grant().unwrap();
        let token = capnet_ring::Token::from_slice(g.get_token().unwrap()).unwrap();
        let layout = ChannelLayout {
            buffers: g.get_buffer_count(),
            buf_size: g.get_buffer_size(),
        };
        let mut h = UnixStream::connect(&self.listen).unwrap();
        h.write_all(&[CONNECT_HANDOFF]).unwrap();
        Duplex::attach(capnet_ring::redeem(h.as_fd(), &token, 3).unwrap(), layout).unwrap()
    }

    fn close(self) {
        self.task.abort();
    }
}

struct Watcher(Rc<RefCell<Vec<bool>>>);

impl link_watcher::Server for Watcher {
    fn link_changed(
        self: CapRc<Self>,
        params: link_watcher::LinkChangedParams,
        _: link_watcher::LinkChangedResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let r = params.get().map(|p| self.0.borrow_mut().push(p.get_up()));
        std::future::ready(r)
    }
}

fn eth(
    h: Host,
    dst: EthernetAddress,
    proto: EthernetProtocol,
    len: usize,
    f: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: h.mac,
        dst_addr: dst,
        ethertype: proto,
    }
    .emit(&mut frame);
    f(frame.payload_mut());
    buf
}

fn arp_request(h: Host) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: h.mac,
        source_protocol_addr: h.ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: h.kernel_ip,
    };
    eth(
        h,
        EthernetAddress::BROADCAST,
        EthernetProtocol::Arp,
        arp.buffer_len(),
        |b| arp.emit(&mut ArpPacket::new_unchecked(b)),
    )
}

/// An echo request with every checksum left at zero (the driver fills them).
fn echo_request(h: Host, dst: EthernetAddress, seq: u16) -> Vec<u8> {
    let caps = ChecksumCapabilities::ignored();
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 0x4e44,
        seq_no: seq,
        data: b"nicdrv tap test",
    };
    let ipr = Ipv4Repr {
        src_addr: h.ip,
        dst_addr: h.kernel_ip,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    eth(
        h,
        dst,
        EthernetProtocol::Ipv4,
        ipr.buffer_len() + icmp.buffer_len(),
        |b| {
            let mut p = Ipv4Packet::new_unchecked(b);
            ipr.emit(&mut p, &caps);
            icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        },
    )
}

fn send(d: &mut Duplex, f: &[u8], fl: u32) {
    let mut b = d.tx.alloc().unwrap().expect("TX buffer");
    d.tx.buf_mut(&mut b)[..f.len()].copy_from_slice(f);
    d.tx.send(b, f.len() as u32, fl, 0);
    if d.tx.flush().unwrap() {
        d.wake_peer.ring();
    }
}

/// Waits for a received frame that `pick` accepts.
async fn wait_for<T>(
    d: &mut Duplex,
    mut resend: impl FnMut(&mut Duplex),
    mut pick: impl FnMut(&[u8], u32) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    let mut next_send = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "no answer from the kernel");
        if Instant::now() >= next_send {
            resend(d);
            next_send = Instant::now() + Duration::from_millis(300);
        }
        while let Some(b) = d.rx.recv().unwrap() {
            let got = pick(d.rx.data(&b), b.desc().flags);
            d.rx.release(b);
            if let Some(v) = got {
                if d.rx.flush().unwrap() {
                    d.wake_peer.ring();
                }
                return v;
            }
        }
        if d.rx.flush().unwrap() {
            d.wake_peer.ring();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// ARP who-has for the kernel's address; returns the MAC that answered.
async fn arp(d: &mut Duplex, h: Host) -> EthernetAddress {
    wait_for(
        d,
        |d| send(d, &arp_request(h), 0),
        |f, _| {
            let eth = EthernetFrame::new_checked(f).ok()?;
            if eth.ethertype() != EthernetProtocol::Arp {
                return None;
            }
            match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                } if source_protocol_addr == h.kernel_ip && target_protocol_addr == h.ip => {
                    Some(source_hardware_addr)
                }
                _ => None,
            }
        },
    )
    .await
}

/// ICMP echo to the kernel with checksums filled by the driver; returns the
/// reply's descriptor flags.
async fn ping(d: &mut Duplex, h: Host, kernel_mac: EthernetAddress) -> u32 {
    let mut seq = 0;
    wait_for(
        d,
        |d| {
            seq += 1;
            send(d, &echo_request(h, kernel_mac, seq), flags::TX_CSUM)
        },
        |f, fl| {
            let eth = EthernetFrame::new_checked(f).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            (ip.next_header() == IpProtocol::Icmp
                && ip.dst_addr() == h.ip
                && icmp.msg_type() == smoltcp::wire::Icmpv4Message::EchoReply
                && icmp.echo_ident() == 0x4e44)
                .then_some(fl)
        },
    )
    .await
}

fn tmpdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nicdrv-tap-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn local_test(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

#[test]
fn tap_against_the_linux_stack() {
    let Some(ns) = Netns::create() else {
        return skip("tap_against_the_linux_stack");
    };
    let dir = tmpdir("stack");
    let listen = dir.join("t0.sock");
    let _proc = Proc::spawn(&ns, TAP, "t0", "02:00:00:00:0a:02", &listen);
    local_test(async {
        let nic = Conn::open(&listen);
        nic.wait_link(true).await;
        let r = nic.nic.info_request().send().promise.await.unwrap();
        assert_eq!(
            r.get()
                .unwrap()
                .get_info()
                .unwrap()
                .get_backend()
                .unwrap()
                .to_str()
                .unwrap(),
            "tap"
        );

        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut req = nic.nic.watch_link_request();
        req.get()
            .set_watcher(capnp_rpc::new_client(Watcher(seen.clone())));
        req.send().promise.await.unwrap();

        let mut d = nic.open_rings().await;
        // ARP: the kernel answers who-has 10.78.0.1.
        let kernel_mac = arp(&mut d, HOST).await;
        // ICMP echo with checksums filled by the driver: the kernel replies,
        // and the driver marks the reply's checksums verified.
        assert_eq!(ping(&mut d, HOST, kernel_mac).await, flags::CSUM_VERIFIED);
        let c = nic.counters().await;
        assert!(
            c.tx_checksum_filled >= 1 && c.rx_checksum_verified >= 1,
            "{c:?}"
        );
        assert_eq!(c.rx_bad_checksum, 0);

        // The kernel side goes down: we see it (netlink) and drop what we send.
        ns.link(false);
        nic.wait_link(false).await;
        let before = nic.counters().await.tx_dropped;
        send(&mut d, &echo_request(HOST, kernel_mac, 999), flags::TX_CSUM);
        let deadline = Instant::now() + WAIT;
        while nic.counters().await.tx_dropped <= before {
            assert!(
                Instant::now() < deadline,
                "a frame sent on a down link was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ns.link(true);
        nic.wait_link(true).await;

        // Carrier from our side (TUNSETCARRIER).
        nic.set_carrier(false).await;
        nic.wait_link(false).await;
        nic.set_carrier(true).await;
        nic.wait_link(true).await;

        let deadline = Instant::now() + WAIT;
        while seen.borrow().as_slice() != [true, false, true, false, true] {
            assert!(Instant::now() < deadline, "watcher saw {:?}", seen.borrow());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ip link set down/up` in the namespace and TUNSETCARRIER, back to back (so
/// the kernel's linkwatch rate limit is in play): every change reaches the
/// port's carrier word, its doorbell and the link watcher within `LINK_DEADLINE` (latency printed).
#[test]
fn tap_link_events_reach_every_surface() {
    let tap = "nlev0";
    let Some(ns) = Netns::with_tap("l", tap, "10.80.0.1/24") else {
        return skip("tap_link_events_reach_every_surface");
    };
    let dir = tmpdir("events");
    let listen = dir.join("l0.sock");
    let _proc = Proc::spawn(&ns, tap, "l0", "02:00:00:00:0c:02", &listen);
    let h = Host {
        mac: EthernetAddress([2, 0, 0, 0, 0x0c, 2]),
        ip: Ipv4Address::new(10, 80, 0, 2),
        kernel_ip: Ipv4Address::new(10, 80, 0, 1),
    };
    local_test(async {
        let nic = Conn::open(&listen);
        nic.wait_link(true).await;
        let ev = nic.watch_timed().await;
        let mut d = nic.open_rings().await;
        let kernel_mac = arp(&mut d, h).await;
        let mut worst = Duration::ZERO;
        let mut changes = 0;
        for round in 0..3 {
            for how in ["ip link set", "setCarrier"] {
                for up in [false, true] {
                    let armed = arm(&d, &ev);
                    if how == "setCarrier" {
                        nic.set_carrier(up).await;
                    } else {
                        ns.set_link(tap, up);
                    }
                    let seen = wait_change(&d, &ev, armed, up, WAIT).await;
                    assert_eq!(nic.link_up().await, up, "info.linkUp");
                    println!(
                        "round {round}: {how} {}: {seen}",
                        if up { "up" } else { "down" }
                    );
                    worst = worst.max(seen.worst());
                    changes += 1;
                }
            }
            // The link works after every round (the kernel flushed its
            // neighbour table on the way down: it learns us from our ARP).
            assert_eq!(arp(&mut d, h).await, kernel_mac);
            assert_eq!(ping(&mut d, h, kernel_mac).await, flags::CSUM_VERIFIED);
        }
        println!("worst tap link-event latency over {changes} changes: {worst:?} (`ip` process start included)");
        assert!(worst < LINK_DEADLINE, "worst {worst:?}");
        assert_eq!(nic.counters().await.link_changes, 1 + changes);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// The bond layout: two persistent taps enslaved to br0 (which holds the
/// namespace's address), one nicdrv on each. Each driver is killed with
/// SIGKILL and started again with the same arguments; it re-attaches to the
/// same tap, which stays in the bridge, and the kernel answers through the
/// bridge again. Nothing nicdrv did removed either tap.
#[test]
fn two_taps_in_a_bridge_survive_driver_kills() {
    let Some(ns) = Netns::empty("b") else {
        return skip("two_taps_in_a_bridge_survive_driver_kills");
    };
    let (ta, tb) = ("tapA", "tapB");
    assert!(ns.ip(&["link", "add", "br0", "type", "bridge"]));
    assert!(ns.ip(&["addr", "add", "10.81.0.1/24", "dev", "br0"]));
    assert!(ns.ip(&["link", "set", "br0", "up"]));
    for t in [ta, tb] {
        assert!(ns.ip(&["tuntap", "add", "dev", t, "mode", "tap"]));
        assert!(ns.ip(&["link", "set", t, "master", "br0"]));
        assert!(ns.ip(&["link", "set", t, "up"]));
    }
    let dir = tmpdir("bridge");
    let (la, lb) = (dir.join("a.sock"), dir.join("b.sock"));
    let host = |last: u8| Host {
        mac: EthernetAddress([2, 0, 0, 0, 0x0b, last]),
        ip: Ipv4Address::new(10, 81, 0, last),
        kernel_ip: Ipv4Address::new(10, 81, 0, 1),
    };
    let (ha, hb) = (host(0x0a), host(0x0b));
    let index = |t: &str| {
        let line = ns.show(t).unwrap_or_else(|| panic!("{t} is gone"));
        assert!(line.contains("master br0"), "{t} left the bridge: {line}");
        line.split(':').next().unwrap().trim().to_string()
    };
    let (ia, ib) = (index(ta), index(tb));
    let mut pa = Proc::spawn(&ns, ta, "a", "02:00:00:00:0b:0a", &la);
    let mut pb = Proc::spawn(&ns, tb, "b", "02:00:00:00:0b:0b", &lb);
    local_test(async {
        // Both drivers at once: each reaches the kernel through the bridge.
        let (mut ca, mut cb) = (Conn::open(&la), Conn::open(&lb));
        ca.wait_link(true).await;
        cb.wait_link(true).await;
        let (mut da, mut db) = (ca.open_rings().await, cb.open_rings().await);
        let kernel_mac = arp(&mut da, ha).await;
        assert_eq!(arp(&mut db, hb).await, kernel_mac, "one bridge");
        assert_eq!(ping(&mut da, ha, kernel_mac).await, flags::CSUM_VERIFIED);
        assert_eq!(ping(&mut db, hb, kernel_mac).await, flags::CSUM_VERIFIED);

        for round in 0..3 {
            for which in ["a", "b"] {
                let (p, c, d, t, l, h, mac, i) = if which == "a" {
                    (
                        &mut pa,
                        &mut ca,
                        &mut da,
                        ta,
                        &la,
                        ha,
                        "02:00:00:00:0b:0a",
                        &ia,
                    )
                } else {
                    (
                        &mut pb,
                        &mut cb,
                        &mut db,
                        tb,
                        &lb,
                        hb,
                        "02:00:00:00:0b:0b",
                        &ib,
                    )
                };
                p.kill9();
                // The tap stays: same device, still in the bridge.
                assert_eq!(&index(t), i, "{t} was recreated");
                let t0 = Instant::now();
                *p = Proc::spawn(&ns, t, which, mac, l);
                let fresh = Conn::open(l);
                fresh.wait_link(true).await;
                let up = t0.elapsed();
                let old = std::mem::replace(c, fresh);
                old.close();
                *d = c.open_rings().await;
                let t1 = Instant::now();
                assert_eq!(arp(d, h).await, kernel_mac);
                assert_eq!(ping(d, h, kernel_mac).await, flags::CSUM_VERIFIED);
                println!(
                    "round {round}: {which} killed and restarted: link up {:.1} ms after the restart, ARP + ping through br0 in {:.1} ms",
                    up.as_secs_f64() * 1000.0,
                    t1.elapsed().as_secs_f64() * 1000.0
                );
                assert_eq!(&index(t), i);
            }
            // The other driver was never disturbed.
            assert_eq!(ping(&mut da, ha, kernel_mac).await, flags::CSUM_VERIFIED);
            assert_eq!(ping(&mut db, hb, kernel_mac).await, flags::CSUM_VERIFIED);
        }
        ca.close();
        cb.close();
    });
    // Orderly exits do not remove persistent taps either.
    drop((pa, pb));
    assert_eq!(index(ta), ia);
    assert_eq!(index(tb), ib);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tap that does not exist is created by nicdrv, not persistent: it
/// vanishes with the driver (so restarts need taps made beforehand).
#[test]
fn a_tap_nicdrv_creates_vanishes_with_it() {
    let Some(ns) = Netns::empty("g") else {
        return skip("a_tap_nicdrv_creates_vanishes_with_it");
    };
    let dir = tmpdir("ghost");
    let listen = dir.join("g.sock");
    let p = Proc::spawn(&ns, "ghost0", "g", "02:00:00:00:0d:02", &listen);
    assert!(ns.show("ghost0").is_some(), "nicdrv creates a missing tap");
    drop(p);
    let deadline = Instant::now() + WAIT;
    while ns.show("ghost0").is_some() {
        assert!(Instant::now() < deadline, "the tap outlived its creator");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tap deleted under the driver (`ip link del`) leaves it a dead fd that
/// polls as an error forever: the driver exits non-zero at once rather than
/// spin (its supervisor decides what next).
#[test]
fn a_deleted_tap_stops_the_driver() {
    let tap = "deltap0";
    let Some(ns) = Netns::with_tap("d", tap, "10.82.0.1/24") else {
        return skip("a_deleted_tap_stops_the_driver");
    };
    let dir = tmpdir("deleted");
    let listen = dir.join("d.sock");
    let mut p = Proc::spawn(&ns, tap, "d", "02:00:00:00:0e:02", &listen);
    assert!(ns.ip(&["link", "del", tap]));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < WAIT, "nicdrv outlived its tap");
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "nicdrv exited {status} {:?} after its tap was deleted",
        t0.elapsed()
    );
    assert!(!status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
