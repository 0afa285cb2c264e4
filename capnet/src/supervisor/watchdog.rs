//! A service that stops answering is killed, so that the restart policy
//! brings it back: a live process with a dead loop (a blocked write, a
//! swallowed panic, a stop signal) serves nobody while `capnet status`
//! would call it running.
//!
//! The supervisor pings netsrv (`NetAdmin.status`), every driver
//! (`Nic.info`) and tlsd (`Tls.stat` on its supervisor channel) every
//! quarter of the deadline. One that does not answer
//! within the deadline is sent SIGKILL; its exit is then handled like any
//! crash, and `capnet status` says why it died.

use super::{Role, Shared, State};
use std::time::Duration;

/// Pings forever; `deadline` is how long a service may take to answer.
pub(super) async fn run(shared: Shared, deadline: Duration) {
    let period = (deadline / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let probes = probes(&shared);
        let answers = probes.into_iter().map(|(index, pid, ping)| async move {
            let answered = tokio::time::timeout(deadline, ping).await;
            (index, pid, answered.is_ok())
        });
        for (index, pid, answered) in futures::future::join_all(answers).await {
            if !answered {
                kill_hung(&shared, index, pid, deadline);
            }
        }
    }
}

type Ping = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// One ping per running service that the supervisor can call: (index in
/// the process table, pid, the call). An error answer (a broken
/// connection) counts as an answer: an exit is the reaper's business.
fn probes(shared: &Shared) -> Vec<(usize, u32, Ping)> {
    let set = shared.borrow();
    let mut out: Vec<(usize, u32, Ping)> = Vec::new();
    for (i, p) in set.procs.iter().enumerate() {
        if p.state != State::Running || p.child.is_none() {
            continue;
        }
        let ping: Option<Ping> = match p.role {
            Role::Netsrv => set.admin.as_ref().map(|admin| {
                let call = admin.status_request().send().promise;
                Box::pin(async move {
                    let _ = call.await;
                }) as Ping
            }),
            Role::Nicdrv(_) => {
                let port = p.name.strip_prefix("nicdrv ").unwrap_or(&p.name);
                set.nics.get(port).map(|nic| {
                    let call = nic.info_request().send().promise;
                    Box::pin(async move {
                        let _ = call.await;
                    }) as Ping
                })
            }
            Role::Tlsd => set.tlsd.as_ref().map(|tlsd| {
                let call = tlsd.stat_request().send().promise;
                Box::pin(async move {
                    let _ = call.await;
                }) as Ping
            }),
        };
        if let Some(ping) = ping {
            out.push((i, p.pid(), ping));
        }
    }
    out
}

fn kill_hung(shared: &Shared, index: usize, pid: u32, deadline: Duration) {
    let mut set = shared.borrow_mut();
    let p = &mut set.procs[index];
    // Only the instance that was pinged: it may have been restarted since.
    if p.pid() != pid || p.state != State::Running {
        return;
    }
    let why = format!(
        "killed by the watchdog: no answer within {} ms",
        deadline.as_millis()
    );
    tracing::error!(process = %p.name, pid, "{why}; restarting it");
    p.hung = Some(why);
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}
