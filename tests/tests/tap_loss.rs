//! capnet against the Linux kernel's TCP over a TAP device while nftables
//! in the kernel's namespace drops a random share of the TCP frames in each
//! direction (this kernel has no netem): bulk transfers both ways arrive
//! byte-exact, the frames really were dropped, and both sides really
//! retransmitted. Real processes, no mocks. Needs root.
//!
//! The drops happen on a bridge between the TAP device and a veth pair
//! whose far end holds Linux's address, not in Linux's own input and output
//! hooks: a frame dropped in the output hook is a local transmit error to
//! Linux's TCP, which sends the same segment again as if nothing had been
//! lost (`RetransSegs` does not move and capnet never sees a hole). On the
//! bridge, a dropped frame is lost on the wire for both ends.

use capnet::host::Host;
use capnet_tests::tap_rig::{sha256_file, KillOnDrop, Namespace, CAPNET_IP, LINUX_IP, TAP};
use capnet_tests::Scratch;
use capnet_tests::{cli_ok, pattern, receive_all, require_root, send_pattern, status_counter};
use sha2::{Digest, Sha256};
use std::net::Shutdown;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const OUR_MAC: &str = "02:00:00:00:aa:03";
/// Each transfer, each way, at each loss rate: some 5800 full frames, so
/// that at 1% a transfer without a drop has odds of about 1 in 10^25.
const BYTES: u64 = 8 << 20;
/// A hang guard on every transfer: one that has not ended after this long
/// fails the test with the counters (it is not a speed requirement).
const STALL: Duration = Duration::from_secs(120);

/// Linux's end of the veth pair: its TCP sends through it.
const VETH: &str = "cveth1";

/// Moves Linux's address from the TAP device to a veth pair's far end and
/// bridges the TAP device with the pair's near end, so that every frame
/// between capnet and Linux crosses the bridge. The bridge's own interface
/// does not answer ARP: it would answer for the veth's address (Linux
/// answers for any of its addresses on any interface) and capnet's frames
/// would then be delivered to the bridge's interface, never forwarded.
fn bridge_in_between(ns: &Namespace) {
    ns.sh(&format!(
        "ip addr del {LINUX_IP}/24 dev {TAP} && \
         ip link add cbr0 type bridge stp_state 0 forward_delay 0 && ip link set cbr0 arp off && \
         ip link add cveth0 type veth peer name {VETH} && \
         ip link set {TAP} master cbr0 && ip link set cveth0 master cbr0 && \
         ip addr add {LINUX_IP}/24 dev {VETH} && \
         ip link set cbr0 up && ip link set cveth0 up && ip link set {VETH} up"
    ));
    // One segment per skb from Linux's TCP: the bridge then sees (and
    // drops) single frames, not GSO batches that leave as dozens of them.
    ns.sh(&format!("ip link set {VETH} gso_max_segs 1"));
}

/// The table of drops: in the bridge's forward hook, for TCP frames from
/// capnet (in by the TAP device) and to capnet (out by it), a counter of
/// all of them and a counter of those dropped.
const TABLE: &str = "capnet_loss";

/// Replaces the bridge's drop rules with ones that drop `percent` in a
/// hundred TCP frames each way, at random; its counters start at zero.
fn install_loss(ns: &Namespace, percent: u32) {
    let rules = |name: &str, dev: &str| {
        format!(
            "{dev} \"{TAP}\" ip protocol tcp counter name {name}\n\
             {dev} \"{TAP}\" ip protocol tcp numgen random mod 100 < {percent} counter name {name}_dropped drop\n"
        )
    };
    let table = format!(
        "table bridge {TABLE} {{\n\
         counter from_capnet {{}}\ncounter from_capnet_dropped {{}}\n\
         counter from_linux {{}}\ncounter from_linux_dropped {{}}\n\
         chain drops {{ type filter hook forward priority 0; policy accept;\n{}{}}}\n}}\n",
        rules("from_capnet", "iifname"),
        rules("from_linux", "oifname"),
    );
    ns.sh(&format!(
        "nft delete table bridge {TABLE} 2>/dev/null; nft -f - <<'EOF'\n{table}EOF"
    ));
}

/// What crossed the bridge and what Linux's TCP did about it.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// TCP frames capnet sent, and those of them dropped.
    from_capnet: u64,
    from_capnet_dropped: u64,
    /// TCP frames Linux sent, and those of them dropped.
    from_linux: u64,
    from_linux_dropped: u64,
    /// Linux's TCP retransmissions (`RetransSegs`).
    linux_retransmits: u64,
}

impl Counts {
    fn read(ns: &Namespace) -> Counts {
        let packets = |name: &str| -> u64 {
            let out = ns.sh(&format!("nft list counter bridge {TABLE} {name}"));
            let words: Vec<&str> = out.split_whitespace().collect();
            words
                .windows(2)
                .find(|w| w[0] == "packets")
                .and_then(|w| w[1].parse().ok())
                .unwrap_or_else(|| panic!("no packet count for {name} in {out}"))
        };
        Counts {
            from_capnet: packets("from_capnet"),
            from_capnet_dropped: packets("from_capnet_dropped"),
            from_linux: packets("from_linux"),
            from_linux_dropped: packets("from_linux_dropped"),
            linux_retransmits: linux_tcp_counter(ns, "RetransSegs"),
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            from_capnet: self.from_capnet - before.from_capnet,
            from_capnet_dropped: self.from_capnet_dropped - before.from_capnet_dropped,
            from_linux: self.from_linux - before.from_linux,
            from_linux_dropped: self.from_linux_dropped - before.from_linux_dropped,
            linux_retransmits: self.linux_retransmits - before.linux_retransmits,
        }
    }
}

/// A counter of the `Tcp:` lines in the namespace's `/proc/net/snmp`.
fn linux_tcp_counter(ns: &Namespace, name: &str) -> u64 {
    let snmp = ns.sh("cat /proc/net/snmp");
    let tcp: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Tcp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let at = tcp[0].iter().position(|w| *w == name).unwrap();
    tcp[1][at].parse().unwrap()
}

/// capnet's TCP retransmissions and retransmission timeouts, from `status`.
fn capnet_retransmits(host: &Host) -> (u64, u64) {
    let status = cli_ok(host, &["status"]);
    (
        status_counter(&status, "retransmits"),
        status_counter(&status, "timeouts"),
    )
}

/// Waits for a transfer's thread; a transfer that hangs fails the test with
/// what the counters say.
fn finish<T>(h: JoinHandle<T>, what: &str, ns: &Namespace, host: &Host) -> T {
    let deadline = Instant::now() + STALL;
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} did not end within {STALL:?}: {:?}, capnet {:?}",
            Counts::read(ns),
            capnet_retransmits(host)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.join().unwrap()
}

/// Waits for a program in the namespace to end by itself, successfully.
fn exits_ok(p: &mut KillOnDrop, what: &str) {
    let deadline = Instant::now() + STALL;
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "{what}: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// capnet connects to socat in the namespace and sends `BYTES`; what socat
/// writes to its file is what capnet sent.
fn capnet_to_linux(ns: &Namespace, host: &Host, scratch: &Scratch, port: u16, seed: u64) {
    let sink = scratch.0.join(format!("sink{port}"));
    let mut socat = ns.spawn(&format!(
        "socat -u TCP-LISTEN:{port},reuseaddr OPEN:{},creat,trunc",
        sink.display()
    ));
    ns.wait_for_port(port);
    let net = host.net().unwrap();
    let to = format!("{LINUX_IP}:{port}").parse().unwrap();
    let sender = std::thread::spawn(move || {
        let s = net.tcp_connect(to, None).unwrap();
        let sent = send_pattern(&mut &s, seed, BYTES).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        (s, sent)
    });
    let (s, sent) = finish(sender, "capnet's send", ns, host);
    exits_ok(&mut socat, "socat receiving from capnet");
    drop(s);
    assert_eq!(std::fs::metadata(&sink).unwrap().len(), BYTES);
    assert_eq!(sha256_file(&sink), sent, "what Linux got from capnet");
}

/// socat in the namespace connects to capnet and sends a file of `BYTES`;
/// what capnet reads is the file.
fn linux_to_capnet(ns: &Namespace, host: &Host, scratch: &Scratch, port: u16, seed: u64) {
    let source = scratch.0.join(format!("source{port}"));
    let mut data = vec![0u8; BYTES as usize];
    pattern(seed, 0, &mut data);
    std::fs::write(&source, &data).unwrap();
    let expected: [u8; 32] = Sha256::digest(&data).into();
    let net = host.net().unwrap();
    let listener = net
        .tcp_listen(format!("{CAPNET_IP}:{port}").parse().unwrap(), 1)
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        receive_all(&mut s).unwrap()
    });
    let mut socat = ns.spawn(&format!(
        "socat -u OPEN:{} TCP:{CAPNET_IP}:{port}",
        source.display()
    ));
    let (n, got) = finish(receiver, "capnet's receive", ns, host);
    exits_ok(&mut socat, "socat sending to capnet");
    assert_eq!(n, BYTES);
    assert_eq!(got, expected, "what capnet got from Linux");
}

#[test]
fn byte_exact_both_ways_under_random_loss() {
    if !require_root("byte_exact_both_ways_under_random_loss") {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("tap-loss");
    let ns = Namespace::new("l");
    bridge_in_between(&ns);
    let run = scratch.0.join("host");
    // Without segmentation offload, for the same reason as `gso_max_segs`
    // above: with it nicdrv hands Linux 64 KiB frames, which the bridge
    // forwards (and drops) whole.
    let host = ns.start_host(&run, OUR_MAC, "segmentation = false\n");

    for (i, percent) in [1u32, 3].into_iter().enumerate() {
        install_loss(&ns, percent);
        let port = 40100 + 10 * i as u16;

        // capnet's data lost on the way: capnet must retransmit them.
        let t = Instant::now();
        let (before, (retransmits, timeouts)) = (Counts::read(&ns), capnet_retransmits(&host));
        capnet_to_linux(&ns, &host, &scratch, port, 20 + i as u64);
        let seen = Counts::read(&ns).since(before);
        let after = capnet_retransmits(&host);
        eprintln!(
            "{percent}% loss, capnet to Linux: {:.2} s, {seen:?}, capnet retransmits {} timeouts {}",
            t.elapsed().as_secs_f64(),
            after.0 - retransmits,
            after.1 - timeouts
        );
        assert!(
            seen.from_capnet_dropped > 0,
            "capnet's data were dropped: {seen:?}"
        );
        assert!(
            after.0 > retransmits,
            "capnet retransmitted what was dropped: {seen:?}"
        );

        // Linux's data lost on the way: capnet must take the retransmissions
        // into the holes they fill.
        let t = Instant::now();
        let before = Counts::read(&ns);
        linux_to_capnet(&ns, &host, &scratch, port + 1, 30 + i as u64);
        let seen = Counts::read(&ns).since(before);
        eprintln!(
            "{percent}% loss, Linux to capnet: {:.2} s, {seen:?}",
            t.elapsed().as_secs_f64()
        );
        assert!(
            seen.from_linux_dropped > 0,
            "Linux's data were dropped: {seen:?}"
        );
        assert!(
            seen.linux_retransmits > 0,
            "Linux retransmitted what was dropped: {seen:?}"
        );
    }
    drop(host);
    eprintln!(
        "tap loss test: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
