//! `Net`: one client's view of the socket service (connect, listen, bind,
//! egress), charged to its account.

use super::*;

fn tcp_options(
    r: Option<capnet_schema::net_capnp::socket_options::Reader<'_>>,
) -> (TcpOptions, Duration) {
    let Some(r) = r else {
        return (TcpOptions::default(), DEFAULT_CONNECT_TIMEOUT);
    };
    let options = TcpOptions {
        no_delay: r.get_no_delay(),
        send_buffer: r.get_send_buffer() as usize,
        recv_buffer: r.get_recv_buffer() as usize,
        keep_alive: (r.get_keep_alive_ms() > 0)
            .then(|| Duration::from_millis(r.get_keep_alive_ms() as u64)),
    };
    let timeout = match r.get_connect_timeout_ms() {
        0 => DEFAULT_CONNECT_TIMEOUT,
        ms => Duration::from_millis(ms as u64),
    };
    (options, timeout)
}

/// One client's view of the socket service.
pub struct NetServer {
    shared: Rc<Shared>,
    /// Whether the client may bind ports below 1024 (`[access] low_ports`,
    /// judged on its SO_PEERCRED credentials).
    low_ports: bool,
    /// What this client holds, against its limits.
    account: Rc<Account>,
    /// Ring sets its sockets let go of, for its next ones.
    rings: Rc<RingPool>,
}

impl NetServer {
    /// A client of user `uid`, limited by `[limits]`.
    pub fn new(shared: Rc<Shared>, uid: u32, low_ports: bool) -> NetServer {
        let account = shared.accounts.client(uid);
        NetServer::with_account(shared, low_ports, account)
    }

    /// A peer the supervisor connected (the admin's `Net`, a `--rpc-fd`
    /// descriptor): not limited, and may bind any port.
    pub fn trusted(shared: Rc<Shared>) -> NetServer {
        let account = shared.accounts.trusted();
        NetServer::with_account(shared, true, account)
    }

    fn with_account(shared: Rc<Shared>, low_ports: bool, account: Rc<Account>) -> NetServer {
        shared.stack.borrow_mut().counters.sessions += 1;
        NetServer {
            shared,
            low_ports,
            rings: Rc::default(),
            account,
        }
    }

    fn check_privileged(&self, addr: SocketAddr) -> Result<(), Error> {
        if addr.port() != 0 && addr.port() < 1024 && !self.low_ports {
            return Err(SocketError::Denied.to_capnp(format_args!(
                "port {} is below 1024 and this user may not bind it ([access] low_ports in the configuration)",
                addr.port()
            )));
        }
        Ok(())
    }
}

impl net::Server for NetServer {
    async fn tcp_connect(
        self: CapRc<Self>,
        params: net::TcpConnectParams,
        mut results: net::TcpConnectResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let remote = read_socket_addr(p.get_remote()?)?;
        let (mut options, timeout) = tcp_options(if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        });
        let shared = self.shared.clone();
        shared.reap_lingering();
        let charge = self.account.socket(crate::limits::tcp_cost(
            &shared.stack.borrow(),
            &self.account,
            &mut options,
        ))?;
        let account = self.account.clone();
        let id = shared.now(
            |s| {
                let id = s.tcp_connect(remote, &options)?;
                s.tcp_set_account(id, account);
                Ok(id)
            },
            &remote.to_string(),
        )?;
        let socket = TcpSocketServer::new(
            shared.clone(),
            id,
            self.account.clone(),
            charge,
            self.rings.clone(),
        );
        let what = remote.to_string();
        match tokio::time::timeout(
            timeout,
            shared.wait_for(|s| Ok(s.tcp_connected(id)?.then_some(())), &what),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(SocketError::TimedOut.to_capnp(format_args!("connect to {remote}")))
            }
        }
        results.get().set_socket(capnp_rpc::new_client(socket));
        Ok(())
    }

    async fn tcp_listen(
        self: CapRc<Self>,
        params: net::TcpListenParams,
        mut results: net::TcpListenResults,
    ) -> Result<(), Error> {
        let p = params.get()?;
        let local = read_socket_addr(p.get_local()?)?;
        self.check_privileged(local)?;
        let (mut options, _) = tcp_options(if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        });
        let backlog = p.get_backlog() as usize;
        // A listener keeps `backlog` listening sockets per interface, and
        // as many connections ready to accept.
        self.shared.reap_lingering();
        let conn_bytes =
            crate::limits::tcp_cost(&self.shared.stack.borrow(), &self.account, &mut options);
        let slots = 2
            * backlog.clamp(1, MAX_BACKLOG)
            * crate::limits::ifaces_for(&self.shared.stack.borrow(), local);
        let charge = self.account.socket(slots * conn_bytes)?;
        let id = self.shared.now(
            |s| s.tcp_listen(local, backlog, options),
            &local.to_string(),
        )?;
        results
            .get()
            .set_listener(capnp_rpc::new_client(TcpListenerServer {
                shared: self.shared.clone(),
                id,
                account: self.account.clone(),
                conn_bytes,
                _charge: charge,
                rings: self.rings.clone(),
            }));
        Ok(())
    }

    async fn udp_bind(
        self: CapRc<Self>,
        params: net::UdpBindParams,
        mut results: net::UdpBindResults,
    ) -> Result<(), Error> {
        let local = read_socket_addr(params.get()?.get_local()?)?;
        self.check_privileged(local)?;
        let charge = self.account.socket(
            UDP_SOCKET_BYTES * crate::limits::ifaces_for(&self.shared.stack.borrow(), local),
        )?;
        let id = self.shared.now(|s| s.udp_bind(local), &local.to_string())?;
        results
            .get()
            .set_socket(capnp_rpc::new_client(UdpSocketServer {
                shared: self.shared.clone(),
                id,
                account: self.account.clone(),
                _charge: charge,
            }));
        Ok(())
    }

    async fn status(
        self: CapRc<Self>,
        _: net::StatusParams,
        mut results: net::StatusResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        fill_status(&self.shared, results.get().init_status()).await;
        Ok(())
    }

    async fn egress(
        self: CapRc<Self>,
        params: net::EgressParams,
        mut results: net::EgressResults,
    ) -> Result<(), Error> {
        let flow = params.get()?.get_flow()?;
        let target = crate::egress::Target::from_flow(flow)?;
        results
            .get()
            .set_egress(crate::egress::client(&self.shared, target, &self.account));
        Ok(())
    }
}
