//! Driver instances: bootstrap a port's `Nic`, take its rings, put them
//! under the port, and release them once when the instance goes away.
//!
//! The same path serves the first instance of every port (from the command
//! line) and each restarted one (from the supervisor's attach channel).

use crate::args::NicSource;
use crate::device::RingDevice;
use crate::link::PortMeta;
use crate::service::{watch_doorbell, LinkWatcherServer, Shared};
use capnet_ring::handoff::{self, Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::{ChannelLayout, Duplex};
use capnet_schema::nic_capnp::nic;
use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use tokio::io::unix::AsyncFd;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The rpc stream and the blocking handoff stream to one driver.
pub fn open(source: &NicSource) -> std::io::Result<(UnixStream, UnixStream)> {
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

/// Attaches one driver instance of port `name`. A port the stack does not
/// know yet is added as a free port (interfaces and bonds take it later).
pub async fn attach(
    shared: &Rc<Shared>,
    name: &str,
    (rpc, handoff_stream): (UnixStream, UnixStream),
) -> std::io::Result<()> {
    rpc.set_nonblocking(true)?;
    let rpc = tokio::net::UnixStream::from_std(rpc)?;
    let network = capnet_schema::transport::vat_network(rpc, Side::Client);
    let mut system = RpcSystem::new(Box::new(network), None);
    let nic: nic::Client = system.bootstrap(Side::Server);

    // Whatever happens to the instance, its rings are released exactly
    // once: here when its connection ends (or in `Leg::attach` when a new
    // instance replaces it first).
    let instance = Rc::new(Cell::new(0u64));
    {
        let (shared, name, instance) = (shared.clone(), name.to_string(), instance.clone());
        tokio::task::spawn_local(async move {
            match system.await {
                Ok(()) => tracing::warn!(port = %name, "NIC driver disconnected"),
                Err(e) => tracing::warn!(port = %name, %e, "NIC driver connection failed"),
            }
            shared.driver_gone(&name, instance.get());
        });
    }

    let info = nic.info_request().send().promise.await.map_err(io_err)?;
    let info = info.get().map_err(io_err)?.get_info().map_err(io_err)?;
    let mac: [u8; 6] = info
        .get_mac()
        .map_err(io_err)?
        .try_into()
        .map_err(|_| io_err("driver sent a MAC that is not 6 bytes"))?;
    let reported = info.get_name().map_err(io_err)?.to_str().map_err(io_err)?;
    if reported != name {
        tracing::warn!(
            port = name,
            driver = reported,
            "driver calls its port otherwise"
        );
    }
    let meta = PortMeta {
        name: name.to_string(),
        backend: info
            .get_backend()
            .map_err(io_err)?
            .to_string()
            .map_err(io_err)?,
        mac,
        mtu: info.get_mtu() as usize,
        tls_offload: (info.get_tls_tx_offload(), info.get_tls_rx_offload()),
    };
    let checksum_offload = info.get_checksum_offload();

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
    tracing::info!(port = %meta.name, backend = %meta.backend, mtu = meta.mtu, checksum_offload, "driver attached");
    {
        let mut stack = shared.stack.borrow_mut();
        if stack.leg_mut(name).is_none() {
            stack.add_free_port(meta.clone());
        }
        let id = stack
            .attach(name, meta, device)
            .ok_or_else(|| io_err(format!("no port named {name}")))?;
        instance.set(id);
    }
    let bell_task = watch_doorbell(shared, bell)?;
    shared.instance_started(name, instance.get(), nic.clone(), bell_task);

    let mut watch = nic.watch_link_request();
    watch
        .get()
        .set_watcher(capnp_rpc::new_client(LinkWatcherServer {
            shared: shared.clone(),
            port: name.to_string(),
        }));
    watch.send().promise.await.map_err(io_err)?;
    shared.kick.notify_one();
    Ok(())
}

/// Serves the supervisor's attach channel: each message names a port and
/// carries the rpc and handoff sockets of its new driver instance.
pub async fn serve_attach_channel(shared: Rc<Shared>, channel: UnixStream) -> std::io::Result<()> {
    channel.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the stream, so the descriptor it watches
    // stays open and the same for as long as it is registered.
    let channel =
        unsafe { AsyncFd::register_with_interest(channel, tokio::io::Interest::READABLE) }?;
    loop {
        let mut guard = channel.readable().await?;
        let mut buf = [0u8; 65];
        let got =
            guard.try_io(|c| capnet_ring::platform::recv_fds(c.get_ref().as_fd(), &mut buf, 2));
        let (n, fds) = match got {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        };
        if n == 0 && fds.is_empty() {
            tracing::info!("attach channel closed by the supervisor");
            return Ok(());
        }
        let name = match std::str::from_utf8(&buf[..n]) {
            Ok(s) if (1..=64).contains(&s.len()) && fds.len() == 2 => s.to_string(),
            _ => {
                tracing::warn!(
                    bytes = n,
                    fds = fds.len(),
                    "attach message is not a port name with two sockets; ignored"
                );
                continue;
            }
        };
        let mut fds = fds.into_iter();
        let (Some(rpc), Some(handoff)) = (fds.next(), fds.next()) else {
            continue;
        };
        if shared.stack.borrow_mut().leg_mut(&name).is_none() {
            tracing::warn!(port = %name, "attach message names no known port; ignored");
            continue;
        }
        tracing::info!(port = %name, rpc = rpc.as_raw_fd(), "restarted driver offered");
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let streams = (UnixStream::from(rpc), UnixStream::from(handoff));
            if let Err(e) = attach(&shared, &name, streams).await {
                tracing::error!(port = %name, %e, "attaching the restarted driver failed");
            }
        });
    }
}
