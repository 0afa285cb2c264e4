//! `TcpListener`: a listening TCP socket.

use super::*;

pub struct TcpListenerServer {
    pub(super) shared: Rc<Shared>,
    pub(super) id: SockId,
    pub(super) account: Rc<Account>,
    /// The buffer bytes of each connection it accepts.
    pub(super) conn_bytes: usize,
    pub(super) _charge: Charge,
    /// The client's pool of ring sets, for the connections it accepts.
    pub(super) rings: Rc<RingPool>,
}

impl Drop for TcpListenerServer {
    fn drop(&mut self) {
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            stack.tcp_listener_close(self.id);
        }
        self.shared.kick.notify_one();
    }
}

impl tcp_listener::Server for TcpListenerServer {
    async fn accept(
        self: CapRc<Self>,
        _: tcp_listener::AcceptParams,
        mut results: tcp_listener::AcceptResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let id = self.id;
        self.shared.reap_lingering();
        // A client that could not pay for a connection hears so at once,
        // as accept(2) fails with EMFILE before it waits.
        drop(self.account.socket(self.conn_bytes)?);
        // A waiting accept holds nothing of the client's allowance (a
        // listener may keep several in flight); the connection is charged
        // before it is taken off the queue, so one over the limit stays
        // there for a later accept.
        let account = &self.account;
        let (conn, remote, charge) = loop {
            self.shared
                .wait_for(|s| Ok(s.tcp_accept_ready(id)?.then_some(())), "accept")
                .await?;
            let charge = self.account.socket(self.conn_bytes)?;
            let accepted = self.shared.now(
                |s| {
                    let accepted = s.tcp_accept(id)?;
                    if let Some((conn, _)) = accepted {
                        s.tcp_set_account(conn, account.clone());
                    }
                    Ok(accepted)
                },
                "accept",
            )?;
            if let Some((conn, remote)) = accepted {
                break (conn, remote, charge);
            }
        };
        let mut r = results.get();
        r.set_socket(capnp_rpc::new_client(TcpSocketServer::new(
            self.shared.clone(),
            conn,
            self.account.clone(),
            charge,
            self.rings.clone(),
        )));
        write_socket_addr(r.init_remote(), remote);
        Ok(())
    }

    async fn local_addr(
        self: CapRc<Self>,
        _: tcp_listener::LocalAddrParams,
        mut results: tcp_listener::LocalAddrResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let addr = self.shared.now(|s| s.tcp_listener_addr(id), "localAddr")?;
        write_socket_addr(results.get().init_addr(), addr);
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: tcp_listener::CloseParams,
        _: tcp_listener::CloseResults,
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.tcp_listener_close(id);
                Ok(())
            },
            "close",
        )
    }
}
