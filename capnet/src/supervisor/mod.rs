//! `capnet up`: start the service set, hand each process only the
//! capabilities it needs, keep it running (restart policy of
//! docs/resilience.md), serve the admin interface, stop everything on
//! SIGINT/SIGTERM or `capnet down`.
//!
//! Authority flows from here, as from an seL4 root task: each nicdrv gets a
//! socket on which it offers its `Nic` (one end goes to netsrv, one stays
//! here for administration); netsrv gets the `Nic`s, the application socket,
//! a `NetAdmin` socket to the supervisor and the attach socket on which
//! restarted drivers arrive; tlsd gets a socket on which it answers the
//! supervisor's `stat` (the watchdog's ping); nobody gets anything else.
//!
//! Restarts: a nicdrv that exits is started again with fresh sockets and
//! handed to the running netsrv over the attach socket. If netsrv exits, the
//! drivers are stopped and the whole data path starts again. An exit within
//! [`QUICK`] of starting is quick: the next start waits 100 ms, 200 ms,
//! 400 ms, ...; after [`QUICK_LIMIT`] quick exits in a row the process is
//! `failed` and left down.

mod admin;
mod rundir;
mod watchdog;

pub use rundir::{prepare_run_dir, RunDirLock};

use crate::config::{ppm, Access, Backend, Bond, Config, Port, ServiceUsers};
use crate::rpc;
use crate::spawn::{binary, socket_pair, spawn};
use capnet_schema::net_capnp::net_admin;
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnet_schema::tls_capnp::tls;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// netsrv's socket for tlsd, in the run directory.
pub const TRUSTED_SOCKET: &str = "net-trusted.sock";

/// An exit sooner than this after the start is a quick one.
pub const QUICK: Duration = Duration::from_secs(1);
/// Quick exits in a row after which a process is given up.
pub const QUICK_LIMIT: u32 = 5;
/// The first back-off after a quick exit; it doubles with each further one.
pub const BACKOFF: Duration = Duration::from_millis(100);

pub struct UpOptions {
    pub config: Config,
    pub run_dir: PathBuf,
    /// Where relative wire paths point (another host's run directory, so
    /// that two service sets share a wire).
    pub wire_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Restarting,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The driver of `config.ports[i]`.
    Nicdrv(usize),
    Netsrv,
    Tlsd,
}

struct Process {
    name: String,
    role: Role,
    child: Option<Child>,
    started: Instant,
    /// Instances started after the first.
    restarts: u32,
    /// Instances started so far.
    starts: u32,
    quick_exits: u32,
    state: State,
    last_exit: String,
    /// When a restarting process is due to start again; `None` while it
    /// waits for something else (a nicdrv for the data path restart).
    restart_at: Option<Instant>,
    /// Why the watchdog killed this instance, for its exit description.
    hung: Option<String>,
}

impl Process {
    fn new(name: String, role: Role) -> Process {
        Process {
            name,
            role,
            child: None,
            started: Instant::now(),
            restarts: 0,
            starts: 0,
            quick_exits: 0,
            state: State::Stopped,
            last_exit: String::new(),
            restart_at: None,
            hung: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn started(&mut self, child: Child) {
        self.child = Some(child);
        self.started = Instant::now();
        if self.starts > 0 {
            self.restarts += 1;
        }
        self.starts += 1;
        self.state = State::Running;
        self.restart_at = None;
    }
}

/// The set's state, shared by the monitor and the admin server.
struct Set {
    /// The drivers in config order, then netsrv, then tlsd.
    procs: Vec<Process>,
    /// The admin `Nic` of every running driver.
    nics: HashMap<String, nic::Client>,
    /// netsrv's administration; `None` while it (re)starts.
    admin: Option<net_admin::Client>,
    /// The running tlsd's channel to us (stat only): the watchdog pings it.
    tlsd: Option<tls::Client>,
    /// Our end of netsrv's attach socket.
    attach: Option<OwnedFd>,
    /// Counts netsrv instances, so that a late readiness check of an old one
    /// changes nothing.
    netsrv_generation: u64,
    /// Bonds and routes as netsrv should have them: the configuration plus
    /// what `NetAdmin` changed since; a restarted netsrv gets them.
    bonds: Vec<Bond>,
    routes: Vec<(String, String)>,
    stopping: bool,
}

type Shared = Rc<RefCell<Set>>;

impl Set {
    fn netsrv(&mut self) -> &mut Process {
        self.process(Role::Netsrv)
    }

    fn process(&mut self, role: Role) -> &mut Process {
        self.procs
            .iter_mut()
            .find(|p| p.role == role)
            .expect("every role has its process")
    }
}

/// What every start needs.
struct Ctx {
    opts: UpOptions,
    nicdrv: PathBuf,
    netsrv: PathBuf,
    tlsd: PathBuf,
    socket_path: PathBuf,
    tls_socket_path: PathBuf,
    /// netsrv's socket for tlsd alone.
    trusted_socket_path: PathBuf,
    access: Access,
    /// The users the services become (the set started as root).
    users: Option<ServiceUsers>,
}

/// Where a sim port's wire socket is: a relative path is beneath
/// `<wire-dir>/wires/`, a directory of its own, since the drivers may
/// write there (and never in the run directory).
fn wire_path(opts: &UpOptions, wire: &Path) -> PathBuf {
    resolve(&opts.wire_dir.join("wires"), wire)
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// "exit status 1", "killed by signal 9".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        format!("killed by signal {sig}")
    } else {
        status.to_string()
    }
}

/// The wait before the next start after `quick_exits` quick exits in a row.
pub fn backoff(quick_exits: u32) -> Duration {
    match quick_exits {
        0 => Duration::ZERO,
        n => BACKOFF * (1u32 << (n - 1).min(16)),
    }
}

/// `epoch`: instances of this port's driver started before this one.
fn nicdrv_args(
    port: &Port,
    opts: &UpOptions,
    user: Option<capnet_confine::User>,
    epoch: u32,
    rpc_fds: &[&OwnedFd],
    handoff: &OwnedFd,
) -> Result<Vec<String>, String> {
    let mut a = vec!["--name".to_string(), port.name.clone()];
    a.extend(["--epoch".into(), epoch.to_string()]);
    a.extend(user_args(user));
    match port.backend {
        Backend::Sim => {
            let wire = port.wire.as_ref().ok_or("sim port without wire")?;
            a.extend(["--backend".into(), "sim".into(), "--wire".into()]);
            a.push(wire_path(opts, wire).display().to_string());
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
    if port.tls_offload {
        a.push("--tls-offload".into());
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

/// netsrv's arguments but the descriptors: ports, bonds, addresses,
/// routes, buffers, the application socket.
fn netsrv_args(
    config: &Config,
    bonds: &[Bond],
    routes: &[(String, String)],
    socket_path: &Path,
    access: &Access,
) -> Vec<String> {
    let mut a = Vec::new();
    for port in &config.ports {
        for addr in &port.addresses {
            a.extend(["--address".to_string(), format!("{}={addr}", port.name)]);
        }
    }
    for b in bonds {
        a.extend(["--bond".to_string(), b.netsrv_arg()]);
        for addr in &b.addresses {
            a.extend(["--address".to_string(), format!("{}={addr}", b.name)]);
        }
    }
    for (to, via) in routes {
        a.extend(["--route".to_string(), format!("{to}={via}")]);
    }
    if let Some(b) = config.netsrv.tcp_buffer {
        a.extend(["--tcp-buffer".to_string(), b.to_string()]);
    }
    a.extend(config.limits.netsrv_args());
    if let Some(cc) = config.netsrv.congestion_control {
        let cc = match cc {
            crate::config::CongestionControl::Reno => "reno",
            crate::config::CongestionControl::None => "none",
        };
        a.extend(["--congestion-control".to_string(), cc.to_string()]);
    }
    a.extend(["--listen".to_string(), socket_path.display().to_string()]);
    a.extend(access_args(access));
    a
}

/// `--user UID:GID` when the service is to become a user of its own.
fn user_args(user: Option<capnet_confine::User>) -> Vec<String> {
    user.map(|u| vec!["--user".into(), u.to_string()])
        .unwrap_or_default()
}

/// Who may use the network and bind low ports, for netsrv and tlsd.
fn access_args(access: &Access) -> [String; 4] {
    [
        "--allow-network".into(),
        access.network.to_string(),
        "--allow-low-ports".into(),
        access.low_ports.to_string(),
    ]
}

/// Runs the service set until it is told to stop.
pub fn up(opts: UpOptions) -> Result<(), String> {
    prepare_run_dir(&opts.run_dir)
        .map_err(|e| format!("run directory {}: {e}", opts.run_dir.display()))?;
    let _lock = RunDirLock::take(&opts.run_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let ctx = Rc::new(Ctx {
        nicdrv: binary("nicdrv").map_err(|e| e.to_string())?,
        netsrv: binary("netsrv").map_err(|e| e.to_string())?,
        tlsd: binary("tlsd").map_err(|e| e.to_string())?,
        socket_path: opts.run_dir.join("capnet.sock"),
        tls_socket_path: opts.run_dir.join("tls.sock"),
        trusted_socket_path: opts.run_dir.join(TRUSTED_SOCKET),
        // SAFETY: getuid has no preconditions.
        access: opts.config.access.resolve(unsafe { libc::getuid() })?,
        // SAFETY: getuid has no preconditions.
        users: opts
            .config
            .supervisor
            .service_users(unsafe { libc::getuid() })?,
        opts,
    });
    rundir::open_run_dir_to(&ctx.opts.run_dir, &ctx.access, ctx.users.is_some())
        .map_err(|e| format!("run directory {}: {e}", ctx.opts.run_dir.display()))?;
    for port in &ctx.opts.config.ports {
        if let Some(dir) = port
            .wire
            .as_ref()
            .and_then(|w| wire_path(&ctx.opts, w).parent().map(Path::to_path_buf))
        {
            rundir::prepare_wire_dir(&dir, &ctx.opts.run_dir, ctx.users.map(|u| u.nicdrv.gid))
                .map_err(|e| format!("port {}: {e}", port.name))?;
        }
    }
    if let Some(users) = ctx.users {
        tracing::info!(
            netsrv = users.netsrv.uid,
            tlsd = users.tlsd.uid,
            nicdrv = users.nicdrv.uid,
            "each service becomes its own user once started"
        );
    }
    let config = &ctx.opts.config;
    let mut procs: Vec<Process> = config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| Process::new(format!("nicdrv {}", p.name), Role::Nicdrv(i)))
        .collect();
    procs.push(Process::new("netsrv".into(), Role::Netsrv));
    procs.push(Process::new("tlsd".into(), Role::Tlsd));
    let shared: Shared = Rc::new(RefCell::new(Set {
        procs,
        nics: HashMap::new(),
        admin: None,
        tlsd: None,
        attach: None,
        netsrv_generation: 0,
        bonds: config.bonds.clone(),
        routes: config
            .routes
            .iter()
            .map(|r| (r.to.clone(), r.via.to_string()))
            .collect(),
        stopping: false,
    }));
    let result = local.block_on(&runtime, run(ctx.clone(), shared.clone()));
    local.block_on(&runtime, stop_all(&shared));
    for name in [
        "capnet.sock",
        "tls.sock",
        TRUSTED_SOCKET,
        "admin.sock",
        "capnet.pid",
    ] {
        let _ = std::fs::remove_file(ctx.opts.run_dir.join(name));
    }
    result
}

async fn run(ctx: Rc<Ctx>, shared: Shared) -> Result<(), String> {
    let admin = start_data_path(&ctx, &shared)?;

    // Ready when netsrv answers and its application socket exists.
    let ready = async {
        admin.status_request().send().promise.await?;
        while !ctx.socket_path.exists() {
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
        (name, how) = first_exit(shared.clone()) => {
            return Err(format!("{name} exited during start-up ({how})"))
        }
    }
    shared.borrow_mut().admin = Some(admin);
    start_tlsd(&ctx, &mut shared.borrow_mut())?;
    let tls_ready = async {
        while !ctx.tls_socket_path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), tls_ready) => if r.is_err() {
            return Err("tlsd did not come up within 30 s".into());
        },
        (name, how) = first_exit(shared.clone()) => {
            return Err(format!("{name} exited during start-up ({how})"))
        }
    }

    if let Some(deadline) = ctx.opts.config.supervisor.watchdog() {
        tokio::task::spawn_local(watchdog::run(shared.clone(), deadline));
    }
    let shutdown = Rc::new(Notify::new());
    let admin_sock: supervisor::Client = capnp_rpc::new_client(admin::SupervisorServer::new(
        shared.clone(),
        shutdown.clone(),
    ));
    let admin_path = ctx.opts.run_dir.join("admin.sock");
    let listener = capnet_schema::transport::listen_for(&admin_path, &ctx.access.admin)
        .and_then(capnet_schema::transport::serve_on)
        .map_err(|e| format!("{}: {e}", admin_path.display()))?;
    tokio::task::spawn_local(rpc::serve_forever(
        listener,
        admin_sock.client,
        ctx.access.admin.clone(),
    ));
    std::fs::write(
        ctx.opts.run_dir.join("capnet.pid"),
        format!("{}\n", std::process::id()),
    )
    .map_err(|e| e.to_string())?;

    println!(
        "capnet up: {} port(s), {} bond(s), run directory {}",
        ctx.opts.config.ports.len(),
        ctx.opts.config.bonds.len(),
        ctx.opts.run_dir.display()
    );
    println!("applications connect to {}", ctx.socket_path.display());
    println!("  export CAPNET_SOCKET={}", ctx.socket_path.display());
    println!(
        "TLS applications connect to {}",
        ctx.tls_socket_path.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = shutdown.notified() => tracing::info!("shutdown requested"),
        _ = monitor(ctx.clone(), shared.clone(), sigchld) => {}
    }
    Ok(())
}

/// Starts one driver; returns netsrv's ends `[rpc, handoff]`.
fn start_nicdrv(ctx: &Ctx, set: &mut Set, index: usize) -> Result<[OwnedFd; 2], String> {
    let port = &ctx.opts.config.ports[index];
    let io = |e: io::Error| e.to_string();
    let (rpc_child, rpc_netsrv) = socket_pair().map_err(io)?;
    let (handoff_child, handoff_netsrv) = socket_pair().map_err(io)?;
    let (admin_child, admin_here) = socket_pair().map_err(io)?;
    let epoch = set.procs[index].starts;
    let args = nicdrv_args(
        port,
        &ctx.opts,
        ctx.users.map(|u| u.nicdrv),
        epoch,
        &[&rpc_child, &admin_child],
        &handoff_child,
    )?;
    let child = spawn(
        &ctx.nicdrv,
        &args,
        &[&rpc_child, &admin_child, &handoff_child],
    )
    .map_err(|e| format!("starting nicdrv for {}: {e}", port.name))?;
    let pid = child.id();
    set.procs[index].started(child);
    let nic: nic::Client = rpc::bootstrap(admin_here).map_err(io)?;
    set.nics.insert(port.name.clone(), nic);
    tracing::info!(port = %port.name, pid, restarts = set.procs[index].restarts, "nicdrv started");
    Ok([rpc_netsrv, handoff_netsrv])
}

/// Starts every driver, then netsrv over them. Returns netsrv's `NetAdmin`
/// (not yet known to answer).
fn start_data_path(ctx: &Ctx, shared: &Shared) -> Result<net_admin::Client, String> {
    let mut set = shared.borrow_mut();
    let set = &mut *set;
    let mut args = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (i, port) in ctx.opts.config.ports.iter().enumerate() {
        // A fresh start of the data path: earlier crash loops are forgiven.
        set.procs[i].quick_exits = 0;
        let [rpc, handoff] = match start_nicdrv(ctx, set, i) {
            Ok(fds) => fds,
            Err(e) if set.procs[i].starts == 0 => return Err(e),
            Err(e) => {
                tracing::error!("{e}; port {} stays down", port.name);
                let p = &mut set.procs[i];
                p.state = State::Failed;
                p.last_exit = format!("could not start: {e}");
                continue;
            }
        };
        args.extend([
            "--port".to_string(),
            format!(
                "{}=fd:{},{}",
                port.name,
                rpc.as_raw_fd(),
                handoff.as_raw_fd()
            ),
        ]);
        fds.extend([rpc, handoff]);
    }
    args.extend(netsrv_args(
        &ctx.opts.config,
        &set.bonds,
        &set.routes,
        &ctx.socket_path,
        &ctx.access,
    ));
    // tlsd's own way in (it serves many users: see netsrv's rpc.rs).
    args.extend([
        "--trusted-listen".to_string(),
        ctx.trusted_socket_path.display().to_string(),
        "--trusted-uid".to_string(),
        ctx.users
            .map(|u| u.tlsd.uid)
            // SAFETY: getuid has no preconditions.
            .unwrap_or_else(|| unsafe { libc::getuid() })
            .to_string(),
    ]);
    args.extend(user_args(ctx.users.map(|u| u.netsrv)));
    let io = |e: io::Error| e.to_string();
    let (admin_child, admin_here) = socket_pair().map_err(io)?;
    let (attach_child, attach_here) = socket_pair().map_err(io)?;
    // Never block the supervisor on a netsrv that does not read.
    let attach_here = std::os::unix::net::UnixStream::from(attach_here);
    attach_here.set_nonblocking(true).map_err(io)?;
    let attach_here = OwnedFd::from(attach_here);
    args.extend([
        "--admin-fd".to_string(),
        admin_child.as_raw_fd().to_string(),
    ]);
    args.extend([
        "--attach-fd".to_string(),
        attach_child.as_raw_fd().to_string(),
    ]);
    let _ = std::fs::remove_file(&ctx.socket_path);
    let mut inherit: Vec<&OwnedFd> = fds.iter().collect();
    inherit.extend([&admin_child, &attach_child]);
    let child = spawn(&ctx.netsrv, &args, &inherit).map_err(|e| format!("starting netsrv: {e}"))?;
    let pid = child.id();
    set.netsrv().started(child);
    set.netsrv_generation += 1;
    set.attach = Some(attach_here);
    set.admin = None;
    tracing::info!(pid, restarts = set.netsrv().restarts, "netsrv started");
    rpc::bootstrap(admin_here).map_err(io)
}

/// tlsd's arguments: its socket, netsrv's socket for it, and the TLS files.
fn tlsd_args(ctx: &Ctx) -> Vec<String> {
    let mut a = vec![
        "--listen".to_string(),
        ctx.tls_socket_path.display().to_string(),
        "--net".to_string(),
        ctx.trusted_socket_path.display().to_string(),
    ];
    a.extend(user_args(ctx.users.map(|u| u.tlsd)));
    let tls = &ctx.opts.config.tls;
    for (flag, path) in [
        ("--cert", &tls.cert),
        ("--key", &tls.key),
        ("--roots", &tls.roots),
        ("--keylog", &tls.keylog),
    ] {
        if let Some(p) = path {
            a.extend([flag.to_string(), p.display().to_string()]);
        }
    }
    a.extend(tls.limit_args());
    a.extend(access_args(&ctx.access));
    a
}

/// Starts tlsd. It needs netsrv's application socket, not netsrv itself:
/// a netsrv restart resets its sessions, and it connects again.
fn start_tlsd(ctx: &Ctx, set: &mut Set) -> Result<(), String> {
    let _ = std::fs::remove_file(&ctx.tls_socket_path);
    // Our channel to this instance: the watchdog pings it there.
    let (admin_child, admin_here) = socket_pair().map_err(|e| e.to_string())?;
    let mut args = tlsd_args(ctx);
    args.extend(["--admin-fd".into(), admin_child.as_raw_fd().to_string()]);
    let child =
        spawn(&ctx.tlsd, &args, &[&admin_child]).map_err(|e| format!("starting tlsd: {e}"))?;
    let pid = child.id();
    let p = set.process(Role::Tlsd);
    p.started(child);
    tracing::info!(pid, restarts = p.restarts, "tlsd started");
    // The child is in the table first: it must be stopped and reaped
    // whatever happens here.
    set.tlsd = rpc::bootstrap(admin_here)
        .inspect_err(|e| tracing::error!(%e, "no channel to tlsd; the watchdog cannot ping it"))
        .ok();
    Ok(())
}

/// During start-up: resolves with the first process that exits, and how.
async fn first_exit(shared: Shared) -> (String, String) {
    loop {
        for p in shared.borrow_mut().procs.iter_mut() {
            if let Some(child) = &mut p.child {
                if let Ok(Some(status)) = child.try_wait() {
                    p.child = None;
                    p.state = State::Stopped;
                    p.last_exit = describe_exit(status);
                    return (p.name.clone(), p.last_exit.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watches the children and restarts them, forever.
async fn monitor(ctx: Rc<Ctx>, shared: Shared, mut sigchld: tokio::signal::unix::Signal) {
    loop {
        reap(&shared).await;
        restart_due(&ctx, &shared);
        // SIGCHLD wakes us for every exit (an exit before the handler was
        // installed is found by `reap` above); a timer runs only while a
        // restart is scheduled, so an idle set costs no wakeups here.
        let next = shared
            .borrow()
            .procs
            .iter()
            .filter_map(|p| p.restart_at)
            .min();
        match next {
            Some(at) => tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep_until(at.into()) => {}
            },
            None => {
                sigchld.recv().await;
            }
        }
    }
}

/// Notes every child that exited and decides what happens next.
async fn reap(shared: &Shared) {
    let mut exited = Vec::new();
    for (i, p) in shared.borrow_mut().procs.iter_mut().enumerate() {
        if let Some(child) = &mut p.child {
            if let Ok(Some(status)) = child.try_wait() {
                p.child = None;
                exited.push((i, status));
            }
        }
    }
    for (i, status) in exited {
        on_exit(shared, i, status).await;
    }
}

async fn on_exit(shared: &Shared, index: usize, status: ExitStatus) {
    let role = {
        let mut set = shared.borrow_mut();
        let stopping = set.stopping;
        let p = &mut set.procs[index];
        p.last_exit = match p.hung.take() {
            Some(why) => why,
            None => describe_exit(status),
        };
        let quick = p.started.elapsed() < QUICK;
        p.quick_exits = if quick { p.quick_exits + 1 } else { 0 };
        tracing::warn!(process = %p.name, exit = %p.last_exit, quick, "process exited");
        if stopping {
            p.state = State::Stopped;
            return;
        }
        p.role
    };
    match role {
        Role::Nicdrv(_) => {
            let mut set = shared.borrow_mut();
            let netsrv_up = set.attach.is_some();
            let p = &mut set.procs[index];
            let port = p
                .name
                .strip_prefix("nicdrv ")
                .unwrap_or(&p.name)
                .to_string();
            if p.quick_exits >= QUICK_LIMIT {
                p.state = State::Failed;
                p.restart_at = None;
                tracing::error!(
                    "{} exited {} times within {} s of starting (last: {}); not restarting it; port {port} stays down",
                    p.name,
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            } else {
                p.state = State::Restarting;
                // Without netsrv the data path restart brings it back.
                p.restart_at = netsrv_up.then(|| Instant::now() + backoff(p.quick_exits));
            }
            set.nics.remove(&port);
        }
        Role::Tlsd => {
            let mut set = shared.borrow_mut();
            set.tlsd = None;
            let p = set.process(Role::Tlsd);
            if p.quick_exits >= QUICK_LIMIT {
                p.state = State::Failed;
                p.restart_at = None;
                tracing::error!(
                    "tlsd exited {} times within {} s of starting (last: {}); not restarting it; TLS stays down",
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            } else {
                p.state = State::Restarting;
                p.restart_at = Some(Instant::now() + backoff(p.quick_exits));
            }
        }
        Role::Netsrv => {
            let (failed, wait) = {
                let mut set = shared.borrow_mut();
                set.admin = None;
                set.attach = None;
                set.nics.clear();
                let p = set.netsrv();
                (p.quick_exits >= QUICK_LIMIT, backoff(p.quick_exits))
            };
            stop_drivers(shared).await;
            let mut set = shared.borrow_mut();
            let p = set.netsrv();
            if failed {
                p.state = State::Failed;
                p.restart_at = None;
                tracing::error!(
                    "netsrv exited {} times within {} s of starting (last: {}); not restarting it; the data path stays down",
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            } else {
                p.state = State::Restarting;
                p.restart_at = Some(Instant::now() + wait);
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    "netsrv exited; restarting the data path"
                );
            }
            for p in set.procs.iter_mut() {
                if let Role::Nicdrv(_) = p.role {
                    p.state = if failed {
                        State::Stopped
                    } else {
                        State::Restarting
                    };
                    p.restart_at = None;
                }
            }
        }
    }
}

/// SIGTERM to every running driver; SIGKILL to those still there after a
/// second. Their exits are ours, not crashes.
async fn stop_drivers(shared: &Shared) {
    let mut children: Vec<(usize, Child)> = Vec::new();
    for (i, p) in shared.borrow_mut().procs.iter_mut().enumerate() {
        // Only drivers: netsrv's and tlsd's children stay where they are.
        if !matches!(p.role, Role::Nicdrv(_)) {
            continue;
        }
        if let Some(child) = p.child.take() {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            children.push((i, child));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut statuses = Vec::new();
    for (i, mut child) in children {
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Err(_) => break None,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Ok(None) => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        statuses.push((i, status));
    }
    let mut set = shared.borrow_mut();
    for (i, status) in statuses {
        if let Some(s) = status {
            set.procs[i].last_exit = format!("stopped ({})", describe_exit(s));
        }
    }
}

/// Starts whatever is due.
fn restart_due(ctx: &Rc<Ctx>, shared: &Shared) {
    let now = Instant::now();
    let due: Vec<(usize, Role)> = shared
        .borrow()
        .procs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state == State::Restarting && p.restart_at.is_some_and(|t| t <= now))
        .map(|(i, p)| (i, p.role))
        .collect();
    for (i, role) in due {
        match role {
            Role::Nicdrv(port) => restart_nicdrv(ctx, shared, i, port),
            Role::Netsrv => restart_data_path(ctx, shared),
            Role::Tlsd => {
                let mut set = shared.borrow_mut();
                if let Err(e) = start_tlsd(ctx, &mut set) {
                    let p = set.process(Role::Tlsd);
                    p.quick_exits += 1;
                    p.last_exit = format!("could not start: {e}");
                    p.restart_at = Some(Instant::now() + backoff(p.quick_exits));
                    tracing::warn!("{e}");
                }
            }
        }
    }
}

fn restart_nicdrv(ctx: &Ctx, shared: &Shared, index: usize, port: usize) {
    let started = Instant::now();
    let mut set = shared.borrow_mut();
    let name = &ctx.opts.config.ports[port].name;
    let fds = match start_nicdrv(ctx, &mut set, index) {
        Ok(fds) => fds,
        Err(e) => {
            // As an instant exit: the same back-off and limit.
            let p = &mut set.procs[index];
            p.quick_exits += 1;
            p.last_exit = format!("could not start: {e}");
            if p.quick_exits >= QUICK_LIMIT {
                p.state = State::Failed;
                p.restart_at = None;
                tracing::error!("nicdrv {name} could not be started {} times (last: {e}); not restarting it; port {name} stays down", p.quick_exits);
            } else {
                p.restart_at = Some(Instant::now() + backoff(p.quick_exits));
                tracing::warn!("{e}");
            }
            return;
        }
    };
    let Some(attach) = &set.attach else {
        return;
    };
    let [rpc, handoff] = &fds;
    match capnet_ring::platform::send_fds(
        attach.as_fd(),
        name.as_bytes(),
        &[rpc.as_fd(), handoff.as_fd()],
    ) {
        Ok(()) => tracing::info!(
            port = %name,
            took_us = started.elapsed().as_micros() as u64,
            "restarted driver handed to netsrv"
        ),
        Err(e) => {
            tracing::error!(port = %name, %e, "could not hand the restarted driver to netsrv")
        }
    }
}

fn restart_data_path(ctx: &Rc<Ctx>, shared: &Shared) {
    tracing::info!("starting the data path again");
    let admin = match start_data_path(ctx, shared) {
        Ok(admin) => admin,
        Err(e) => {
            let mut set = shared.borrow_mut();
            let p = set.netsrv();
            p.quick_exits += 1;
            p.last_exit = format!("could not start: {e}");
            if p.quick_exits >= QUICK_LIMIT {
                p.state = State::Failed;
                p.restart_at = None;
                tracing::error!(
                    "the data path could not be started {} times (last: {e}); giving up",
                    p.quick_exits
                );
            } else {
                p.restart_at = Some(Instant::now() + backoff(p.quick_exits));
                tracing::warn!("{e}");
            }
            return;
        }
    };
    let generation = shared.borrow().netsrv_generation;
    let shared = shared.clone();
    let ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            admin.status_request().send().promise,
        )
        .await;
        if !matches!(answer, Ok(Ok(_))) {
            tracing::warn!("the restarted netsrv did not answer");
            return;
        }
        for _ in 0..500 {
            if ctx.socket_path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut set = shared.borrow_mut();
        if set.netsrv_generation == generation && set.netsrv().state == State::Running {
            set.admin = Some(admin);
            tracing::info!("data path serving again");
        }
    });
}

/// SIGTERM to every child (netsrv first, then the drivers), then SIGKILL to
/// whatever is left after two seconds.
async fn stop_all(shared: &Shared) {
    let mut set = shared.borrow_mut();
    set.stopping = true;
    set.admin = None;
    set.tlsd = None;
    set.nics.clear();
    for p in set.procs.iter_mut().rev() {
        if let Some(child) = &p.child {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for p in set.procs.iter_mut() {
        if let Some(child) = &mut p.child {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        p.child = None;
        p.state = State::Stopped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(800));
    }

    #[test]
    fn exits_are_described_plainly() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9");
    }

    #[test]
    fn netsrv_gets_bonds_addresses_and_routes() {
        let config = Config::parse(include_str!("../../../examples/bond-a.toml")).unwrap();
        let routes = vec![("default".to_string(), "10.0.0.254".to_string())];
        let access = config.access.resolve(1000).unwrap();
        let a = netsrv_args(
            &config,
            &config.bonds,
            &routes,
            Path::new("/r/capnet.sock"),
            &access,
        )
        .join(" ");
        assert_eq!(
            a,
            "--bond bond0=active-backup:p0,p1:p0 --address bond0=10.0.0.1/24 \
             --route default=10.0.0.254 --listen /r/capnet.sock \
             --allow-network * --allow-low-ports 1000"
        );
    }
}
