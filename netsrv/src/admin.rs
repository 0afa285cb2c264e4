//! `NetAdmin`: bonds, routes and status, for the supervisor alone.
//!
//! Errors start with a word from `capnet_schema::errors` (`invalid:`,
//! `unreachable:`), so the CLI prints them as they are.

use crate::addr::parse_cidr;
use crate::link::Mode;
use crate::service::{fill_status, NetServer, Shared};
use capnet_schema::net_capnp::{net, net_admin, BondMode};
use capnet_tcpip::Cidr;
use capnp::capability::Rc as CapRc;
use capnp::Error;
use std::net::IpAddr;
use std::rc::Rc;

pub struct NetAdminServer {
    shared: Rc<Shared>,
}

impl NetAdminServer {
    pub fn new(shared: Rc<Shared>) -> NetAdminServer {
        NetAdminServer { shared }
    }

    /// Runs a change on the stack and wakes the poll loop, which re-selects
    /// legs and tells egress subscribers.
    fn change(
        &self,
        op: impl FnOnce(&mut crate::stack::Stack) -> Result<(), String>,
    ) -> Result<(), Error> {
        let r = op(&mut self.shared.stack.borrow_mut());
        self.shared.kick.notify_one();
        r.map_err(Error::failed)
    }
}

fn mode(m: BondMode) -> Mode {
    match m {
        BondMode::ActiveBackup => Mode::ActiveBackup,
        BondMode::BalanceXor => Mode::BalanceXor,
    }
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::failed(format!("invalid: {e}"))
}

/// `default` (IPv4 or IPv6 by the gateway) or a CIDR, and a gateway.
pub fn parse_route(to: &str, via: &str) -> Result<(Cidr, IpAddr), String> {
    let gw: std::net::IpAddr = via
        .parse()
        .map_err(|e| format!("invalid: gateway {via:?}: {e}"))?;
    let to = match to {
        "default" if gw.is_ipv4() => parse_cidr("0.0.0.0/0"),
        "default" => parse_cidr("::/0"),
        other => parse_cidr(other),
    }
    .map_err(|e| format!("invalid: {e}"))?;
    Ok((to, gw))
}

impl net_admin::Server for NetAdminServer {
    async fn status(
        self: CapRc<Self>,
        _: net_admin::StatusParams,
        mut results: net_admin::StatusResults,
    ) -> Result<(), Error> {
        fill_status(&self.shared, results.get().init_status()).await;
        Ok(())
    }

    async fn net(
        self: CapRc<Self>,
        _: net_admin::NetParams,
        mut results: net_admin::NetResults,
    ) -> Result<(), Error> {
        let net: net::Client = capnp_rpc::new_client(NetServer::trusted(self.shared.clone()));
        results.get().set_net(net);
        Ok(())
    }

    async fn bond_add(
        self: CapRc<Self>,
        params: net_admin::BondAddParams,
        _: net_admin::BondAddResults,
    ) -> Result<(), Error> {
        let b = params.get()?.get_bond()?;
        let name = b.get_name()?.to_str()?.to_string();
        let mode = mode(b.get_mode()?);
        let mut legs = Vec::new();
        for l in b.get_legs()? {
            legs.push(l?.to_str()?.to_string());
        }
        let primary = b.get_primary()?.to_str()?.to_string();
        let mut addresses = Vec::new();
        for a in b.get_addresses()? {
            addresses.push(parse_cidr(a?.to_str()?).map_err(invalid)?);
        }
        if name.is_empty() {
            return Err(invalid("a bond needs a name"));
        }
        self.change(|s| {
            s.add_bond(
                &name,
                mode,
                &legs,
                (!primary.is_empty()).then_some(primary.as_str()),
                &addresses,
            )
            .map(|_| ())
        })
    }

    async fn bond_set_mode(
        self: CapRc<Self>,
        params: net_admin::BondSetModeParams,
        _: net_admin::BondSetModeResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let name = p.get_name()?.to_str()?;
        let m = mode(p.get_mode()?);
        self.change(|s| s.bond_set_mode(name, m))
    }

    async fn bond_set_primary(
        self: CapRc<Self>,
        params: net_admin::BondSetPrimaryParams,
        _: net_admin::BondSetPrimaryResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let name = p.get_name()?.to_str()?;
        let primary = p.get_primary()?.to_str()?;
        self.change(|s| s.bond_set_primary(name, (!primary.is_empty()).then_some(primary)))
    }

    async fn route_add(
        self: CapRc<Self>,
        params: net_admin::RouteAddParams,
        _: net_admin::RouteAddResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let (to, via) =
            parse_route(p.get_to()?.to_str()?, p.get_via()?.to_str()?).map_err(Error::failed)?;
        self.change(|s| s.route_add(to, via))
    }

    async fn route_remove(
        self: CapRc<Self>,
        params: net_admin::RouteRemoveParams,
        _: net_admin::RouteRemoveResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let (to, via) =
            parse_route(p.get_to()?.to_str()?, p.get_via()?.to_str()?).map_err(Error::failed)?;
        self.change(|s| s.route_remove(to, via))
    }
}
