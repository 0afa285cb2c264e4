//! What the hostile-peer tests share: being the other end of a sim wire,
//! TCP frames made by hand, a service's shared memory mapped through /proc
//! (as a hostile driver sees it), a bin directory whose binaries run with a
//! test hook, and a process's memory and threads.

#![allow(dead_code)]

use capnet_ring::{ChannelLayout, SharedRegion};
use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the service binaries of this build are.
pub fn target_dir() -> PathBuf {
    capnet::host::capnet_binary()
        .expect("build the workspace first")
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A bin directory in `dir` with the real capnet, nicdrv, netsrv and tlsd,
/// except that `name` runs with the environment `env` when its arguments
/// contain `when` (e.g. "--name sim1"): how a test gives one process a
/// test hook without giving it to every process of every test.
pub fn hooked_bin_dir(dir: &Path, name: &str, when: &str, env: &[(&str, &str)]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = target_dir();
    for b in ["capnet", "nicdrv", "netsrv", "tlsd"] {
        if b != name {
            std::os::unix::fs::symlink(real.join(b), bin.join(b)).unwrap();
        }
    }
    let exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'; "))
        .collect();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" {when} \"*) {exports};; esac\nexec '{}' \"$@\"\n",
        real.join(name).display()
    );
    let path = bin.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Resident memory (KiB) and threads of a process.
pub fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("Threads:"))
}

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A TCP segment to make a frame of.
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// An Ethernet/IPv4/TCP frame with correct checksums, from `src_mac` to
/// `dst_mac`.
pub fn tcp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], s: &Seg) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + s.payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + s.payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&s.src.ip().octets());
    f.extend_from_slice(&s.dst.ip().octets());
    f.extend_from_slice(&s.src.port().to_be_bytes());
    f.extend_from_slice(&s.dst.port().to_be_bytes());
    f.extend_from_slice(&s.seq.to_be_bytes());
    f.extend_from_slice(&s.ack.to_be_bytes());
    f.extend_from_slice(&[0x50, s.flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(s.payload);
    nicdrv::csum::fill_tx(&mut f).unwrap();
    f
}

/// An ARP request from `(mac, ip)` for `target`: the host learns us from it.
pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// The test as the other end of a host's sim wire.
pub struct WirePeer {
    pub wire: nicdrv::sim::Wire,
}

impl WirePeer {
    pub fn connect(path: &Path) -> WirePeer {
        let layout = nicdrv::dataplane::layout_for(1500, 512);
        WirePeer {
            wire: nicdrv::sim::connect_wire(path, layout).unwrap(),
        }
    }

    /// Sends a frame, waiting up to a second for a free wire buffer; false
    /// if none came.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if let Some(mut b) = self.wire.duplex.tx.alloc().unwrap() {
                self.wire.duplex.tx.buf_mut(&mut b)[..frame.len()].copy_from_slice(frame);
                self.wire.duplex.tx.send(b, frame.len() as u32, 0, 0);
                return true;
            }
            self.flush();
            self.receive(|_| {});
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Publishes what was sent and wakes the host's driver.
    pub fn flush(&mut self) {
        if self.wire.duplex.tx.flush().unwrap() {
            self.wire.duplex.wake_peer.ring();
        }
    }

    /// Hands every frame the host sent to `f` and gives the buffers back.
    pub fn receive(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(b) = self.wire.duplex.rx.recv().unwrap() {
            f(self.wire.duplex.rx.data(&b));
            self.wire.duplex.rx.release(b);
        }
        if self.wire.duplex.rx.flush().unwrap() {
            self.wire.duplex.wake_peer.ring();
        }
    }

    /// Waits up to `timeout` for a frame from the host that `want` accepts.
    pub fn wait_for(&mut self, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            self.receive(|f| seen |= want(f));
            std::thread::sleep(Duration::from_millis(1));
        }
        seen
    }
}

/// Whether `f` is a TCP segment with every bit of `flags` set, to `port`.
pub fn is_tcp_to(f: &[u8], port: u16, flags: u8) -> bool {
    f.len() >= 54
        && f[12..14] == [0x08, 0x00]
        && f[23] == 6
        && u16::from_be_bytes([f[36], f[37]]) == port
        && f[47] & flags == flags
}

/// A memfd that process `pid` holds, named `name`, mapped here the way its
/// peer maps it: what a hostile driver can write.
pub struct Mapped {
    region: SharedRegion,
}

impl Mapped {
    pub fn find(pid: u32, name: &str) -> Mapped {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if !link
                .to_string_lossy()
                .starts_with(&format!("/memfd:{name} "))
            {
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())
                .unwrap();
            let len = file.metadata().unwrap().len() as usize;
            let region = SharedRegion::from_fd(OwnedFd::from(file), len).unwrap();
            return Mapped { region };
        }
        panic!("process {pid} holds no memfd {name}");
    }

    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// The layout its duplex header announces.
    pub fn layout(&self) -> ChannelLayout {
        ChannelLayout {
            buffers: u32::from_le_bytes(self.read::<4>(8)),
            buf_size: u32::from_le_bytes(self.read::<4>(12)),
        }
    }

    /// Where the data buffers of the channel from side A (`a_to_b`) or
    /// from side B start.
    pub fn data_offset(&self, a_to_b: bool) -> usize {
        let layout = self.layout();
        let channel = if a_to_b {
            128
        } else {
            128 + layout.region_bytes()
        };
        channel + 2 * capnet_ring::queue::queue_bytes(layout.buffers)
    }

    /// Where the active queue of that channel starts.
    pub fn active_queue_offset(&self, a_to_b: bool) -> usize {
        self.data_offset(a_to_b) - capnet_ring::queue::queue_bytes(self.layout().buffers)
    }

    fn read<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.read_u8(at + i);
        }
        out
    }

    pub fn read_u8(&self, at: usize) -> u8 {
        assert!(at < self.region.len());
        // SAFETY: `at` is inside the mapping, which `self.region` keeps
        // alive; a volatile read of shared memory another process writes.
        unsafe { self.region.as_ptr().add(at).read_volatile() }
    }

    pub fn write_u8(&self, at: usize, v: u8) {
        assert!(at < self.region.len());
        // SAFETY: as in `read_u8`; writing shared bytes is what this
        // hostile peer is for, and the processes must survive it.
        unsafe { self.region.as_ptr().add(at).write_volatile(v) }
    }
}
