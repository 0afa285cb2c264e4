//! The `tap` backend against the Linux kernel's own stack, in a network
//! namespace made for the test. Needs root and /dev/net/tun; skipped only with CAPNET_SKIP_ROOT_TESTS (with a
//! message) where they are missing.

use capnet_ring::{flags, ChannelLayout, Duplex, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::nic_capnp::{link_watcher, nic};
use capnp::capability::Rc as CapRc;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
};
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const WAIT: Duration = Duration::from_secs(15);
const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0a, 2]);
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 78, 0, 2);
const KERNEL_IP: Ipv4Address = Ipv4Address::new(10, 78, 0, 1);
const TAP: &str = "ntap0";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace with a TAP in it; deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
            return None;
        }
        let name = format!("nicdrv-t{}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        let n = ns.0.as_str();
        let ok = ip(&["-n", n, "link", "set", "lo", "up"])
            && ip(&["-n", n, "tuntap", "add", "dev", TAP, "mode", "tap"])
            && ip(&["-n", n, "addr", "add", "10.78.0.1/24", "dev", TAP])
            && ip(&["-n", n, "link", "set", TAP, "up"]);
        ok.then_some(ns)
    }

    fn link(&self, up: bool) {
        assert!(ip(&[
            "-n",
            &self.0,
            "link",
            "set",
            TAP,
            if up { "up" } else { "down" }
        ]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
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
    dst: EthernetAddress,
    proto: EthernetProtocol,
    len: usize,
    f: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: OUR_MAC,
        dst_addr: dst,
        ethertype: proto,
    }
    .emit(&mut frame);
    f(frame.payload_mut());
    buf
}

fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: OUR_MAC,
        source_protocol_addr: OUR_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: KERNEL_IP,
    };
    eth(
        EthernetAddress::BROADCAST,
        EthernetProtocol::Arp,
        arp.buffer_len(),
        |b| arp.emit(&mut ArpPacket::new_unchecked(b)),
    )
}

/// An echo request with every checksum left at zero (the driver fills them).
fn echo_request(dst: EthernetAddress, seq: u16) -> Vec<u8> {
    let caps = ChecksumCapabilities::ignored();
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 0x4e44,
        seq_no: seq,
        data: b"nicdrv tap test",
    };
    let ipr = Ipv4Repr {
        src_addr: OUR_IP,
        dst_addr: KERNEL_IP,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    eth(
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

#[test]
fn tap_against_the_linux_stack() {
    let Some(ns) = Netns::create() else {
        // Never a silent pass: skipping is something the user asks for.
        assert!(
            std::env::var_os("CAPNET_SKIP_ROOT_TESTS").is_some(),
            "needs root, /dev/net/tun and `ip netns` (set CAPNET_SKIP_ROOT_TESTS=1 to skip)"
        );
        eprintln!("SKIPPED tap_against_the_linux_stack: CAPNET_SKIP_ROOT_TESTS is set");
        return;
    };
    let dir = std::env::temp_dir().join(format!("nicdrv-tap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let listen: PathBuf = dir.join("t0.sock");
    let _proc = Proc(
        Command::new(env!("CARGO_BIN_EXE_nicdrv"))
            .args([
                "--name",
                "t0",
                "--backend",
                "tap",
                "--tap",
                TAP,
                "--netns",
                &ns.0,
                "--mac",
                "02:00:00:00:0a:02",
            ])
            .arg("--listen")
            .arg(&listen)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + WAIT;
    while !listen.exists() {
        assert!(Instant::now() < deadline, "nicdrv did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let mut s = UnixStream::connect(&listen).unwrap();
        s.write_all(&[CONNECT_RPC]).unwrap();
        s.set_nonblocking(true).unwrap();
        let (r, w) = tokio::net::UnixStream::from_std(s).unwrap().into_split();
        let net = twoparty::VatNetwork::new(
            r.compat(),
            w.compat_write(),
            Side::Client,
            Default::default(),
        );
        let mut sys = RpcSystem::new(Box::new(net), None);
        let nic: nic::Client = sys.bootstrap(Side::Server);
        tokio::task::spawn_local(async move {
            let _ = sys.await;
        });
        let link_up = || async {
            let r = nic.info_request().send().promise.await.unwrap();
            r.get().unwrap().get_info().unwrap().get_link_up()
        };
        let wait_link = |up: bool| async move {
            let deadline = Instant::now() + WAIT;
            while link_up().await != up {
                assert!(Instant::now() < deadline, "tap link never became {up}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        wait_link(true).await;
        let r = nic.info_request().send().promise.await.unwrap();
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
        let mut req = nic.watch_link_request();
        req.get()
            .set_watcher(capnp_rpc::new_client(Watcher(seen.clone())));
        req.send().promise.await.unwrap();

        let r = nic.open_rings_request().send().promise.await.unwrap();
        let g = r.get().unwrap().get_grant().unwrap();
        let token = capnet_ring::Token::from_slice(g.get_token().unwrap()).unwrap();
        let layout = ChannelLayout {
            buffers: g.get_buffer_count(),
            buf_size: g.get_buffer_size(),
        };
        let mut h = UnixStream::connect(&listen).unwrap();
        h.write_all(&[CONNECT_HANDOFF]).unwrap();
        let mut d =
            Duplex::attach(capnet_ring::redeem(h.as_fd(), &token, 3).unwrap(), layout).unwrap();

        // ARP: the kernel answers who-has 10.78.0.1.
        let kernel_mac = wait_for(
            &mut d,
            |d| send(d, &arp_request(), 0),
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
                        ..
                    } if source_protocol_addr == KERNEL_IP => Some(source_hardware_addr),
                    _ => None,
                }
            },
        )
        .await;

        // ICMP echo with checksums filled by the driver: the kernel replies,
        // and the driver marks the reply's checksums verified.
        let mut seq = 0;
        let reply_flags = wait_for(
            &mut d,
            |d| {
                seq += 1;
                send(d, &echo_request(kernel_mac, seq), flags::TX_CSUM)
            },
            |f, fl| {
                let eth = EthernetFrame::new_checked(f).ok()?;
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
                (ip.next_header() == IpProtocol::Icmp
                    && icmp.msg_type() == smoltcp::wire::Icmpv4Message::EchoReply
                    && icmp.echo_ident() == 0x4e44)
                    .then_some(fl)
            },
        )
        .await;
        assert_eq!(reply_flags, flags::CSUM_VERIFIED);
        let c = nic.counters_request().send().promise.await.unwrap();
        let c = nicdrv::service::read_counters(c.get().unwrap().get_counters().unwrap());
        assert!(
            c.tx_checksum_filled >= 1 && c.rx_checksum_verified >= 1,
            "{c:?}"
        );
        assert_eq!(c.rx_bad_checksum, 0);

        // The kernel side goes down: we see it (netlink) and drop what we send.
        ns.link(false);
        wait_link(false).await;
        let before = {
            let c = nic.counters_request().send().promise.await.unwrap();
            nicdrv::service::read_counters(c.get().unwrap().get_counters().unwrap()).tx_dropped
        };
        send(&mut d, &echo_request(kernel_mac, 999), flags::TX_CSUM);
        let deadline = Instant::now() + WAIT;
        loop {
            let c = nic.counters_request().send().promise.await.unwrap();
            let c = nicdrv::service::read_counters(c.get().unwrap().get_counters().unwrap());
            if c.tx_dropped > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a frame sent on a down link was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ns.link(true);
        wait_link(true).await;

        // Carrier from our side (TUNSETCARRIER).
        let mut req = nic.set_carrier_request();
        req.get().set_up(false);
        req.send().promise.await.unwrap();
        wait_link(false).await;
        let mut req = nic.set_carrier_request();
        req.get().set_up(true);
        req.send().promise.await.unwrap();
        wait_link(true).await;

        let deadline = Instant::now() + WAIT;
        while seen.borrow().as_slice() != [true, false, true, false, true] {
            assert!(Instant::now() < deadline, "watcher saw {:?}", seen.borrow());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
