//! `Egress`: which port carries a flow or socket now, and a subscription
//! that fires once per real change.
//!
//! The stack bumps `topology` whenever an egress may have changed (legs,
//! attach, detach, routes, bonds). After each poll that saw a bump, every
//! subscription's egress is computed again and compared with the last one
//! it reported; only a difference is sent. Calls to one watcher are made
//! in order, so it sees the changes in the order they happened.

use crate::limits::{Account, Charge};
use crate::service::Shared;
use crate::stack::{Change, Egress, SockId, Stack};
use capnet_schema::addr::read_socket_addr;
use capnet_schema::errors::SocketError;
use capnet_schema::net_capnp::{
    egress, egress_info, egress_watcher, flow, subscription, EgressReason,
};
use capnet_schema::transport::{within, NOTICE_DEADLINE};
use capnp::capability::Rc as CapRc;
use capnp::Error;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

/// What an `Egress` capability follows.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Flow {
        local: Option<SocketAddr>,
        remote: SocketAddr,
    },
    Socket(SockId),
}

impl Target {
    pub fn from_flow(f: flow::Reader<'_>) -> Result<Target, Error> {
        let remote = read_socket_addr(f.get_remote()?)
            .map_err(|e| SocketError::Invalid.to_capnp(format_args!("flow remote: {e}")))?;
        if remote.ip().is_unspecified() {
            return Err(SocketError::Invalid.to_capnp("flow remote address is unspecified"));
        }
        let local = if f.has_local() && !f.get_local()?.get_ip()?.is_empty() {
            Some(read_socket_addr(f.get_local()?)?)
        } else {
            None
        };
        Ok(Target::Flow { local, remote })
    }

    fn resolve(&self, stack: &Stack) -> Result<Egress, SocketError> {
        match *self {
            Target::Flow { local, remote } => Ok(stack.egress_of_flow(local, remote)),
            Target::Socket(id) => stack.egress_of_socket(id),
        }
    }
}

struct Sub {
    target: Target,
    last: Egress,
    /// The last port (and its driver epoch) that carried the flow, kept
    /// while there is none, to tell a driver restart from a link coming up.
    last_port: Option<(String, u32)>,
    generation: u64,
    watcher: egress_watcher::Client,
}

#[derive(Default)]
pub struct EgressRegistry {
    subs: HashMap<u64, Sub>,
    next: u64,
    seen_topology: u64,
}

/// Why `old` became `new`, given the last port that carried the flow and
/// what the stack last changed.
fn reason(
    old: &Egress,
    new: &Egress,
    last_port: Option<&(String, u32)>,
    last: Change,
) -> EgressReason {
    let restarted = |port: &String| last_port.is_some_and(|(p, e)| p == port && *e != new.epoch);
    match (&old.port, &new.port) {
        _ if old.iface != new.iface => EgressReason::RouteChange,
        (_, None) => EgressReason::LinkDown,
        (Some(o), Some(n)) if o == n => EgressReason::DriverRestart,
        (None, Some(n)) if restarted(n) => EgressReason::DriverRestart,
        (None, Some(_)) => EgressReason::LinkUp,
        _ if last == Change::Bond => EgressReason::BondChange,
        _ => EgressReason::Failover,
    }
}

fn write_info(mut b: egress_info::Builder<'_>, e: &Egress, generation: u64, why: EgressReason) {
    b.set_port(e.port.as_deref().unwrap_or(""));
    b.set_interface(e.iface.as_deref().unwrap_or(""));
    b.set_driver_epoch(e.epoch);
    b.set_generation(generation);
    b.set_reason(why);
}

/// Tells every subscriber whose egress changed since the last check.
pub fn check(shared: &Rc<Shared>) {
    let (topology, last_change) = {
        let stack = shared.stack.borrow();
        (stack.topology, stack.last_change)
    };
    let mut reg = shared.egress.borrow_mut();
    if reg.seen_topology == topology {
        return;
    }
    reg.seen_topology = topology;
    let stack = shared.stack.borrow();
    let mut sent = 0;
    let mut ended = Vec::new();
    for (&id, sub) in reg.subs.iter_mut() {
        let now = match sub.target.resolve(&stack) {
            Ok(e) => e,
            // The socket is gone: nothing more to follow.
            Err(_) => {
                ended.push(id);
                continue;
            }
        };
        if now == sub.last {
            continue;
        }
        let why = reason(&sub.last, &now, sub.last_port.as_ref(), last_change);
        sub.generation += 1;
        if let Some(p) = &now.port {
            sub.last_port = Some((p.clone(), now.epoch));
        }
        sub.last = now;
        let mut req = sub.watcher.changed_request();
        write_info(req.get().init_info(), &sub.last, sub.generation, why);
        let promise = req.send().promise;
        tokio::task::spawn_local(async move {
            if let Err(e) = within(NOTICE_DEADLINE, "egress changed", promise).await {
                tracing::debug!(%e, "egress watcher did not take a change");
            }
        });
        sent += 1;
    }
    drop(stack);
    for id in ended {
        reg.subs.remove(&id);
    }
    let watchers = reg.subs.len() as u64;
    drop(reg);
    let mut stack = shared.stack.borrow_mut();
    stack.counters.egress_events += sent;
    stack.counters.egress_watchers = watchers;
}

pub fn client(shared: &Rc<Shared>, target: Target, account: &Rc<Account>) -> egress::Client {
    capnp_rpc::new_client(EgressServer {
        shared: shared.clone(),
        target,
        account: account.clone(),
    })
}

struct EgressServer {
    shared: Rc<Shared>,
    target: Target,
    /// Subscriptions count against this client's limit.
    account: Rc<Account>,
}

impl EgressServer {
    fn resolve(&self) -> Result<Egress, Error> {
        self.target
            .resolve(&self.shared.stack.borrow())
            .map_err(|e| e.to_capnp("egress"))
    }
}

impl egress::Server for EgressServer {
    async fn current(
        self: CapRc<Self>,
        _: egress::CurrentParams,
        mut results: egress::CurrentResults,
    ) -> Result<(), Error> {
        let now = self.resolve()?;
        write_info(results.get().init_info(), &now, 0, EgressReason::Initial);
        Ok(())
    }

    async fn subscribe(
        self: CapRc<Self>,
        params: egress::SubscribeParams,
        mut results: egress::SubscribeResults,
    ) -> Result<(), Error> {
        let watcher = params.get()?.get_watcher()?;
        let last = self.resolve()?;
        let charge = self.account.subscription()?;
        let last_port = last.port.clone().map(|p| (p, last.epoch));
        let mut reg = self.shared.egress.borrow_mut();
        reg.next += 1;
        let id = reg.next;
        reg.subs.insert(
            id,
            Sub {
                target: self.target,
                last,
                last_port,
                generation: 0,
                watcher,
            },
        );
        let watchers = reg.subs.len() as u64;
        drop(reg);
        self.shared.stack.borrow_mut().counters.egress_watchers = watchers;
        results
            .get()
            .set_subscription(capnp_rpc::new_client(SubscriptionServer {
                shared: self.shared.clone(),
                id,
                _charge: charge,
            }));
        Ok(())
    }
}

/// Ends its subscription when the holder drops it.
struct SubscriptionServer {
    shared: Rc<Shared>,
    id: u64,
    _charge: Charge,
}

impl subscription::Server for SubscriptionServer {}

impl Drop for SubscriptionServer {
    fn drop(&mut self) {
        if let Ok(mut reg) = self.shared.egress.try_borrow_mut() {
            reg.subs.remove(&self.id);
            let n = reg.subs.len() as u64;
            drop(reg);
            if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
                stack.counters.egress_watchers = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(iface: &str, port: Option<&str>, epoch: u32) -> Egress {
        Egress {
            iface: Some(iface.into()),
            port: port.map(String::from),
            epoch,
        }
    }

    #[test]
    fn reasons_follow_what_changed() {
        let a = e("bond0", Some("p0"), 0);
        let p0 = ("p0".to_string(), 0);
        let r = |old: &Egress, new: &Egress, last: Change| reason(old, new, Some(&p0), last);
        assert_eq!(
            r(&a, &e("bond0", Some("p1"), 0), Change::Legs),
            EgressReason::Failover
        );
        assert_eq!(
            r(&a, &e("bond0", None, 0), Change::Legs),
            EgressReason::LinkDown
        );
        assert_eq!(
            r(&e("bond0", None, 0), &a, Change::Legs),
            EgressReason::LinkUp
        );
        // The port came back with a new driver instance.
        assert_eq!(
            r(
                &e("bond0", None, 0),
                &e("bond0", Some("p0"), 1),
                Change::Legs
            ),
            EgressReason::DriverRestart
        );
        assert_eq!(
            r(&a, &e("bond0", Some("p0"), 1), Change::Attach),
            EgressReason::DriverRestart
        );
        assert_eq!(
            r(&a, &e("p1", Some("p1"), 0), Change::Route),
            EgressReason::RouteChange
        );
        assert_eq!(
            r(&a, &e("bond0", Some("p1"), 0), Change::Bond),
            EgressReason::BondChange
        );
    }
}
