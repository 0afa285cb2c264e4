//! Connecting a port: bootstrap the driver's `Nic`, take its rings, and add
//! the port to the stack.

use crate::args::{NicSource, PortArg};
use crate::device::RingDevice;
use crate::service::{watch_doorbell, LinkWatcherServer, Shared};
use crate::stack::PortMeta;
use capnet_ring::handoff::{self, Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::{ChannelLayout, Duplex};
use capnet_schema::nic_capnp::nic;
use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use smoltcp::wire::{IpAddress, IpCidr};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The rpc stream and the blocking handoff stream to one driver.
fn open(source: &NicSource) -> std::io::Result<(UnixStream, UnixStream)> {
    match source {
        NicSource::Fds { rpc, handoff } => {
            // SAFETY: the supervisor passed these descriptors to this process
            // for exactly this use; each is named once on the command line and
            // nothing else in netsrv owns them.
            let (rpc, handoff) =
                unsafe { (OwnedFd::from_raw_fd(*rpc), OwnedFd::from_raw_fd(*handoff)) };
            Ok((UnixStream::from(rpc), UnixStream::from(handoff)))
        }
        NicSource::Path(path) => {
            let mut rpc = UnixStream::connect(path)?;
            rpc.write_all(&[CONNECT_RPC])?;
            let mut h = UnixStream::connect(path)?;
            h.write_all(&[CONNECT_HANDOFF])?;
            Ok((rpc, h))
        }
    }
}

/// Connects one port and adds it to the stack.
pub async fn attach_port(
    shared: &Rc<Shared>,
    arg: &PortArg,
    addresses: &[IpCidr],
    gateways: &[IpAddress],
) -> std::io::Result<usize> {
    let (rpc, handoff_stream) = open(&arg.source)?;
    rpc.set_nonblocking(true)?;
    let rpc = tokio::net::UnixStream::from_std(rpc)?;
    let network = capnet_schema::transport::vat_network(rpc, Side::Client);
    let mut system = RpcSystem::new(Box::new(network), None);
    let nic: nic::Client = system.bootstrap(capnp_rpc::rpc_twoparty_capnp::Side::Server);
    let name = arg.name.clone();
    tokio::task::spawn_local(async move {
        match system.await {
            Ok(()) => tracing::warn!(port = %name, "NIC driver disconnected"),
            Err(e) => tracing::warn!(port = %name, %e, "NIC driver connection failed"),
        }
    });

    let info = nic.info_request().send().promise.await.map_err(io_err)?;
    let info = info.get().map_err(io_err)?.get_info().map_err(io_err)?;
    let mac: [u8; 6] = info
        .get_mac()
        .map_err(io_err)?
        .try_into()
        .map_err(|_| io_err("driver sent a MAC that is not 6 bytes"))?;
    let meta = PortMeta {
        name: arg.name.clone(),
        backend: info
            .get_backend()
            .map_err(io_err)?
            .to_string()
            .map_err(io_err)?,
        mac,
        mtu: info.get_mtu() as usize,
    };
    let checksum_offload = info.get_checksum_offload();
    let link_up = info.get_link_up();

    let grant = nic
        .open_rings_request()
        .send()
        .promise
        .await
        .map_err(io_err)?;
    let grant = grant.get().map_err(io_err)?.get_grant().map_err(io_err)?;
    let token = Token::from_slice(grant.get_token().map_err(io_err)?)
        .ok_or_else(|| io_err("bad ring token"))?;
    let layout = ChannelLayout {
        buffers: grant.get_buffer_count(),
        buf_size: grant.get_buffer_size(),
    };
    let fds = handoff::redeem(handoff_stream.as_fd(), &token, 3)?;
    let duplex = Duplex::attach(fds, layout).map_err(io_err)?;
    let bell = duplex.wake_me.try_clone()?;
    let device = RingDevice::new(duplex, meta.mtu, checksum_offload);
    tracing::info!(port = %meta.name, backend = %meta.backend, mtu = meta.mtu, checksum_offload, "port attached");
    let index = shared
        .stack
        .borrow_mut()
        .add_port(meta, device, addresses, gateways)
        .map_err(io_err)?;
    shared.stack.borrow_mut().ports[index].link_up = link_up;
    watch_doorbell(shared, bell)?;

    let mut watch = nic.watch_link_request();
    watch
        .get()
        .set_watcher(capnp_rpc::new_client(LinkWatcherServer {
            shared: shared.clone(),
            port: index,
        }));
    watch.send().promise.await.map_err(io_err)?;
    shared.nics.borrow_mut().push(nic);
    Ok(index)
}
