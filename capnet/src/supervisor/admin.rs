//! The supervisor's capabilities: `Supervisor` on admin.sock for the CLI,
//! and the `NetAdmin` proxy it hands out, which follows netsrv across
//! restarts and replays run-time bond and route changes to a new instance.

use super::{Role, Shared, State};
use crate::config::{Bond, BondMode};
use capnet_schema::net_capnp::{self as net_capnp, net_admin};
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnp::capability::Rc as CapRc;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

pub(super) struct SupervisorServer {
    shared: Shared,
    shutdown: Rc<Notify>,
}

impl SupervisorServer {
    pub(super) fn new(shared: Shared, shutdown: Rc<Notify>) -> SupervisorServer {
        SupervisorServer { shared, shutdown }
    }

    fn nic(&self, name: &str) -> Result<nic::Client, capnp::Error> {
        let set = self.shared.borrow();
        if let Some(c) = set.nics.get(name) {
            return Ok(c.clone());
        }
        let proc_name = format!("nicdrv {name}");
        match set.procs.iter().find(|p| p.name == proc_name) {
            None => Err(capnp::Error::failed(format!(
                "invalid: no port named {name:?}"
            ))),
            Some(p) if p.state == State::Failed => Err(capnp::Error::failed(format!(
                "invalid: port {name} is down: its driver failed ({})",
                p.last_exit
            ))),
            Some(p) => Err(capnp::Error::failed(format!(
                "busy: the driver of port {name} is {}",
                p.state.as_str()
            ))),
        }
    }

    fn admin(&self) -> Result<net_admin::Client, capnp::Error> {
        let mut set = self.shared.borrow_mut();
        if let Some(a) = &set.admin {
            return Ok(a.clone());
        }
        let p = set.netsrv();
        Err(capnp::Error::failed(match p.state {
            State::Failed => format!("closed: netsrv failed ({})", p.last_exit),
            State::Stopped => "closed: the service set is stopping".to_string(),
            _ => "busy: netsrv is restarting".to_string(),
        }))
    }
}

impl supervisor::Server for SupervisorServer {
    async fn status(
        self: CapRc<Self>,
        _: supervisor::StatusParams,
        mut results: supervisor::StatusResults,
    ) -> Result<(), capnp::Error> {
        let (admin, asks) = {
            let set = self.shared.borrow();
            (set.admin.clone(), confinement_asks(&set))
        };
        // A service that does not answer must not hang `capnet status`.
        let net = async {
            let a = admin?;
            let call = a.status_request().send().promise;
            tokio::time::timeout(STATUS_WAIT, call).await.ok()?.ok()
        };
        let (net, answers) = futures::future::join(net, futures::future::join_all(asks)).await;
        let mut confinement: HashMap<u32, String> = answers.into_iter().flatten().collect();
        let mut r = results.get();
        if let Some(resp) = net {
            let status = resp.get()?.get_status()?;
            let netsrv = self.shared.borrow_mut().netsrv().pid();
            if let Ok(text) = status.get_confinement().and_then(|t| Ok(t.to_string()?)) {
                confinement.insert(netsrv, text);
            }
            r.set_net(status)?;
        }
        let set = self.shared.borrow();
        let mut list = r.init_processes(set.procs.len() as u32);
        for (i, p) in set.procs.iter().enumerate() {
            let mut b = list.reborrow().get(i as u32);
            b.set_name(&p.name);
            b.set_pid(p.pid());
            b.set_running(p.state == State::Running && p.child.is_some());
            b.set_restarts(p.restarts);
            b.set_state(p.state.as_str());
            b.set_last_exit(&p.last_exit);
            // Keyed by pid: an instance that replaced the one asked says
            // nothing yet.
            if let Some(text) = confinement.get(&p.pid()).filter(|_| p.pid() != 0) {
                b.set_confinement(text);
            }
        }
        Ok(())
    }

    async fn set_faults(
        self: CapRc<Self>,
        params: supervisor::SetFaultsParams,
        _: supervisor::SetFaultsResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let nic = self.nic(p.get_port()?.to_str()?)?;
        let mut req = nic.set_faults_request();
        req.get().set_faults(p.get_faults()?)?;
        req.send().promise.await?;
        Ok(())
    }

    async fn set_carrier(
        self: CapRc<Self>,
        params: supervisor::SetCarrierParams,
        _: supervisor::SetCarrierResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let nic = self.nic(p.get_port()?.to_str()?)?;
        let mut req = nic.set_carrier_request();
        req.get().set_up(p.get_up());
        req.send().promise.await?;
        Ok(())
    }

    async fn shutdown(
        self: CapRc<Self>,
        _: supervisor::ShutdownParams,
        _: supervisor::ShutdownResults,
    ) -> Result<(), capnp::Error> {
        self.shutdown.notify_one();
        Ok(())
    }

    async fn net_admin(
        self: CapRc<Self>,
        _: supervisor::NetAdminParams,
        mut results: supervisor::NetAdminResults,
    ) -> Result<(), capnp::Error> {
        self.admin()?;
        let proxy: net_admin::Client = capnp_rpc::new_client(AdminProxy {
            shared: self.shared.clone(),
        });
        results.get().set_admin(proxy);
        Ok(())
    }

    async fn port_counters(
        self: CapRc<Self>,
        params: supervisor::PortCountersParams,
        mut results: supervisor::PortCountersResults,
    ) -> Result<(), capnp::Error> {
        let nic = self.nic(params.get()?.get_port()?.to_str()?)?;
        let counters = nic.counters_request().send().promise;
        let info = nic.info_request().send().promise;
        let (counters, info) = futures::future::try_join(counters, info).await?;
        let mut r = results.get();
        r.set_counters(counters.get()?.get_counters()?)?;
        r.set_info(info.get()?.get_info()?)?;
        Ok(())
    }

    async fn offload_contexts(
        self: CapRc<Self>,
        params: supervisor::OffloadContextsParams,
        mut results: supervisor::OffloadContextsResults,
    ) -> Result<(), capnp::Error> {
        let nic = self.nic(params.get()?.get_port()?.to_str()?)?;
        let resp = nic.offload_contexts_request().send().promise.await?;
        results.get().set_contexts(resp.get()?.get_contexts()?)?;
        Ok(())
    }
}

/// How long `status` waits for a service's answer.
const STATUS_WAIT: Duration = Duration::from_secs(3);

type Ask = std::pin::Pin<Box<dyn std::future::Future<Output = Option<(u32, String)>>>>;

/// Asks each running driver and tlsd how it confined itself (netsrv says
/// so in its status): Landlock is not in /proc. Each answer is (pid, text).
fn confinement_asks(set: &super::Set) -> Vec<Ask> {
    let mut asks: Vec<Ask> = Vec::new();
    for p in set.procs.iter().filter(|p| p.child.is_some()) {
        let pid = p.pid();
        match p.role {
            Role::Nicdrv(_) => {
                let port = p.name.strip_prefix("nicdrv ").unwrap_or(&p.name);
                if let Some(nic) = set.nics.get(port) {
                    let call = nic.info_request().send().promise;
                    asks.push(Box::pin(async move {
                        let resp = tokio::time::timeout(STATUS_WAIT, call).await.ok()?.ok()?;
                        let text = resp.get().ok()?.get_info().ok()?.get_confinement().ok()?;
                        Some((pid, text.to_string().ok()?))
                    }));
                }
            }
            Role::Tlsd => {
                if let Some(tlsd) = &set.tlsd {
                    let call = tlsd.stat_request().send().promise;
                    asks.push(Box::pin(async move {
                        let resp = tokio::time::timeout(STATUS_WAIT, call).await.ok()?.ok()?;
                        let text = resp.get().ok()?.get_stat().ok()?.get_confinement().ok()?;
                        Some((pid, text.to_string().ok()?))
                    }));
                }
            }
            Role::Netsrv => {}
        }
    }
    asks
}

fn mode_from_capnp(m: net_capnp::BondMode) -> BondMode {
    match m {
        net_capnp::BondMode::ActiveBackup => BondMode::ActiveBackup,
        net_capnp::BondMode::BalanceXor => BondMode::BalanceXor,
    }
}

/// netsrv's `NetAdmin` as the supervisor hands it out: every call goes to
/// the current netsrv (`busy` while it restarts), and the changes that
/// succeed are remembered so that a restarted netsrv gets them too.
struct AdminProxy {
    shared: Shared,
}

impl AdminProxy {
    fn admin(&self) -> Result<net_admin::Client, capnp::Error> {
        SupervisorServer {
            shared: self.shared.clone(),
            shutdown: Rc::new(Notify::new()),
        }
        .admin()
    }
}

impl net_admin::Server for AdminProxy {
    async fn status(
        self: CapRc<Self>,
        _: net_admin::StatusParams,
        mut results: net_admin::StatusResults,
    ) -> Result<(), capnp::Error> {
        let resp = self.admin()?.status_request().send().promise.await?;
        results.get().set_status(resp.get()?.get_status()?)?;
        Ok(())
    }

    async fn net(
        self: CapRc<Self>,
        _: net_admin::NetParams,
        mut results: net_admin::NetResults,
    ) -> Result<(), capnp::Error> {
        let resp = self.admin()?.net_request().send().promise.await?;
        results.get().set_net(resp.get()?.get_net()?);
        Ok(())
    }

    async fn bond_add(
        self: CapRc<Self>,
        params: net_admin::BondAddParams,
        _: net_admin::BondAddResults,
    ) -> Result<(), capnp::Error> {
        let b = params.get()?.get_bond()?;
        let mut req = self.admin()?.bond_add_request();
        req.get().set_bond(b)?;
        req.send().promise.await?;
        let text = |l: capnp::text_list::Reader<'_>| -> capnp::Result<Vec<String>> {
            l.iter().map(|t| Ok(t?.to_string()?)).collect()
        };
        let primary = b.get_primary()?.to_string()?;
        let bond = Bond {
            name: b.get_name()?.to_string()?,
            mode: mode_from_capnp(b.get_mode()?),
            legs: text(b.get_legs()?)?,
            primary: (!primary.is_empty()).then_some(primary),
            addresses: text(b.get_addresses()?)?,
        };
        self.shared.borrow_mut().bonds.push(bond);
        Ok(())
    }

    async fn bond_set_mode(
        self: CapRc<Self>,
        params: net_admin::BondSetModeParams,
        _: net_admin::BondSetModeResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (name, mode) = (p.get_name()?.to_string()?, p.get_mode()?);
        let mut req = self.admin()?.bond_set_mode_request();
        req.get().set_name(&name);
        req.get().set_mode(mode);
        req.send().promise.await?;
        if let Some(b) = self
            .shared
            .borrow_mut()
            .bonds
            .iter_mut()
            .find(|b| b.name == name)
        {
            b.mode = mode_from_capnp(mode);
        }
        Ok(())
    }

    async fn bond_set_primary(
        self: CapRc<Self>,
        params: net_admin::BondSetPrimaryParams,
        _: net_admin::BondSetPrimaryResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (name, primary) = (p.get_name()?.to_string()?, p.get_primary()?.to_string()?);
        let mut req = self.admin()?.bond_set_primary_request();
        req.get().set_name(&name);
        req.get().set_primary(&primary);
        req.send().promise.await?;
        if let Some(b) = self
            .shared
            .borrow_mut()
            .bonds
            .iter_mut()
            .find(|b| b.name == name)
        {
            b.primary = (!primary.is_empty()).then_some(primary);
        }
        Ok(())
    }

    async fn route_add(
        self: CapRc<Self>,
        params: net_admin::RouteAddParams,
        _: net_admin::RouteAddResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (to, via) = (p.get_to()?.to_string()?, p.get_via()?.to_string()?);
        let mut req = self.admin()?.route_add_request();
        req.get().set_to(&to);
        req.get().set_via(&via);
        req.send().promise.await?;
        self.shared.borrow_mut().routes.push((to, via));
        Ok(())
    }

    async fn route_remove(
        self: CapRc<Self>,
        params: net_admin::RouteRemoveParams,
        _: net_admin::RouteRemoveResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (to, via) = (p.get_to()?.to_string()?, p.get_via()?.to_string()?);
        let mut req = self.admin()?.route_remove_request();
        req.get().set_to(&to);
        req.get().set_via(&via);
        req.send().promise.await?;
        self.shared
            .borrow_mut()
            .routes
            .retain(|r| r != &(to.clone(), via.clone()));
        Ok(())
    }
}
