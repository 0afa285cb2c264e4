//! Helpers shared by the integration tests: a link watcher that records when
//! it was told, the three-way link-change measurement (port carrier word,
//! doorbell, `LinkWatcher.linkChanged`), and /proc leak counters.
#![allow(dead_code)]

pub mod conn;
mod driver;
pub mod frames;
// Each test binary uses its part of these.
#[allow(unused_imports)]
pub use driver::{connect_nic, nic_over, tmpdir, Proc, WAIT};

use capnet_ring::Duplex;
use capnet_schema::nic_capnp::link_watcher;
use capnp::capability::Rc as CapRc;
use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Every link change must reach every surface well before this. Latency
/// itself is a figure the tests print (and `capnet`'s failover benchmark
/// measures end to end), not something they time: a loaded CI machine
/// must not fail a correct driver. The bound still catches an event that
/// only a periodic timer or a second change would deliver.
pub const LINK_DEADLINE: Duration = Duration::from_secs(2);

pub type Events = Rc<RefCell<Vec<(Instant, bool)>>>;

/// A LinkWatcher that records `(when, up)` for every call.
pub struct TimedWatcher(pub Events);

impl link_watcher::Server for TimedWatcher {
    fn link_changed(
        self: CapRc<Self>,
        params: link_watcher::LinkChangedParams,
        _: link_watcher::LinkChangedResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let at = Instant::now();
        let r = params
            .get()
            .map(|p| self.0.borrow_mut().push((at, p.get_up())));
        std::future::ready(r)
    }
}

/// Whether the doorbell is rung (poll with no wait; does not drain it).
pub fn rung(d: &Duplex) -> bool {
    let mut p = libc::pollfd {
        fd: d.wake_me.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd of our own, on an fd the Duplex keeps open.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// When each surface reported a link change, measured from the action.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The port duplex's carrier word.
    pub carrier: Duration,
    /// The stack's doorbell rung with the carrier word already changed.
    pub doorbell: Duration,
    /// `LinkWatcher.linkChanged(up)`.
    pub event: Duration,
}

impl Seen {
    pub fn worst(&self) -> Duration {
        self.carrier.max(self.doorbell).max(self.event)
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "carrier word {:.2} ms, doorbell {:.2} ms, linkChanged {:.2} ms",
            ms(self.carrier),
            ms(self.doorbell),
            ms(self.event)
        )
    }
}

/// Call right before the action that changes the link: drains the doorbell
/// and notes how many events the watcher has seen.
pub fn arm(d: &Duplex, events: &Events) -> (Instant, usize) {
    d.wake_me.drain();
    (Instant::now(), events.borrow().len())
}

/// Waits until the port's carrier word is `up` with its doorbell rung, and the
/// watcher was told `up` (a call after `armed`); times each from `armed`.
/// Panics after `limit`.
pub async fn wait_change(
    d: &Duplex,
    events: &Events,
    armed: (Instant, usize),
    up: bool,
    limit: Duration,
) -> Seen {
    let (t0, n0) = armed;
    let (mut carrier, mut doorbell, mut event) = (None, None, None);
    loop {
        let now = Instant::now();
        if carrier.is_none() && d.carrier() == up {
            carrier = Some(now);
        }
        if doorbell.is_none() && rung(d) {
            if d.carrier() == up {
                doorbell = Some(now);
            } else {
                d.wake_me.drain(); // a ring for something else (a frame)
            }
        }
        if event.is_none() {
            event = events.borrow()[n0..]
                .iter()
                .find(|(_, u)| *u == up)
                .map(|(at, _)| *at);
        }
        if let (Some(c), Some(b), Some(e)) = (carrier, doorbell, event) {
            return Seen {
                carrier: c - t0,
                doorbell: b - t0,
                event: e.saturating_duration_since(t0),
            };
        }
        assert!(
            now - t0 < limit,
            "link {up} not seen on every surface within {limit:?}: carrier {:?} doorbell {:?} event {:?} (events {:?})",
            carrier.map(|c| c - t0),
            doorbell.map(|c| c - t0),
            event.map(|c| c - t0),
            events.borrow().iter().map(|(_, u)| *u).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Lines of /proc/PID/maps backed by a memfd (shared rings).
pub fn memfd_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:"))
        .count()
}
