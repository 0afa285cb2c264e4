//! `capnet up`: start the service set, hand each process only the
//! capabilities it needs, serve the admin interface, stop everything on
//! SIGINT/SIGTERM or `capnet down`.
//!
//! Authority flows from here, as from an seL4 root task: each nicdrv gets a
//! socket on which it offers its `Nic` (one end goes to netsrv, one stays
//! here for administration); netsrv gets the `Nic`s and the application
//! socket; nobody gets anything else.

use crate::config::{ppm, Backend, Config, Port};
use crate::rpc;
use crate::spawn::{binary, socket_pair, spawn};
use capnet_schema::net_capnp::net;
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnp::capability::Rc as CapRc;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

pub struct UpOptions {
    pub config: Config,
    pub run_dir: PathBuf,
    /// Where relative wire paths point (another host's run directory, so
    /// that two service sets share a wire).
    pub wire_dir: PathBuf,
}

struct Process {
    name: String,
    child: Child,
    running: bool,
}

type Processes = Rc<RefCell<Vec<Process>>>;

pub fn prepare_run_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn nicdrv_args(
    port: &Port,
    opts: &UpOptions,
    rpc_fds: &[&OwnedFd],
    handoff: &OwnedFd,
) -> Result<Vec<String>, String> {
    let mut a = vec!["--name".to_string(), port.name.clone()];
    match port.backend {
        Backend::Sim => {
            let wire = port.wire.as_ref().ok_or("sim port without wire")?;
            a.extend(["--backend".into(), "sim".into(), "--wire".into()]);
            a.push(resolve(&opts.wire_dir, wire).display().to_string());
        }
        Backend::Tap => {
            a.extend(["--backend".into(), "tap".into(), "--tap".into()]);
            a.push(port.tap.clone().ok_or("tap port without tap")?);
            if let Some(ns) = &port.netns {
                a.extend(["--netns".into(), ns.clone()]);
            }
        }
    }
    if let Some(mac) = &port.mac {
        a.extend(["--mac".into(), mac.clone()]);
    }
    if let Some(mtu) = port.mtu {
        a.extend(["--mtu".into(), mtu.to_string()]);
    }
    if let Some(b) = port.buffers {
        a.extend(["--buffers".into(), b.to_string()]);
    }
    if let Some(pcap) = &port.pcap {
        a.extend([
            "--pcap".into(),
            resolve(&opts.run_dir, pcap).display().to_string(),
        ]);
    }
    if port.checksum_offload == Some(false) {
        a.push("--no-csum-offload".into());
    }
    let f = &port.faults;
    for (flag, v) in [
        ("--loss-ppm", f.loss),
        ("--reorder-ppm", f.reorder),
        ("--duplicate-ppm", f.duplicate),
        ("--corrupt-ppm", f.corrupt),
    ] {
        let v = ppm(flag, v)?;
        if v > 0 {
            a.extend([flag.to_string(), v.to_string()]);
        }
    }
    if let Some(seed) = f.seed {
        a.extend(["--seed".into(), seed.to_string()]);
    }
    for fd in rpc_fds {
        a.extend(["--rpc-fd".into(), fd.as_raw_fd().to_string()]);
    }
    a.extend(["--handoff-fd".into(), handoff.as_raw_fd().to_string()]);
    Ok(a)
}

/// Runs the service set until it is told to stop.
pub fn up(opts: UpOptions) -> Result<(), String> {
    prepare_run_dir(&opts.run_dir)
        .map_err(|e| format!("run directory {}: {e}", opts.run_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let processes: Processes = Rc::new(RefCell::new(Vec::new()));
    let result = local.block_on(&runtime, run(&opts, processes.clone()));
    stop_all(&processes);
    for name in ["capnet.sock", "admin.sock", "capnet.pid"] {
        let _ = std::fs::remove_file(opts.run_dir.join(name));
    }
    result
}

async fn run(opts: &UpOptions, processes: Processes) -> Result<(), String> {
    let nicdrv = binary("nicdrv").map_err(|e| e.to_string())?;
    let netsrv = binary("netsrv").map_err(|e| e.to_string())?;
    let mut netsrv_args = Vec::new();
    let mut netsrv_fds: Vec<OwnedFd> = Vec::new();
    let mut nics = Vec::new();

    for port in &opts.config.ports {
        let (rpc_child, rpc_netsrv) = socket_pair().map_err(|e| e.to_string())?;
        let (handoff_child, handoff_netsrv) = socket_pair().map_err(|e| e.to_string())?;
        let (admin_child, admin_here) = socket_pair().map_err(|e| e.to_string())?;
        let args = nicdrv_args(port, opts, &[&rpc_child, &admin_child], &handoff_child)?;
        let child = spawn(&nicdrv, &args, &[&rpc_child, &admin_child, &handoff_child])
            .map_err(|e| format!("starting nicdrv for {}: {e}", port.name))?;
        tracing::info!(port = %port.name, pid = child.id(), "nicdrv started");
        processes.borrow_mut().push(Process {
            name: format!("nicdrv {}", port.name),
            child,
            running: true,
        });
        let nic: nic::Client = rpc::bootstrap(admin_here).map_err(|e| e.to_string())?;
        nics.push((port.name.clone(), nic));
        netsrv_args.extend([
            "--port".to_string(),
            format!(
                "{}=fd:{},{}",
                port.name,
                rpc_netsrv.as_raw_fd(),
                handoff_netsrv.as_raw_fd()
            ),
        ]);
        for a in &port.addresses {
            netsrv_args.extend(["--address".to_string(), format!("{}={a}", port.name)]);
        }
        netsrv_fds.extend([rpc_netsrv, handoff_netsrv]);
    }
    for r in &opts.config.routes {
        netsrv_args.extend(["--route".to_string(), format!("{}={}", r.to, r.via)]);
    }
    if let Some(b) = opts.config.netsrv.tcp_buffer {
        netsrv_args.extend(["--tcp-buffer".to_string(), b.to_string()]);
    }
    let socket_path = opts.run_dir.join("capnet.sock");
    let _ = std::fs::remove_file(&socket_path);
    netsrv_args.extend(["--listen".to_string(), socket_path.display().to_string()]);
    let (net_child, net_here) = socket_pair().map_err(|e| e.to_string())?;
    netsrv_args.extend(["--rpc-fd".to_string(), net_child.as_raw_fd().to_string()]);
    let mut inherit: Vec<&OwnedFd> = netsrv_fds.iter().collect();
    inherit.push(&net_child);
    let child =
        spawn(&netsrv, &netsrv_args, &inherit).map_err(|e| format!("starting netsrv: {e}"))?;
    tracing::info!(pid = child.id(), "netsrv started");
    processes.borrow_mut().push(Process {
        name: "netsrv".into(),
        child,
        running: true,
    });
    drop(netsrv_fds);
    drop(net_child);
    let net: net::Client = rpc::bootstrap(net_here).map_err(|e| e.to_string())?;

    // Ready when netsrv answers and its application socket exists.
    let ready = async {
        net.status_request().send().promise.await?;
        while !socket_path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<(), capnp::Error>(())
    };
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), ready) => match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("netsrv did not come up: {e}")),
            Err(_) => return Err("netsrv did not come up within 30 s".into()),
        },
        name = watch_children(processes.clone()) => return Err(format!("{name} exited during start-up")),
    }

    let shutdown = Rc::new(Notify::new());
    let admin = SupervisorServer {
        processes: processes.clone(),
        net,
        nics,
        shutdown: shutdown.clone(),
    };
    let admin: supervisor::Client = capnp_rpc::new_client(admin);
    let admin_path = opts.run_dir.join("admin.sock");
    let listener =
        rpc::listen(&admin_path).map_err(|e| format!("{}: {e}", admin_path.display()))?;
    tokio::task::spawn_local(rpc::serve_forever(listener, admin.client));
    std::fs::write(
        opts.run_dir.join("capnet.pid"),
        format!("{}\n", std::process::id()),
    )
    .map_err(|e| e.to_string())?;

    println!(
        "capnet up: {} port(s), run directory {}",
        opts.config.ports.len(),
        opts.run_dir.display()
    );
    println!("applications connect to {}", socket_path.display());
    println!("  export CAPNET_SOCKET={}", socket_path.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = shutdown.notified() => tracing::info!("shutdown requested"),
        name = watch_children(processes.clone()) => {
            tracing::error!(process = %name, "a service process exited; stopping the set");
            return Err(format!("{name} exited"));
        }
    }
    Ok(())
}

/// Resolves with the name of the first process that exits.
async fn watch_children(processes: Processes) -> String {
    loop {
        for p in processes.borrow_mut().iter_mut() {
            if p.running {
                if let Ok(Some(status)) = p.child.try_wait() {
                    p.running = false;
                    tracing::warn!(process = %p.name, %status, "process exited");
                    return p.name.clone();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to every child (netsrv first, then the drivers), then SIGKILL to
/// whatever is left after two seconds.
fn stop_all(processes: &Processes) {
    let mut procs = processes.borrow_mut();
    for p in procs.iter_mut().rev() {
        if p.running {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for p in procs.iter_mut() {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
            }
        }
        p.running = false;
    }
}

struct SupervisorServer {
    processes: Processes,
    net: net::Client,
    nics: Vec<(String, nic::Client)>,
    shutdown: Rc<Notify>,
}

impl SupervisorServer {
    fn nic(&self, name: &str) -> Result<nic::Client, capnp::Error> {
        self.nics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| capnp::Error::failed(format!("invalid: no port named {name:?}")))
    }
}

impl supervisor::Server for SupervisorServer {
    async fn status(
        self: CapRc<Self>,
        _: supervisor::StatusParams,
        mut results: supervisor::StatusResults,
    ) -> Result<(), capnp::Error> {
        let resp = self.net.status_request().send().promise.await?;
        let mut r = results.get();
        r.set_net(resp.get()?.get_status()?)?;
        let procs = self.processes.borrow();
        let mut list = r.init_processes(procs.len() as u32);
        for (i, p) in procs.iter().enumerate() {
            let mut b = list.reborrow().get(i as u32);
            b.set_name(&p.name);
            b.set_pid(p.child.id());
            b.set_running(p.running);
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
}
