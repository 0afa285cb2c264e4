//! A stand-in for netsrv in the test's process, for libclient's offload API
//! (what tlsd needs from netsrv): it speaks the service socket protocol
//! (`R` + capnp bootstrapping `Net`, `H` for the handoff channel), and its
//! TCP sockets implement `offload` (a fake `OffloadContext` whose
//! `OffloadEvents` the test drives), `offloadStop`, `sendUnacked` and
//! `egress` (`service`). A pump thread plays netsrv's receive path (`pump`):
//! it writes what the test feeds into the receive ring, as plain bytes or,
//! after an RX offload, as marked chunks (`RxChunk`). `client` is the
//! test's side: connecting, parameters, test data, reading and waiting.
//! The real netsrv is tested end to end in the workspace's tests.
#![allow(dead_code)]

pub mod client;
mod pump;
mod service;

pub use pump::{Feed, Pump};

use capnet_ring::HandoffTable;
use capnet_schema::offload_capnp::OffloadKind as WireKind;
use client::eventually;
use pump::pump_loop;
use service::serve_connection;
use std::net::{Shutdown, SocketAddr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Small rings, so that a few KiB fill them and wrap around.
pub const RING_BYTES: u32 = 4096;
pub const LOCAL: &str = "10.0.0.1:40000";
pub const REMOTE: &str = "10.0.0.2:443";
/// The fake answers `offload` with this sequence number for offset 0.
pub const SEQ_BASE: u32 = 0xffff_ff00;
/// A `recordSeq` the fake refuses with `unsupported`.
pub const UNSUPPORTED_SEQ: u64 = 999;

/// What the test asks of the fake's RPC thread.
pub enum Cmd {
    ResyncRequest(u32),
    Revoke(String),
    /// The driver dies: the callbacks go without a word, calls answer
    /// disconnected.
    DriverDies,
    EgressChange(&'static str),
    /// netsrv drops the egress watcher.
    EndSubscription,
}

/// (kind, stream offset, record seq, key) of an `offload` call.
pub type Offload = (WireKind, u64, u64, Vec<u8>);

/// What the fake saw, and the test's handles into it.
#[derive(Default)]
pub struct Seen {
    pub resyncs: Mutex<Vec<(u32, u64)>>,
    pub rejects: Mutex<Vec<u32>>,
    pub releases: AtomicUsize,
    pub contexts_dropped: AtomicUsize,
    pub offloads: Mutex<Vec<Offload>>,
    /// (kind, replacement offset, replacement) of each offloadStop.
    pub stops: Mutex<Vec<(WireKind, u64, Vec<u8>)>>,
}

pub struct Shared {
    pub handoff: HandoffTable,
    pub seen: Seen,
    pub pump: Mutex<Option<Pump>>,
    pub pump_stop: AtomicBool,
    /// `offload` answers only after this long (after switching the ring).
    pub offload_delay_ms: AtomicU64,
    pub commands: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Cmd>>>,
    pub connections: Mutex<Vec<UnixStream>>,
}

pub struct FakeNetsrv {
    pub path: PathBuf,
    pub shared: Arc<Shared>,
}

impl FakeNetsrv {
    pub fn start() -> FakeNetsrv {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "libclient-offload-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capnet.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let shared = Arc::new(Shared {
            handoff: HandoffTable::new(),
            seen: Seen::default(),
            pump: Mutex::new(None),
            pump_stop: AtomicBool::new(false),
            offload_delay_ms: AtomicU64::new(0),
            commands: Mutex::new(None),
            connections: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                s.connections
                    .lock()
                    .unwrap()
                    .push(stream.try_clone().unwrap());
                let s = s.clone();
                std::thread::spawn(move || serve_connection(s, stream));
            }
        });
        let s = shared.clone();
        std::thread::spawn(move || pump_loop(s));
        FakeNetsrv { path, shared }
    }

    pub fn seen(&self) -> &Seen {
        &self.shared.seen
    }

    pub fn pump<T>(&self, f: impl FnOnce(&mut Pump) -> T) -> T {
        let mut p = self.shared.pump.lock().unwrap();
        f(p.as_mut().expect("no connection yet"))
    }

    pub fn feed(&self, data: &[u8], decrypted: bool) {
        self.pump(|p| p.pending.push_back(Feed::Data(data.to_vec(), decrypted)));
    }

    pub fn feed_raw(&self, data: &[u8]) {
        self.pump(|p| p.pending.push_back(Feed::Raw(data.to_vec())));
    }

    /// Waits until the pump wrote everything fed so far.
    pub fn flushed(&self) {
        eventually("the pump to deliver", || {
            self.pump(|p| p.pending.is_empty())
        });
    }

    pub fn command(&self, cmd: Cmd) {
        let tx = self.shared.commands.lock().unwrap();
        tx.as_ref()
            .expect("no RPC connection")
            .send(cmd)
            .ok()
            .unwrap();
    }
}

impl Drop for FakeNetsrv {
    fn drop(&mut self) {
        self.shared.pump_stop.store(true, Ordering::Relaxed);
        for c in self.shared.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
