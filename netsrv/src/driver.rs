//! Driver instances: bootstrap a port's `Nic`, take its rings, put them
//! under the port, and release them once when the instance goes away.
//!
//! The same path serves the first instance of every port (from the command
//! line) and each restarted one (from the supervisor's attach channel).
//!
//! A driver is a peer like any other: every call to it has a deadline, the
//! ring handoff runs off netsrv's thread, and everything it reports is
//! checked ([`check_port`]) before its rings are used. A driver that fails
//! any of it costs only its own port: the port stays detached, the refusal
//! is counted and logged with a plain reason, and netsrv serves on.

use crate::args::NicSource;
use crate::device::RingDevice;
use crate::link::PortMeta;
use crate::service::{watch_doorbell, LinkWatcherServer, Shared};
use capnet_ring::handoff::{self, Token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::{ChannelLayout, Duplex};
use capnet_schema::nic_capnp::nic;
use capnet_schema::offload_capnp::OffloadKind;
use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// How long netsrv waits for any one answer from a driver.
pub const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// The smallest IP MTU a port may have (IPv4's minimum datagram).
pub const MIN_MTU: usize = 576;
/// The largest: an Ethernet frame of it still fits 16 bits.
pub const MAX_MTU: usize = 65535 - 14;
/// Shared memory one port's rings may take (both directions).
pub const MAX_RING_BYTES: usize = 1 << 30;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A capnp error as a person can read it: the driver's own words, not the
/// transport's wrapping.
fn plain(e: capnp::Error) -> String {
    if e.extra.is_empty() {
        format!("{:?}", e.kind)
    } else {
        e.extra
    }
}

/// `call` to the driver, within [`CALL_DEADLINE`].
pub async fn deadline<T>(
    what: &str,
    call: impl Future<Output = Result<T, capnp::Error>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_err(format!("{what} failed: {}", plain(e)))),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the driver did not answer {what} within {CALL_DEADLINE:?}"),
        )),
    }
}

/// Checks what a driver reports of its port before its rings are used: an
/// MTU whose frames fit the ring buffers, a sane MAC, rings of a bounded
/// size. A plain reason when it does not hold.
pub fn check_port(mac: &[u8], mtu: u32, layout: ChannelLayout) -> Result<(), String> {
    if mac.len() != 6 {
        return Err(format!("its MAC has {} bytes, not 6", mac.len()));
    }
    if mac[0] & 1 != 0 || mac.iter().all(|b| *b == 0) {
        return Err("its MAC is not a unicast address".into());
    }
    let mtu = mtu as usize;
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(format!("its MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}"));
    }
    layout
        .check()
        .map_err(|e| format!("its rings cannot work: {e}"))?;
    if (layout.buf_size as usize) < mtu + 14 {
        return Err(format!(
            "its MTU {mtu} does not fit its {}-byte ring buffers",
            layout.buf_size
        ));
    }
    if Duplex::region_bytes(layout) > MAX_RING_BYTES {
        return Err(format!(
            "its rings want {} MiB of shared memory, more than {} MiB",
            Duplex::region_bytes(layout) >> 20,
            MAX_RING_BYTES >> 20
        ));
    }
    Ok(())
}

/// Redeems the ring token on the handoff stream without blocking netsrv's
/// thread: the blocking exchange runs on a helper thread whose socket
/// gives up at the deadline, so that thread ends too.
async fn redeem_rings(stream: UnixStream, token: Token) -> std::io::Result<Vec<OwnedFd>> {
    stream.set_read_timeout(Some(CALL_DEADLINE))?;
    stream.set_write_timeout(Some(CALL_DEADLINE))?;
    let exchange = tokio::task::spawn_blocking(move || handoff::redeem(stream.as_fd(), &token, 3));
    let late = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the driver did not hand over its rings within {CALL_DEADLINE:?}"),
        )
    };
    match tokio::time::timeout(CALL_DEADLINE + Duration::from_secs(1), exchange).await {
        Ok(Ok(Ok(fds))) => Ok(fds),
        Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::WouldBlock => Err(late()),
        Ok(Ok(Err(e))) => Err(io_err(format!("the ring handoff failed: {e}"))),
        Ok(Err(e)) => Err(io_err(format!("the ring handoff failed: {e}"))),
        Err(_) => Err(late()),
    }
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
/// A driver that does not answer in time or reports what cannot work is
/// refused: its connection is closed and the port stays detached.
pub async fn attach(
    shared: &Rc<Shared>,
    name: &str,
    (rpc, handoff_stream): (UnixStream, UnixStream),
) -> std::io::Result<()> {
    let network = capnet_schema::transport::vat_network(rpc, Side::Client)?;
    let mut system = RpcSystem::new(Box::new(network), None);
    let nic: nic::Client = system.bootstrap(Side::Server);

    // Whatever happens to the instance, its rings are released exactly
    // once: here when its connection ends (or in `Leg::attach` when a new
    // instance replaces it first).
    let instance = Rc::new(Cell::new(0u64));
    let connection = {
        let (shared, name, instance) = (shared.clone(), name.to_string(), instance.clone());
        tokio::task::spawn_local(async move {
            tokio::select! {
                r = system => match r {
                    Ok(()) => tracing::warn!(port = %name, "NIC driver disconnected"),
                    Err(e) => {
                        tracing::warn!(port = %name, e = %plain(e), "NIC driver connection failed")
                    }
                },
                why = ring_fault(&shared, &name, &instance) => {
                    tracing::error!(port = %name, "driver broke the ring contract ({why}); detached");
                    shared.stack.borrow_mut().counters.drivers_refused += 1;
                }
            }
            shared.driver_gone(&name, instance.get());
        })
    };
    let result = attach_instance(shared, name, nic, handoff_stream, &instance).await;
    if let Err(e) = &result {
        tracing::error!(port = name, "driver refused: {e}; the port stays detached");
        shared.stack.borrow_mut().counters.drivers_refused += 1;
        connection.abort();
        shared.driver_gone(name, instance.get());
    }
    result
}

/// Resolves once the rings of driver `instance` of port `name` broke their
/// contract (the device saw a descriptor that names nothing, say): then
/// its connection is closed and its rings released, as for a dead driver.
/// Woken only when the poll loop saw a fault: an idle port costs nothing.
async fn ring_fault(shared: &Shared, name: &str, instance: &Cell<u64>) -> String {
    loop {
        // Registered before looking, so a fault found after the look
        // still wakes it.
        let signal = shared.faults.notified();
        let fault = shared.stack.try_borrow_mut().ok().and_then(|mut stack| {
            let leg = stack.leg_mut(name)?;
            let ours = instance.get() != 0 && leg.instance == instance.get();
            let e = leg.device.as_ref().and_then(|d| d.fault()).filter(|_| ours);
            e.map(ToString::to_string)
        });
        if let Some(why) = fault {
            return why;
        }
        signal.await;
    }
}

async fn attach_instance(
    shared: &Rc<Shared>,
    name: &str,
    nic: nic::Client,
    handoff_stream: UnixStream,
    instance: &Cell<u64>,
) -> std::io::Result<()> {
    let info = deadline("info", nic.info_request().send().promise).await?;
    let info = info.get().map_err(io_err)?.get_info().map_err(io_err)?;
    let mac = info.get_mac().map_err(io_err)?.to_vec();
    let reported = info.get_name().map_err(io_err)?.to_str().map_err(io_err)?;
    if reported != name {
        tracing::warn!(
            port = name,
            driver = reported,
            "driver calls its port otherwise"
        );
    }
    let backend = info
        .get_backend()
        .map_err(io_err)?
        .to_string()
        .map_err(io_err)?;
    let mtu = info.get_mtu();
    let offloads = info.get_offloads().map(offered_kinds).unwrap_or_default();
    let checksum_offload = info.get_checksum_offload();
    let segmentation = info.get_segmentation();

    let grant = deadline("openRings", nic.open_rings_request().send().promise).await?;
    let grant = grant.get().map_err(io_err)?.get_grant().map_err(io_err)?;
    let token = Token::from_slice(grant.get_token().map_err(io_err)?)
        .ok_or_else(|| io_err("its ring token is not 16 bytes"))?;
    let layout = ChannelLayout {
        buffers: grant.get_buffer_count(),
        buf_size: grant.get_buffer_size(),
    };
    check_port(&mac, mtu, layout).map_err(io_err)?;
    let meta = PortMeta {
        name: name.to_string(),
        backend: backend.chars().take(32).collect(),
        mac: mac.try_into().expect("checked: 6 bytes"),
        mtu: mtu as usize,
        offloads,
    };
    let fds = redeem_rings(handoff_stream, token).await?;
    let duplex = Duplex::attach(fds, layout)
        .map_err(|e| io_err(format!("its rings cannot be mapped: {e}")))?;
    let bell = duplex.wake_me.try_clone()?;
    let device = RingDevice::new(duplex, meta.mtu, checksum_offload, segmentation);
    tracing::info!(port = %meta.name, backend = %meta.backend, mtu = meta.mtu, checksum_offload, segmentation, "driver attached");
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
    let bell_task = watch_doorbell(shared, bell, |_| Some(false))?;
    shared.instance_started(name, instance.get(), nic.clone(), bell_task);

    let mut watch = nic.watch_link_request();
    watch
        .get()
        .set_watcher(capnp_rpc::new_client(LinkWatcherServer {
            shared: shared.clone(),
            port: name.to_string(),
        }));
    deadline("watchLink", watch.send().promise).await?;
    shared.kick.notify_one();
    Ok(())
}

/// Attaches the first driver of every port named on the command line. A
/// port whose driver is refused is still known to the stack (so that its
/// interface or bond is built, and a restarted driver can take it), with a
/// placeholder MAC until one attaches.
pub async fn attach_at_start(shared: &Rc<Shared>, ports: &[crate::args::PortArg]) {
    for port in ports {
        let attached = match open(&port.source) {
            Ok(streams) => attach(shared, &port.name, streams).await,
            Err(e) => {
                tracing::error!(port = %port.name, %e, "cannot reach the port's driver");
                Err(e)
            }
        };
        let mut stack = shared.stack.borrow_mut();
        if attached.is_err() && stack.leg_mut(&port.name).is_none() {
            stack.add_free_port(PortMeta {
                name: port.name.clone(),
                backend: "none".into(),
                mac: placeholder_mac(&port.name),
                mtu: 1500,
                offloads: Vec::new(),
            });
        }
    }
}

/// A locally administered unicast MAC made from the port's name.
fn placeholder_mac(name: &str) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    [0x02, 0xca, a, b, c, d]
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

/// The offload kinds a driver lists, as netsrv keeps them: each known kind
/// once, in schema order, whatever the list repeats or holds that this
/// netsrv does not know; one pass over it, however long.
fn offered_kinds(list: capnp::enum_list::Reader<'_, OffloadKind>) -> Vec<OffloadKind> {
    let mut seen = [false; capnet_schema::offload::KINDS.len()];
    for kind in list.iter().flatten() {
        seen[kind as usize] = true;
    }
    capnet_schema::offload::KINDS
        .into_iter()
        .filter(|k| seen[*k as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn layout(buffers: u32, buf_size: u32) -> ChannelLayout {
        ChannelLayout { buffers, buf_size }
    }

    #[test]
    fn a_driver_listing_kinds_many_times_gets_each_once() {
        let mut msg = capnp::message::Builder::new_default();
        let info = msg.init_root::<capnet_schema::nic_capnp::port_info::Builder>();
        let n = 200_000;
        let mut l = info.init_offloads(n);
        for i in 0..n {
            let k = if i % 2 == 0 {
                OffloadKind::NvmeTcpRx
            } else {
                OffloadKind::TlsRx
            };
            l.set(i, k);
        }
        let r = msg
            .get_root_as_reader::<capnet_schema::nic_capnp::port_info::Reader>()
            .unwrap();
        assert_eq!(
            offered_kinds(r.get_offloads().unwrap()),
            [OffloadKind::TlsRx, OffloadKind::NvmeTcpRx]
        );
    }

    #[test]
    fn what_a_driver_reports_is_checked() {
        assert_eq!(check_port(&MAC, 1500, layout(512, 1536)), Ok(()));
        assert_eq!(check_port(&MAC, 9000, layout(64, 9024)), Ok(()));
        let refused = [
            check_port(&MAC, 9000, layout(512, 1536)),
            check_port(&MAC, 65535, layout(512, 1536)),
            check_port(&MAC, 100, layout(512, 1536)),
            check_port(&MAC, 1500, layout(500, 1536)),
            check_port(&MAC, 1500, layout(512, 0)),
            check_port(&MAC, 1500, layout(65536, 65600)),
            check_port(&MAC[..5], 1500, layout(512, 1536)),
            check_port(&[1, 0, 0, 0, 0, 1], 1500, layout(512, 1536)),
            check_port(&[0; 6], 1500, layout(512, 1536)),
        ];
        for r in refused {
            let why = r.unwrap_err();
            assert!(!why.contains("Failed"), "{why}");
        }
        assert_eq!(
            check_port(&MAC, 9000, layout(512, 1536)).unwrap_err(),
            "its MTU 9000 does not fit its 1536-byte ring buffers"
        );
    }

    #[test]
    fn placeholder_macs_are_local_unicast() {
        let m = placeholder_mac("sim1");
        assert_eq!(m[0] & 3, 2);
        assert_ne!(m, placeholder_mac("sim2"));
    }
}
