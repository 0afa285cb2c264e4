//! `UdpSocket`: one bound UDP socket.

use super::*;

pub struct UdpSocketServer {
    pub(super) shared: Rc<Shared>,
    pub(super) id: SockId,
    pub(super) account: Rc<Account>,
    pub(super) _charge: Charge,
}

impl Drop for UdpSocketServer {
    fn drop(&mut self) {
        if let Ok(mut stack) = self.shared.stack.try_borrow_mut() {
            stack.udp_close(self.id);
        }
        self.shared.kick.notify_one();
    }
}

impl udp_socket::Server for UdpSocketServer {
    async fn send_to(
        self: CapRc<Self>,
        params: udp_socket::SendToParams,
        _: udp_socket::SendToResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let p = params.get()?;
        let data = p.get_data()?;
        let to = read_socket_addr(p.get_to()?)?;
        let id = self.id;
        self.shared
            .wait_for(|s| s.udp_send(id, data, to), &to.to_string())
            .await
    }

    async fn recv_from(
        self: CapRc<Self>,
        params: udp_socket::RecvFromParams,
        mut results: udp_socket::RecvFromResults,
    ) -> Result<(), Error> {
        let _call = self.account.call()?;
        let max = params.get()?.get_max().min(MAX_IO) as usize;
        let id = self.id;
        let (data, from) = self
            .shared
            .wait_for(|s| s.udp_recv(id, max), "recvFrom")
            .await?;
        let mut r = results.get();
        r.set_data(&data);
        write_socket_addr(r.init_from(), from);
        Ok(())
    }

    async fn local_addr(
        self: CapRc<Self>,
        _: udp_socket::LocalAddrParams,
        mut results: udp_socket::LocalAddrResults,
    ) -> Result<(), Error> {
        let id = self.id;
        let addr = self.shared.now(|s| s.udp_local_addr(id), "localAddr")?;
        write_socket_addr(results.get().init_addr(), addr);
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: udp_socket::CloseParams,
        _: udp_socket::CloseResults,
    ) -> Result<(), Error> {
        let id = self.id;
        self.shared.now(
            |s| {
                s.udp_close(id);
                Ok(())
            },
            "close",
        )
    }
}
