//! nicdrv: the NIC driver of capnet, one process per port.
//!
//! It serves the `Nic` capability (schema/nic.capnp) on a single-threaded
//! tokio runtime (the control plane, [`service`]) and moves frames on its own
//! thread (the data plane, [`dataplane`]) between the port's shared-memory
//! rings and a device: the `sim` wire ([`sim`]) or a Linux TAP ([`tap`]).
//! Checksum offload ([`csum`]), fault injection ([`faults`]), capture
//! ([`pcap`]) and the counters ([`counters`]) are plain code without I/O,
//! tested on their own. The TLS offload contexts ([`offload`]) run the
//! simulated NIC's engines (`capnet_offload`) on the data path.

pub mod args;
pub mod counters;
/// Checksum verification and filling, shared with netsrv.
pub use capnet_wire::csum;
pub mod dataplane;
pub mod faults;
pub mod misbehave;
pub mod offload;
pub mod pcap;
pub mod service;
pub mod sim;
#[cfg(target_os = "linux")]
pub mod tap;

use args::{Args, Backend};
use capnet_ring::handoff::{read_token, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_ring::HandoffTable;
use capnet_schema::offload_capnp::OffloadKind;
use dataplane::{Cmd, Config, DeviceConfig, Shared};
use service::{Control, PortInfo};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};

/// Takes ownership of a descriptor named on the command line; it must be an
/// open socket.
fn inherit_socket(fd: RawFd, flag: &str) -> Result<OwnedFd, String> {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is involved.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("{flag} {fd}: not an open file descriptor"));
    }
    // SAFETY: the descriptor is open, was given to us on the command line, and
    // the argument parser made sure it is named only once, so nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(owned);
    let is_socket = file
        .metadata()
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        return Err(format!("{flag} {fd}: not a socket"));
    }
    let owned = OwnedFd::from(file);
    // SAFETY: F_SETFD on a descriptor we own, so it does not leak into other programs.
    unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    capnet_ring::random_bytes(&mut mac);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    mac
}

/// Answers redeem requests on a handoff connection until it closes (blocking).
pub fn serve_handoff(sock: OwnedFd, table: Arc<HandoffTable>) {
    loop {
        match read_token(sock.as_fd()) {
            Ok(Some(_)) if misbehave::get() == misbehave::Misbehave::Handoff => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Ok(Some(token)) => match table.answer(sock.as_fd(), &token) {
                Ok(true) => tracing::debug!("ring fds handed over"),
                Ok(false) => tracing::warn!("unknown or expired ring token refused"),
                Err(e) => {
                    tracing::debug!(%e, "handoff connection failed");
                    return;
                }
            },
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%e, "handoff connection failed");
                return;
            }
        }
    }
}

fn spawn_handoff(sock: OwnedFd, table: Arc<HandoffTable>) {
    if let Err(e) = std::thread::Builder::new()
        .name("nicdrv-handoff".into())
        .spawn(move || serve_handoff(sock, table))
    {
        tracing::error!(%e, "cannot start a handoff thread");
    }
}

/// Binds `--listen` for the driver's own user (`--user`, else who runs
/// it), mode 0600. The socket file appears only once it listens with that
/// mode (`transport::listen_private`); handing it to another uid may need
/// root, so this runs before confinement.
fn bind_listener(path: &Path, user: Option<capnet_confine::User>) -> io::Result<StdUnixListener> {
    let l = capnet_schema::transport::listen_private(path)?;
    if let Some(u) = user {
        // SAFETY: getuid has no preconditions.
        if u.uid != unsafe { libc::getuid() } {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))?;
        }
    }
    Ok(l)
}

/// Serves `--listen` connections: 'R' then capnp, or 'H' then redeem requests.
async fn serve_listener(listener: UnixListener, ctl: Rc<Control>, table: Arc<HandoffTable>) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(%e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctl = ctl.clone();
        let table = table.clone();
        tokio::task::spawn_local(async move {
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() {
                return;
            }
            match kind[0] {
                CONNECT_RPC => ctl.serve(stream).await,
                CONNECT_HANDOFF => match stream.into_std() {
                    Ok(s) => {
                        if s.set_nonblocking(false).is_ok() {
                            spawn_handoff(s.into(), table);
                        }
                    }
                    Err(e) => tracing::debug!(%e, "handoff connection"),
                },
                other => tracing::debug!(byte = other, "unknown connection kind refused"),
            }
        });
    }
}

/// What [`open`] acquired while the driver may still hold privileges: the
/// inherited sockets, the device (and its namespace), the capture file.
pub struct Opened {
    args: Args,
    rpc_fds: Vec<OwnedFd>,
    handoff_fds: Vec<OwnedFd>,
    device: DeviceConfig,
    pcap: Option<pcap::PcapWriter<std::io::BufWriter<std::fs::File>>>,
    listener: Option<StdUnixListener>,
}

/// Takes the inherited sockets and opens the device and the capture. Call
/// before confinement: a TAP device and `setns` need root, and the driver
/// gives root up (and every file path but its wire's) right after.
pub fn open(args: Args) -> Result<Opened, String> {
    // Inherited sockets first, before anything else opens descriptors.
    let rpc_fds = args
        .rpc_fds
        .iter()
        .map(|fd| inherit_socket(*fd, "--rpc-fd"))
        .collect::<Result<Vec<_>, _>>()?;
    let handoff_fds = args
        .handoff_fds
        .iter()
        .map(|fd| inherit_socket(*fd, "--handoff-fd"))
        .collect::<Result<Vec<_>, _>>()?;

    // The device next: setns() must happen before any thread exists.
    let device = match &args.backend {
        Backend::Sim { wire } => DeviceConfig::Sim { wire: wire.clone() },
        #[cfg(target_os = "linux")]
        Backend::Tap { tap, netns } => {
            if let Some(ns) = netns {
                tap::enter_netns(ns).map_err(|e| format!("--netns {ns}: {e}"))?;
            }
            let tap =
                tap::Tap::open(tap, args.segmentation).map_err(|e| format!("--tap {tap}: {e}"))?;
            DeviceConfig::Tap(tap)
        }
        #[cfg(not(target_os = "linux"))]
        Backend::Tap { .. } => return Err("the tap backend needs Linux".into()),
    };

    // The first instance starts the capture; a restarted one continues it.
    let pcap = match &args.pcap {
        Some(p) if args.epoch > 0 => {
            let (w, how) =
                pcap::PcapWriter::append(p).map_err(|e| format!("--pcap {}: {e}", p.display()))?;
            tracing::info!(path = %p.display(), ?how, "capture continued");
            Some(w)
        }
        Some(p) => {
            Some(pcap::PcapWriter::create(p).map_err(|e| format!("--pcap {}: {e}", p.display()))?)
        }
        None => None,
    };
    let listener = match &args.listen {
        Some(p) => {
            let l = bind_listener(p, args.user)
                .map_err(|e| format!("--listen {}: {e}", p.display()))?;
            tracing::info!(path = %p.display(), "listening");
            Some(l)
        }
        None => None,
    };
    Ok(Opened {
        args,
        rpc_fds,
        handoff_fds,
        device,
        pcap,
        listener,
    })
}

/// Runs the driver until SIGTERM/SIGINT (or, without `--listen`, until every
/// `--rpc-fd` connection has closed).
pub fn serve(opened: Opened) -> Result<(), String> {
    let Opened {
        args,
        rpc_fds,
        handoff_fds,
        device,
        pcap,
        listener,
    } = opened;
    let mac = args.mac.unwrap_or_else(random_mac);
    let layout = dataplane::port_layout(args.mtu, args.buffers, args.segmentation);
    let info = PortInfo {
        name: args.name.clone(),
        backend: args.backend.kind(),
        mac,
        mtu: args.mtu,
        csum_offload: args.csum_offload,
        segmentation: args.segmentation,
        offloads: if args.tls_offload {
            vec![OffloadKind::TlsTx, OffloadKind::TlsRx]
        } else {
            Vec::new()
        },
        capture_path: args
            .pcap
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    };
    tracing::info!(
        name = %args.name,
        backend = info.backend,
        mac = %args::format_mac(&mac),
        mtu = args.mtu,
        tls_offload = args.tls_offload,
        segmentation = args.segmentation,
        epoch = args.epoch,
        buffers = layout.buffers,
        buf_size = layout.buf_size,
        "nicdrv starting"
    );

    let shared = Arc::new(Shared::default());
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let (dp, join) = dataplane::spawn(
        Config {
            name: args.name.clone(),
            mtu: args.mtu,
            layout: dataplane::layout_for(args.mtu, args.buffers),
            csum_offload: args.csum_offload,
            segmentation: args.segmentation,
            faults: args.faults,
            seed: args.seed,
            pcap,
        },
        device,
        shared.clone(),
        ev_tx,
    )
    .map_err(|e| format!("starting the data plane: {e}"))?;

    let table = Arc::new(HandoffTable::new());
    for fd in handoff_fds {
        spawn_handoff(fd, table.clone());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let ctl = Control::new(info, layout, shared, dp.clone(), table.clone(), args.epoch);
    let result = local.block_on(
        &runtime,
        control_plane(ctl, ev_rx, rpc_fds, listener, table),
    );

    dp.send(Cmd::Shutdown);
    if join.join().is_err() {
        return Err("the data plane panicked".into());
    }
    if let Some(p) = &args.listen {
        let _ = std::fs::remove_file(p);
    }
    result
}

async fn control_plane(
    ctl: Rc<Control>,
    ev_rx: tokio::sync::mpsc::UnboundedReceiver<dataplane::Event>,
    rpc_fds: Vec<OwnedFd>,
    listener: Option<StdUnixListener>,
    table: Arc<HandoffTable>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;

    let events = tokio::task::spawn_local(ctl.clone().run_events(ev_rx));

    let live = Rc::new(Cell::new(rpc_fds.len()));
    let all_closed = Rc::new(tokio::sync::Notify::new());
    for fd in rpc_fds {
        let std_stream = StdUnixStream::from(fd);
        std_stream
            .set_nonblocking(true)
            .map_err(|e| format!("--rpc-fd: {e}"))?;
        let stream = UnixStream::from_std(std_stream).map_err(|e| format!("--rpc-fd: {e}"))?;
        let (ctl, live, all_closed) = (ctl.clone(), live.clone(), all_closed.clone());
        tokio::task::spawn_local(async move {
            ctl.serve(stream).await;
            live.set(live.get() - 1);
            if live.get() == 0 {
                all_closed.notify_one();
            }
        });
    }
    let exit_when_orphaned = listener.is_none();
    if let Some(l) = listener {
        let l = capnet_schema::transport::serve_on(l).map_err(|e| format!("--listen: {e}"))?;
        tokio::task::spawn_local(serve_listener(l, ctl.clone(), table));
    }

    let orphaned = async {
        if exit_when_orphaned {
            all_closed.notified().await
        } else {
            std::future::pending().await
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = orphaned => tracing::info!("every control connection closed: stopping"),
        _ = events => return Err("the data plane stopped".into()),
    }
    // Holders hear that their contexts are revoked while we still talk.
    ctl.offloads.shutdown().await;
    Ok(())
}
