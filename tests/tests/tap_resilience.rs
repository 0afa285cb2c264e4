//! Resilience over real TAP devices with the Linux kernel's own stack as the
//! peer, in network namespaces the tests make: an active-backup bond over
//! two taps in a kernel bridge fails over when the kernel takes the active
//! tap down, and a TCP stream survives ten SIGKILLs of its port's nicdrv.
//! Real processes, no mocks. Needs root.

use capnet::host::Host;
use capnet_tests::tap_rig::{sh, KillOnDrop};
use capnet_tests::{
    fds_and_memfds, receive_counting, require_root, send_pattern, snapshot, wait_progress,
    Progress, Snapshot,
};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A network namespace with persistent taps, and a scratch run directory:
/// all of it removed on drop, so that a failed test leaves nothing behind.
/// Declare it before the `Host`, so that the host (and its drivers holding
/// the taps) goes first.
struct Lab {
    ns: String,
    taps: Vec<String>,
    dir: std::path::PathBuf,
}

impl Lab {
    fn empty(tag: &str) -> Lab {
        let pid = std::process::id();
        let ns = format!("capnet-{tag}{pid}");
        let dir = std::env::temp_dir().join(format!("capnet-test-{tag}-{pid}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            ns,
            taps: Vec::new(),
            dir,
        };
        sh(&format!(
            "ip netns add {0} && ip -n {0} link set lo up",
            lab.ns
        ));
        lab
    }

    /// A tap name unique to this test run (at most 15 characters).
    fn tap_name(&self, tag: &str, suffix: &str) -> String {
        let name = format!("c{tag}{}{suffix}", std::process::id());
        assert!(name.len() <= 15, "{name} is too long for an interface");
        name
    }

    /// Adds a persistent tap (no holder yet: NO-CARRIER until nicdrv opens it).
    fn add_tap(&mut self, name: &str) {
        sh(&format!("ip -n {} tuntap add dev {name} mode tap", self.ns));
        self.taps.push(name.to_string());
    }

    fn ip(&self, args: &str) {
        sh(&format!("ip -n {} {args}", self.ns));
    }

    fn exec(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "bash", "-c", cmd]);
        c
    }

    fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = self
                .exec(&format!("ss -ltn 'sport = :{port}' | grep -q LISTEN"))
                .status()
                .unwrap()
                .success();
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nothing listens on {port} in {}", self.ns);
    }

    /// `socat -u TCP-LISTEN:PORT STDOUT` in the namespace: what a client
    /// sends to the kernel arrives on the child's stdout.
    fn socat_sink(&self, port: u16) -> KillOnDrop {
        let child = self
            .exec(&format!("exec socat -u TCP-LISTEN:{port},reuseaddr STDOUT"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        self.wait_for_port(port);
        KillOnDrop(child)
    }

    /// `socat -u STDIN TCP-LISTEN:PORT` in the namespace: what the test
    /// writes to the child's stdin, the kernel sends to the client.
    fn socat_source(&self, port: u16) -> KillOnDrop {
        let child = self
            .exec(&format!("exec socat -u STDIN TCP-LISTEN:{port},reuseaddr"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_for_port(port);
        KillOnDrop(child)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for tap in &self.taps {
            let _ = Command::new("ip")
                .args(["-n", &self.ns, "link", "del", tap])
                .output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last lines the supervisor logged, for failure messages.
fn log_tail(host: &Host) -> String {
    let log = host.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Joins a thread, failing (with the host's log) if it takes longer than
/// `timeout` (a hang in the system under test must not hang the test).
fn join_within<T>(h: JoinHandle<T>, timeout: Duration, what: &str, host: &Host) -> T {
    let deadline = Instant::now() + timeout;
    while !h.is_finished() {
        if Instant::now() > deadline {
            panic!(
                "{what} did not finish within {timeout:?}; snapshot {:?}\nlog:\n{}",
                snapshot(host),
                log_tail(host)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    h.join().unwrap()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An active-backup bond over two taps enslaved to a kernel bridge. The
/// kernel takes the active tap down in the middle of 64 MiB each way; both
/// transfers complete byte-exact and the bond moves to the other leg.
#[test]
fn tap_bond_failover_keeps_a_transfer() {
    if !require_root("tap_bond_failover_keeps_a_transfer") {
        return;
    }
    const BYTES: u64 = 64 << 20;
    // Receivers at 16 MiB/s: each transfer takes about 4 s, so the failover
    // lands in its middle.
    const RATE: u64 = 16 << 20;
    const TCP_BUFFER: u64 = 256 << 10;
    let started = Instant::now();
    let mut lab = Lab::empty("rb");
    let (tap_a, tap_b) = (lab.tap_name("rb", "a"), lab.tap_name("rb", "b"));
    lab.ip("link add br0 type bridge stp_state 0 forward_delay 0");
    lab.add_tap(&tap_a);
    lab.add_tap(&tap_b);
    lab.ip(&format!("link set {tap_a} master br0"));
    lab.ip(&format!("link set {tap_b} master br0"));
    lab.ip("addr add 10.77.0.2/24 dev br0");
    lab.ip("addr add fd77::2/64 dev br0 nodad");
    lab.ip("link set br0 up");
    lab.ip(&format!("link set {tap_a} up"));
    lab.ip(&format!("link set {tap_b} up"));

    let config = format!(
        "[netsrv]\ntcp_buffer = {TCP_BUFFER}\n\
         [[port]]\nname = \"tapa\"\nbackend = \"tap\"\ntap = \"{tap_a}\"\nnetns = \"{ns}\"\nmac = \"02:00:00:00:bb:01\"\n\
         [[port]]\nname = \"tapb\"\nbackend = \"tap\"\ntap = \"{tap_b}\"\nnetns = \"{ns}\"\nmac = \"02:00:00:00:bb:02\"\n\
         [[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nlegs = [\"tapa\", \"tapb\"]\nprimary = \"tapa\"\n\
         addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\n",
        ns = lab.ns
    );
    let run = lab.dir.join("host");
    let host = Host::start(&config, &run, &run).expect("capnet up");
    let net = host.net().unwrap();
    let snap0 = snapshot(&host);
    assert_eq!(
        snap0.active, "tapa",
        "primary leg active at start: {snap0:?}"
    );

    // Client -> kernel: libclient sends, socat's stdout comes back to us.
    let mut sink = lab.socat_sink(40011);
    let up_progress = Progress::default();
    let up_rx = {
        let mut out = sink.0.stdout.take().unwrap();
        let p = up_progress.clone();
        std::thread::spawn(move || receive_counting(&mut out, &p, RATE))
    };
    let up = net.tcp_connect(addr("10.77.0.2:40011"), None).unwrap();
    up.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let up_tx = std::thread::spawn(move || {
        let sent = send_pattern(&mut &up, 11, BYTES)?;
        up.shutdown(Shutdown::Write)?;
        Ok::<_, std::io::Error>((sent, up))
    });

    // Kernel -> client: we feed socat's stdin, libclient receives.
    let mut source = lab.socat_source(40012);
    let down_tx = {
        let mut stdin = source.0.stdin.take().unwrap();
        std::thread::spawn(move || send_pattern(&mut stdin, 12, BYTES))
    };
    let mut down = net.tcp_connect(addr("10.77.0.2:40012"), None).unwrap();
    down.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let down_progress = Progress::default();
    let down_rx = {
        let p = down_progress.clone();
        std::thread::spawn(move || {
            let r = receive_counting(&mut down, &p, RATE);
            drop(down);
            r
        })
    };

    // In the middle of both transfers the kernel takes the active tap down.
    for (p, what) in [
        (&up_progress, "to the kernel"),
        (&down_progress, "from the kernel"),
    ] {
        assert!(
            wait_progress(p, BYTES / 4, Duration::from_secs(30)),
            "transfer {what} does not move: {:?}\nlog:\n{}",
            snapshot(&host),
            log_tail(&host)
        );
    }
    let before = snapshot(&host);
    let (up_at, down_at) = (
        up_progress.load(Ordering::Relaxed),
        down_progress.load(Ordering::Relaxed),
    );
    assert!(
        up_at < BYTES && down_at < BYTES,
        "transfers ended too early"
    );
    eprintln!(
        "before the cut: active {}, failovers {}, announcements {}",
        before.active, before.failovers, before.announcements
    );
    let t_down = Instant::now();
    lab.ip(&format!("link set {tap_a} down"));
    let failover = loop {
        let s = snapshot(&host);
        if s.active != before.active {
            break t_down.elapsed();
        }
        assert!(
            t_down.elapsed() < Duration::from_secs(10),
            "no failover within 10 s of `ip link set {tap_a} down`: {s:?}\nlog:\n{}",
            log_tail(&host)
        );
    };
    // The bridge learned the new path: the bond's MAC now sits behind the
    // other tap (the gratuitous ARP and the traffic after it teach it).
    let learned = Instant::now();
    loop {
        let fdb = sh(&format!("bridge -n {} fdb show br br0", lab.ns));
        if fdb
            .lines()
            .any(|l| l.starts_with("02:00:00:00:bb:01") && l.contains(&format!("dev {tap_b} ")))
        {
            break;
        }
        assert!(
            learned.elapsed() < Duration::from_secs(10),
            "the bridge never learned the bond behind {tap_b}:\n{fdb}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Both streams move again: beyond what was buffered at the cut.
    let margin = TCP_BUFFER + (128 << 10);
    let mut resumed = Vec::new();
    for (p, at, what) in [
        (&up_progress, up_at, "to the kernel"),
        (&down_progress, down_at, "from the kernel"),
    ] {
        let goal = (at + margin).min(BYTES);
        assert!(
            wait_progress(p, goal, Duration::from_secs(30)),
            "transfer {what} stalled after the failover: {:?}\nlog:\n{}",
            snapshot(&host),
            log_tail(&host)
        );
        resumed.push(t_down.elapsed());
    }

    let (sent_up, up) = join_within(up_tx, Duration::from_secs(120), "send to the kernel", &host)
        .expect("send to the kernel");
    let (got_up, digest_up) =
        join_within(up_rx, Duration::from_secs(120), "socat sink", &host).unwrap();
    drop(up);
    assert!(sink.0.wait().unwrap().success(), "socat sink failed");
    let sent_down =
        join_within(down_tx, Duration::from_secs(120), "socat feeder", &host).expect("feed socat");
    drop(source.0.stdin.take());
    let (got_down, digest_down) = join_within(
        down_rx,
        Duration::from_secs(120),
        "receive from the kernel",
        &host,
    )
    .expect("receive from the kernel");
    let _ = source.0.wait();

    let snap = snapshot(&host);
    eprintln!(
        "tap bond failover: `ip link set {tap_a} down` at {} MiB up / {} MiB down; \
         active {} -> {} in {:.1} ms (snapshot poll); streams moving again after {:.1} ms (to kernel) \
         and {:.1} ms (from kernel); failovers {}, announcements {}; test {:.1} s",
        up_at >> 20,
        down_at >> 20,
        before.active,
        snap.active,
        ms(failover),
        ms(resumed[0]),
        ms(resumed[1]),
        snap.failovers,
        snap.announcements,
        secs(started.elapsed())
    );
    assert_eq!(got_up, BYTES, "bytes that reached the kernel");
    assert_eq!(digest_up, sent_up, "data to the kernel differs");
    assert_eq!(got_down, BYTES, "bytes from the kernel");
    assert_eq!(digest_down, sent_down, "data from the kernel differs");
    assert_eq!(snap.active, "tapb", "{snap:?}");
    assert!(
        snap.failovers > before.failovers,
        "no failover counted: {before:?} -> {snap:?}"
    );
    assert!(
        snap.announcements > before.announcements,
        "no gratuitous ARP / NA after the failover: {before:?} -> {snap:?}"
    );
    assert_eq!(snap.tcp_resets, 0, "{snap:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    drop(net);
    host.stop().unwrap();
}

/// One tap port; 256 MiB from the kernel to a slow libclient reader while
/// the port's nicdrv is SIGKILLed ten times. The stream survives byte-exact,
/// and netsrv holds exactly what it held before the kills.
#[test]
fn tap_nicdrv_killed_ten_times_during_256mib() {
    if !require_root("tap_nicdrv_killed_ten_times_during_256mib") {
        return;
    }
    const BYTES: u64 = 256 << 20;
    // About 51 s at 5 MiB/s: ten kills 1.2 s apart and their recoveries fit.
    const RATE: u64 = 5 << 20;
    const TCP_BUFFER: u64 = 256 << 10;
    const KILLS: u32 = 10;
    const DRIVER: &str = "nicdrv tap0";
    let started = Instant::now();
    let mut lab = Lab::empty("rk");
    let tap = lab.tap_name("rk", "");
    lab.add_tap(&tap);
    lab.ip(&format!("addr add 10.79.0.1/24 dev {tap}"));
    lab.ip(&format!("link set {tap} up"));
    let config = format!(
        "[netsrv]\ntcp_buffer = {TCP_BUFFER}\n\
         [[port]]\nname = \"tap0\"\nbackend = \"tap\"\ntap = \"{tap}\"\nnetns = \"{}\"\n\
         mac = \"02:00:00:00:cc:01\"\naddresses = [\"10.79.0.2/24\"]\n",
        lab.ns
    );
    let run = lab.dir.join("host");
    let host = Host::start(&config, &run, &run).expect("capnet up");
    // The driver started before the host was ready: older than this.
    let mut last_start = Instant::now();
    let net = host.net().unwrap();

    let mut source = lab.socat_source(40021);
    let feeder = {
        let mut stdin = source.0.stdin.take().unwrap();
        std::thread::spawn(move || send_pattern(&mut stdin, 21, BYTES))
    };
    let mut s = net.tcp_connect(addr("10.79.0.1:40021"), None).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let progress = Progress::default();
    let receiver = {
        let p = progress.clone();
        std::thread::spawn(move || {
            let r = receive_counting(&mut s, &p, RATE);
            (r, s)
        })
    };
    assert!(
        wait_progress(&progress, 4 << 20, Duration::from_secs(30)),
        "stream does not move: {:?}\nlog:\n{}",
        snapshot(&host),
        log_tail(&host)
    );
    let netsrv = host.process("netsrv").expect("netsrv");
    let held_before = fds_and_memfds(netsrv.pid);
    let snap_before = snapshot(&host);

    // New data after a restart: more than netsrv and libclient can have
    // buffered at the kill.
    let margin = TCP_BUFFER + (128 << 10);
    let mut kill_to_running = Vec::new();
    let mut restart_to_moving = Vec::new();
    let mut restart_to_frame = Vec::new();
    for k in 1..=KILLS {
        // Not a quick exit: the supervisor restarts at once.
        let due = last_start + Duration::from_millis(1250);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at_kill = progress.load(Ordering::Relaxed);
        assert!(
            at_kill + margin < BYTES,
            "the transfer ended before kill {k}; slow the receiver"
        );
        let t_kill = Instant::now();
        let killed = host.kill(DRIVER, libc::SIGKILL).expect("kill nicdrv");
        // Frames the stack took from the port so far (cumulative over
        // driver instances): any beyond this come through the new driver.
        let rx_at_kill = snapshot(&host).port("tap0").rx_frames;
        let p = host
            .wait_process(
                DRIVER,
                |p| p.restarts == k && p.state == "running" && p.pid != 0 && p.pid != killed,
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("kill {k}: {e}\nlog:\n{}", log_tail(&host)));
        let restarted = Instant::now();
        last_start = restarted;
        assert_eq!(p.last_exit, "killed by signal 9", "{p:?}");
        kill_to_running.push(restarted - t_kill);
        let first_frame = loop {
            let port = snapshot(&host).port("tap0").clone();
            if port.rx_frames > rx_at_kill {
                break restarted.elapsed();
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(30),
                "kill {k}: no frame through the new driver within 30 s: {port:?}\nlog:\n{}",
                log_tail(&host)
            );
        };
        restart_to_frame.push(first_frame);
        assert!(
            wait_progress(&progress, at_kill + margin, Duration::from_secs(30)),
            "kill {k}: the stream did not move again within 30 s of the restart \
             (at {at_kill}, now {}): {:?}\nlog:\n{}",
            progress.load(Ordering::Relaxed),
            snapshot(&host),
            log_tail(&host)
        );
        restart_to_moving.push(restarted.elapsed());
    }

    // netsrv holds what it held before: one driver's rings, no stale fds.
    let deadline = Instant::now() + Duration::from_secs(3);
    let held_after = loop {
        let held = fds_and_memfds(netsrv.pid);
        if held == held_before || Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let snap_kills = snapshot(&host);

    let (result, s) = join_within(receiver, Duration::from_secs(180), "receive 256 MiB", &host);
    let (got, digest) = result.unwrap_or_else(|e| {
        panic!(
            "receive failed: {e} at {} bytes; {:?}\nlog:\n{}",
            progress.load(Ordering::Relaxed),
            snapshot(&host),
            log_tail(&host)
        )
    });
    drop(s);
    let sent =
        join_within(feeder, Duration::from_secs(30), "socat feeder", &host).expect("feed socat");
    drop(source.0.stdin.take());
    let _ = source.0.wait();
    let snap: Snapshot = snapshot(&host);
    let netsrv_after = host.process("netsrv").expect("netsrv");

    let median_max = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        (ms(v[v.len() / 2]), ms(v[v.len() - 1]))
    };
    let (running_med, running_max) = median_max(&kill_to_running);
    let (frame_med, frame_max) = median_max(&restart_to_frame);
    let (moving_med, moving_max) = median_max(&restart_to_moving);
    eprintln!(
        "tap nicdrv killed {KILLS} times during 256 MiB at {} MiB/s: \
         kill->running median {running_med:.1} ms max {running_max:.1} ms; \
         restart->first frame from the kernel median {frame_med:.1} ms max {frame_max:.1} ms; \
         restart->moving (+{} KiB past the kill point) median {moving_med:.1} ms max {moving_max:.1} ms \
         (all: {:?} ms); netsrv fds/memfds {held_before:?} -> {held_after:?}; test {:.1} s",
        RATE >> 20,
        margin >> 10,
        restart_to_moving
            .iter()
            .map(|d| ms(*d).round() as u64)
            .collect::<Vec<_>>(),
        secs(started.elapsed())
    );
    assert_eq!(got, BYTES, "bytes from the kernel");
    assert_eq!(digest, sent, "data from the kernel differs");
    assert_eq!(snap.tcp_resets, 0, "{snap:?}");
    assert_eq!(
        (netsrv_after.pid, netsrv_after.restarts),
        (netsrv.pid, 0),
        "netsrv itself was restarted: {netsrv_after:?}"
    );
    assert_eq!(
        (
            snap.driver_attaches - snap_before.driver_attaches,
            snap.driver_detaches - snap_before.driver_detaches
        ),
        (KILLS as u64, KILLS as u64),
        "{snap_before:?} -> {snap:?}"
    );
    assert_eq!(snap.driver_attaches, 11, "{snap:?}");
    assert_eq!(snap.driver_detaches, 10, "{snap:?}");
    assert_eq!(snap.rings_mapped, 1, "{snap:?}");
    assert_eq!(
        snap.port("tap0").epoch,
        snap_before.port("tap0").epoch + KILLS,
        "{snap:?}"
    );
    assert_eq!(
        held_after, held_before,
        "netsrv's (fds, memfds) after {KILLS} driver restarts differ from before; {snap_kills:?}"
    );
    drop(net);
    host.stop().unwrap();
}
