//! Which NIC port carries a flow or a connection, and notice when that
//! changes.
//!
//! An [`Egress`] names one capability in netsrv (`Net.egress` for a flow,
//! `TcpSocket.egress` for a connection). A subscription's watcher is a capnp
//! server on the connection thread that forwards each `changed` call into a
//! channel the application reads with [`EgressSubscription::recv_timeout`],
//! and rings the subscription's eventfd so that an event loop can wait for
//! changes beside its sockets.

use crate::conn::{cap_err, service_gone, Net, Object};
use crate::tcp::TcpStream;
use capnet_ring::Doorbell;
use capnet_schema::net_capnp::{
    egress_info, egress_watcher, EgressReason as Wire, Protocol as WireProtocol,
};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The transport of a [`Flow`]; it decides what a bond's layer3+4 hash
/// covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Any other IP protocol (e.g. ESP): the hash covers addresses only.
    Other,
}

/// A flow as a route and a bond see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub protocol: Protocol,
    /// `None`: the source address the route picks (and port 0).
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
}

/// Why the egress changed (or [`Initial`](EgressReason::Initial) for the
/// first answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EgressReason {
    Initial,
    /// The bond chose another leg.
    Failover,
    LinkDown,
    LinkUp,
    RouteChange,
    /// The port's driver was restarted (the driver epoch went up).
    DriverRestart,
    /// A bond's mode, primary or legs changed at run time.
    BondChange,
    /// A reason this libclient does not know yet (a newer netsrv), by its
    /// schema number.
    Unknown(u16),
}

impl EgressReason {
    fn from_wire(r: Result<Wire, capnp::NotInSchema>) -> EgressReason {
        match r {
            Ok(Wire::Initial) => EgressReason::Initial,
            Ok(Wire::Failover) => EgressReason::Failover,
            Ok(Wire::LinkDown) => EgressReason::LinkDown,
            Ok(Wire::LinkUp) => EgressReason::LinkUp,
            Ok(Wire::RouteChange) => EgressReason::RouteChange,
            Ok(Wire::DriverRestart) => EgressReason::DriverRestart,
            Ok(Wire::BondChange) => EgressReason::BondChange,
            Err(capnp::NotInSchema(n)) => EgressReason::Unknown(n),
        }
    }
}

/// Where a flow leaves the host now.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EgressInfo {
    /// The NIC port carrying the flow; `None` when no port is usable (no
    /// route, or every leg of the bond is down).
    pub port: Option<String>,
    /// The interface (a bond or a port) the route chose.
    pub interface: String,
    /// Which instance of the port's driver (one more per restart).
    pub driver_epoch: u32,
    /// How many times this egress has changed so far.
    pub generation: u64,
    pub reason: EgressReason,
}

impl EgressInfo {
    fn read(r: egress_info::Reader<'_>) -> capnp::Result<EgressInfo> {
        let port = r.get_port()?.to_string()?;
        Ok(EgressInfo {
            port: (!port.is_empty()).then_some(port),
            interface: r.get_interface()?.to_string()?,
            driver_epoch: r.get_driver_epoch(),
            generation: r.get_generation(),
            reason: EgressReason::from_wire(r.get_reason()),
        })
    }
}

/// The egress of one flow or connection: which NIC port carries it now
/// ([`current`](Self::current)) and each change
/// ([`subscribe`](Self::subscribe)). Made by [`Net::egress`] for a flow and
/// [`TcpStream::egress`] for a connection. Dropping it releases the
/// capability in netsrv; subscriptions made from it live on until they are
/// dropped themselves.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use libclient::{Flow, Net, Protocol};
/// use std::time::Duration;
/// let net = Net::default_net()?;
/// let egress = net.egress(Flow {
///     protocol: Protocol::Udp,
///     local: None,
///     remote: "10.0.0.2:4789".parse().unwrap(),
/// })?;
/// println!("now on {:?}", egress.current()?.port);
/// let changes = egress.subscribe()?;
/// while let Some(info) = changes.recv_timeout(Duration::from_secs(60)) {
///     println!("moved to {:?} ({:?})", info.port, info.reason);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Egress {
    net: Net,
    id: u64,
}

impl Egress {
    /// Which port carries the flow now.
    pub fn current(&self) -> io::Result<EgressInfo> {
        let id = self.id;
        self.net
            .call(Some(Duration::from_secs(10)), move |ctx| async move {
                let resp = ctx
                    .egress(id)?
                    .current_request()
                    .send()
                    .promise
                    .await
                    .map_err(cap_err)?;
                let info = resp.get().map_err(cap_err)?.get_info().map_err(cap_err)?;
                EgressInfo::read(info).map_err(cap_err)
            })
    }

    /// Asks netsrv to report every real change of this egress, in order.
    /// Dropping the subscription ends it.
    pub fn subscribe(&self) -> io::Result<EgressSubscription> {
        let id = self.id;
        let (tx, rx) = mpsc::channel();
        let wakeup = match Doorbell::new() {
            Ok(d) => Some(Arc::new(d)),
            // No eventfds on this platform (Redox, for now): no fd.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => None,
            Err(e) => return Err(e),
        };
        let bell = wakeup.clone();
        let sub = self
            .net
            .call(Some(Duration::from_secs(10)), move |ctx| async move {
                let watcher: egress_watcher::Client =
                    capnp_rpc::new_client(Watcher { tx, wakeup: bell });
                let mut req = ctx.egress(id)?.subscribe_request();
                req.get().set_watcher(watcher);
                let resp = req.send().promise.await.map_err(cap_err)?;
                let sub = resp
                    .get()
                    .map_err(cap_err)?
                    .get_subscription()
                    .map_err(cap_err)?;
                Ok(ctx.insert(Object::Subscription(sub)))
            })?;
        Ok(EgressSubscription {
            net: self.net.clone(),
            id: sub,
            changes: Mutex::new(rx),
            wakeup,
        })
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.net.release(self.id);
    }
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").finish_non_exhaustive()
    }
}

/// Changes of an egress, as netsrv reports them. Dropping it cancels the
/// subscription.
///
/// When the subscription ends from the other side (netsrv dropped the
/// watcher, or the service went away), the receive calls answer at once:
/// `None` from [`recv_timeout`](Self::recv_timeout) and
/// [`try_recv`](Self::try_recv), an error from [`recv`](Self::recv), and
/// [`ended`](Self::ended) says so.
///
/// For event loops: the fd of `as_raw_fd` (an eventfd) turns readable
/// whenever a change is queued, and when the subscription ends. Wait on
/// it, then call [`clear_wakeup`](Self::clear_wakeup) and take changes
/// with [`try_recv`](Self::try_recv) until it answers `None` (in that
/// order, so that none is missed).
pub struct EgressSubscription {
    net: Net,
    id: u64,
    changes: Mutex<Receiver<EgressInfo>>,
    /// `None` only where eventfds are not available.
    wakeup: Option<Arc<Doorbell>>,
}

impl EgressSubscription {
    fn changes(&self) -> std::sync::MutexGuard<'_, Receiver<EgressInfo>> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next change, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<EgressInfo> {
        self.changes().recv_timeout(timeout).ok()
    }

    /// A change already received, without waiting.
    pub fn try_recv(&self) -> Option<EgressInfo> {
        self.changes().try_recv().ok()
    }

    /// The subscription ended from the other side and every change it
    /// reported has been taken.
    pub fn ended(&self) -> bool {
        matches!(
            self.changes().try_recv(),
            Err(mpsc::TryRecvError::Disconnected)
        )
    }

    /// Drains the fd's wakeups (call before taking changes with
    /// [`try_recv`](Self::try_recv)).
    pub fn clear_wakeup(&self) {
        if let Some(w) = &self.wakeup {
            w.drain();
        }
    }

    /// The next change, waiting as long as it takes. Fails with
    /// `ConnectionReset` if the service went away, `BrokenPipe` if netsrv
    /// ended the subscription.
    pub fn recv(&self) -> io::Result<EgressInfo> {
        self.changes().recv().map_err(|_| {
            if self.net.is_connected() {
                io::Error::new(io::ErrorKind::BrokenPipe, "egress subscription ended")
            } else {
                service_gone()
            }
        })
    }
}

impl AsRawFd for EgressSubscription {
    /// An eventfd that turns readable whenever a change is queued (-1 on
    /// platforms without eventfds).
    fn as_raw_fd(&self) -> RawFd {
        self.wakeup.as_ref().map_or(-1, |w| w.as_raw_fd())
    }
}

impl Drop for EgressSubscription {
    fn drop(&mut self) {
        self.net.release(self.id);
    }
}

impl std::fmt::Debug for EgressSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressSubscription").finish_non_exhaustive()
    }
}

/// The `EgressWatcher` netsrv calls; lives on the connection thread.
struct Watcher {
    tx: Sender<EgressInfo>,
    wakeup: Option<Arc<Doorbell>>,
}

impl Watcher {
    fn wake(&self) {
        if let Some(w) = &self.wakeup {
            w.ring();
        }
    }
}

impl Drop for Watcher {
    /// The subscription ended: wake the loop so that it sees `ended`.
    fn drop(&mut self) {
        // The channel closes first, so that the woken loop sees it closed.
        drop(std::mem::replace(&mut self.tx, mpsc::channel().0));
        self.wake();
    }
}

impl egress_watcher::Server for Watcher {
    async fn changed(
        self: capnp::capability::Rc<Self>,
        params: egress_watcher::ChangedParams,
        _: egress_watcher::ChangedResults,
    ) -> Result<(), capnp::Error> {
        let info = EgressInfo::read(params.get()?.get_info()?)?;
        // A subscription dropped meanwhile: its release is on the way.
        if self.tx.send(info).is_ok() {
            self.wake();
        }
        Ok(())
    }
}

fn write_flow(mut b: capnet_schema::net_capnp::flow::Builder<'_>, flow: &Flow) {
    b.set_protocol(match flow.protocol {
        Protocol::Tcp => WireProtocol::Tcp,
        Protocol::Udp => WireProtocol::Udp,
        Protocol::Other => WireProtocol::Other,
    });
    let local = b.reborrow().init_local();
    if let Some(addr) = flow.local {
        crate::udp::write_addr(local, addr);
    }
    crate::udp::write_addr(b.init_remote(), flow.remote);
}

impl Net {
    /// The egress of `flow`: routed again on every check, so a route change
    /// moves it. Fails with `InvalidInput` for a flow netsrv cannot route
    /// at all (e.g. mixed address families).
    pub fn egress(&self, flow: Flow) -> io::Result<Egress> {
        let id = self.call(Some(Duration::from_secs(10)), move |ctx| async move {
            let mut req = ctx.net().egress_request();
            write_flow(req.get().init_flow(), &flow);
            let resp = req.send().promise.await.map_err(cap_err)?;
            let e = resp.get().map_err(cap_err)?.get_egress().map_err(cap_err)?;
            Ok(ctx.insert(Object::Egress(e)))
        })?;
        Ok(Egress {
            net: self.clone(),
            id,
        })
    }
}

impl TcpStream {
    /// The egress of this connection. It stays on the interface it was
    /// opened on; within a bond, its leg follows the bond.
    pub fn egress(&self) -> io::Result<Egress> {
        let id = self.object();
        let net = self.net();
        let e = net.call(Some(Duration::from_secs(10)), move |ctx| async move {
            let resp = ctx
                .tcp(id)?
                .egress_request()
                .send()
                .promise
                .await
                .map_err(cap_err)?;
            let e = resp.get().map_err(cap_err)?.get_egress().map_err(cap_err)?;
            Ok(ctx.insert(Object::Egress(e)))
        })?;
        Ok(Egress { net, id: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_mirror_the_schema() {
        let all = [
            (Wire::Initial, EgressReason::Initial),
            (Wire::Failover, EgressReason::Failover),
            (Wire::LinkDown, EgressReason::LinkDown),
            (Wire::LinkUp, EgressReason::LinkUp),
            (Wire::RouteChange, EgressReason::RouteChange),
            (Wire::DriverRestart, EgressReason::DriverRestart),
            (Wire::BondChange, EgressReason::BondChange),
        ];
        for (wire, ours) in all {
            assert_eq!(EgressReason::from_wire(Ok(wire)), ours);
        }
        assert_eq!(
            EgressReason::from_wire(Err(capnp::NotInSchema(42))),
            EgressReason::Unknown(42)
        );
    }

    #[test]
    fn info_round_trip_and_empty_port_is_none() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b = msg.init_root::<egress_info::Builder>();
        b.set_port("");
        b.set_interface("bond0");
        b.set_driver_epoch(2);
        b.set_generation(7);
        b.set_reason(Wire::LinkDown);
        let r = msg.get_root_as_reader::<egress_info::Reader>().unwrap();
        let info = EgressInfo::read(r).unwrap();
        assert_eq!(
            info,
            EgressInfo {
                port: None,
                interface: "bond0".into(),
                driver_epoch: 2,
                generation: 7,
                reason: EgressReason::LinkDown,
            }
        );
    }

    #[test]
    fn unspecified_local_is_empty_ip_port_zero() {
        let mut msg = capnp::message::Builder::new_default();
        let flow = Flow {
            protocol: Protocol::Tcp,
            local: None,
            remote: "10.0.0.2:80".parse().unwrap(),
        };
        write_flow(msg.init_root(), &flow);
        let r = msg
            .get_root_as_reader::<capnet_schema::net_capnp::flow::Reader>()
            .unwrap();
        assert_eq!(r.get_protocol().unwrap(), WireProtocol::Tcp);
        assert!(r.has_local());
        assert!(r.get_local().unwrap().get_ip().unwrap().is_empty());
        assert_eq!(r.get_local().unwrap().get_port(), 0);
        assert_eq!(r.get_remote().unwrap().get_port(), 80);
    }
}
