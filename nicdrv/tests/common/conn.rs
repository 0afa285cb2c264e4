//! A capnp connection to a port as a test's stack holds it, and the
//! single-threaded runtime the tests drive it from.

use super::{connect_nic, Events, Proc, TimedWatcher, WAIT};
use capnet_ring::{ChannelLayout, Duplex, CONNECT_HANDOFF};
use capnet_schema::nic_capnp::nic;
use nicdrv::counters::Snapshot;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// One capnp connection to a port; dropping it (or `close`) disconnects.
pub struct Conn {
    pub nic: nic::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    pub fn open(p: &Proc) -> Conn {
        let (nic, task) = connect_nic(&p.listen);
        Conn { nic, task }
    }

    pub fn close(self) {
        self.task.abort();
    }

    pub async fn info(&self) -> (bool, Vec<u8>, u32) {
        let r = self.nic.info_request().send().promise.await.unwrap();
        let i = r.get().unwrap().get_info().unwrap();
        (i.get_link_up(), i.get_mac().unwrap().to_vec(), i.get_mtu())
    }

    pub async fn counters(&self) -> Snapshot {
        let r = self.nic.counters_request().send().promise.await.unwrap();
        nicdrv::service::read_counters(r.get().unwrap().get_counters().unwrap())
    }

    pub async fn wait_link(&self, up: bool) {
        let deadline = Instant::now() + WAIT;
        while self.info().await.0 != up {
            assert!(Instant::now() < deadline, "link never became {up}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn set_carrier(&self, up: bool) {
        let mut req = self.nic.set_carrier_request();
        req.get().set_up(up);
        req.send().promise.await.unwrap();
    }

    /// setFaults with no faults and the given carrier.
    pub async fn set_faults_carrier(&self, up: bool) {
        let mut req = self.nic.set_faults_request();
        req.get().init_faults().set_carrier_up(up);
        req.send().promise.await.unwrap();
    }

    /// Registers a timed link watcher.
    pub async fn watch(&self) -> Events {
        let ev = Events::default();
        let mut req = self.nic.watch_link_request();
        req.get()
            .set_watcher(capnp_rpc::new_client(TimedWatcher(ev.clone())));
        req.send().promise.await.unwrap();
        ev
    }

    pub async fn set_loss(&self, ppm: u32) {
        self.set_faults(ppm, 0, 0, 0).await;
    }

    pub async fn set_faults(&self, loss: u32, reorder: u32, duplicate: u32, corrupt: u32) {
        let mut req = self.nic.set_faults_request();
        let mut f = req.get().init_faults();
        f.set_loss_ppm(loss);
        f.set_reorder_ppm(reorder);
        f.set_duplicate_ppm(duplicate);
        f.set_corrupt_ppm(corrupt);
        req.send().promise.await.unwrap();
    }

    pub async fn try_open_rings(&self, p: &Proc) -> Result<(Duplex, OwnedFd), capnp::Error> {
        let r = self.nic.open_rings_request().send().promise.await?;
        let g = r.get()?.get_grant()?;
        let token = capnet_ring::Token::from_slice(g.get_token()?).expect("16-byte token");
        let layout = ChannelLayout {
            buffers: g.get_buffer_count(),
            buf_size: g.get_buffer_size(),
        };
        assert_eq!(g.get_region_bytes(), Duplex::region_bytes(layout) as u64);
        let mut h = UnixStream::connect(&p.listen).unwrap();
        h.write_all(&[CONNECT_HANDOFF]).unwrap();
        let fds = capnet_ring::redeem(h.as_fd(), &token, 3).expect("redeem");
        // A second redeem of the same token is refused.
        assert!(capnet_ring::redeem(h.as_fd(), &token, 3).is_err());
        let region = fds[0].try_clone().unwrap();
        Ok((Duplex::attach(fds, layout).expect("attach"), region))
    }

    pub async fn open_rings(&self, p: &Proc) -> Duplex {
        self.try_open_rings(p).await.expect("openRings").0
    }
}

/// Connections to two ports on one wire, once their link is up.
pub async fn up(a: &Proc, b: &Proc) -> (Conn, Conn) {
    let (ca, cb) = (Conn::open(a), Conn::open(b));
    ca.wait_link(true).await;
    cb.wait_link(true).await;
    (ca, cb)
}

/// [`up`], and the rings of each (the test is both stacks).
pub async fn linked(a: &Proc, b: &Proc) -> (Conn, Conn, Duplex, Duplex) {
    let (ca, cb) = up(a, b).await;
    let (ra, rb) = (ca.open_rings(a).await, cb.open_rings(b).await);
    (ca, cb, ra, rb)
}

/// Runs an async test body on a single-threaded runtime (capnp clients
/// are not `Send`) and hands back what it returned.
pub fn local_test<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}
