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
//! drivers are stopped and the whole data path starts again. When, and how
//! often, is the restart policy's (`restart.rs`); what each service is
//! started with is the start-up table's (`start.rs`).

mod admin;
mod restart;
mod rundir;
mod start;
mod watchdog;

use restart::{backoff, describe_exit, Process, State, QUICK};
pub use rundir::{prepare_run_dir, RunDirLock};
use start::{start_data_path, start_nicdrv, start_tlsd, wire_path, Ctx};

use crate::config::{Bond, Config};
use crate::rpc;
use crate::spawn::binary;
use capnet_schema::net_capnp::net_admin;
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnet_schema::tls_capnp::tls;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// netsrv's socket for tlsd, in the run directory.
pub const TRUSTED_SOCKET: &str = "net-trusted.sock";

pub struct UpOptions {
    pub config: Config,
    pub run_dir: PathBuf,
    /// Where relative wire paths point (another host's run directory, so
    /// that two service sets share a wire).
    pub wire_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The driver of `config.ports[i]`.
    Nicdrv(usize),
    Netsrv,
    Tlsd,
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

    // Written whatever became of stdout: the set keeps running when its
    // reader is gone (`capnet up | head -1`).
    use std::io::Write;
    let _ = write!(
        std::io::stdout(),
        "capnet up: {} port(s), {} bond(s), run directory {}\n\
         applications connect to {}\n  export CAPNET_SOCKET={}\n\
         TLS applications connect to {}\n",
        ctx.opts.config.ports.len(),
        ctx.opts.config.bonds.len(),
        ctx.opts.run_dir.display(),
        ctx.socket_path.display(),
        ctx.socket_path.display(),
        ctx.tls_socket_path.display()
    );
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
        let how = match p.hung.take() {
            Some(why) => why,
            None => describe_exit(status),
        };
        let quick = p.exited(how, Instant::now());
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
            // Without netsrv the data path restart brings it back.
            if !p.schedule(Instant::now(), netsrv_up) {
                tracing::error!(
                    "{} exited {} times within {} s of starting (last: {}); not restarting it; port {port} stays down",
                    p.name,
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            }
            set.nics.remove(&port);
        }
        Role::Tlsd => {
            let mut set = shared.borrow_mut();
            set.tlsd = None;
            let p = set.process(Role::Tlsd);
            if !p.schedule(Instant::now(), true) {
                tracing::error!(
                    "tlsd exited {} times within {} s of starting (last: {}); not restarting it; TLS stays down",
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            }
        }
        Role::Netsrv => {
            {
                let mut set = shared.borrow_mut();
                set.admin = None;
                set.attach = None;
                set.nics.clear();
            }
            stop_drivers(shared).await;
            let mut set = shared.borrow_mut();
            let p = set.netsrv();
            let wait = backoff(p.quick_exits);
            let failed = !p.schedule(Instant::now(), true);
            if failed {
                tracing::error!(
                    "netsrv exited {} times within {} s of starting (last: {}); not restarting it; the data path stays down",
                    p.quick_exits,
                    QUICK.as_secs(),
                    p.last_exit
                );
            } else {
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
                    p.start_failed(&e);
                    if !p.schedule(Instant::now(), true) {
                        tracing::error!("tlsd could not be started {} times (last: {e}); not restarting it; TLS stays down", p.quick_exits);
                    } else {
                        tracing::warn!("{e}");
                    }
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
            p.start_failed(&e);
            if !p.schedule(Instant::now(), true) {
                tracing::error!("nicdrv {name} could not be started {} times (last: {e}); not restarting it; port {name} stays down", p.quick_exits);
            } else {
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
            p.start_failed(&e);
            if !p.schedule(Instant::now(), true) {
                tracing::error!(
                    "the data path could not be started {} times (last: {e}); giving up",
                    p.quick_exits
                );
            } else {
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
