//! Driving a real nicdrv: a `--backend sim` process on a wire, and a capnp
//! connection to its `--listen` socket.

use capnet_ring::CONNECT_RPC;
use capnet_schema::nic_capnp::nic;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nicdrv-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A nicdrv child; SIGTERM and wait on drop.
pub struct Proc {
    pub child: Child,
    pub listen: PathBuf,
}

impl Proc {
    pub fn spawn(dir: &Path, name: &str, wire: &Path, extra: &[&str]) -> Proc {
        let listen = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&listen);
        let child = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
            .args(["--name", name, "--backend", "sim", "--wire"])
            .arg(wire)
            .arg("--listen")
            .arg(&listen)
            .args(extra)
            .env(
                "CAPNET_LOG",
                std::env::var("CAPNET_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nicdrv");
        let deadline = Instant::now() + WAIT;
        while !listen.exists() {
            assert!(Instant::now() < deadline, "{name} did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Proc { child, listen }
    }

    pub fn sigterm(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "nicdrv did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Proc {
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            let _ = self.terminate();
        }
    }
}

/// A capnp connection to a driver's `--listen` socket (nicdrv's socket
/// file appears only once it listens), run as a task on the current
/// `LocalSet`; aborting the task disconnects.
pub fn connect_nic(listen: &Path) -> (nic::Client, tokio::task::JoinHandle<()>) {
    let mut s = UnixStream::connect(listen).unwrap();
    s.write_all(&[CONNECT_RPC]).unwrap();
    nic_over(s)
}

/// The driver's `Nic` over a stream that carries capnp from here on.
pub fn nic_over(s: UnixStream) -> (nic::Client, tokio::task::JoinHandle<()>) {
    s.set_nonblocking(true).unwrap();
    let (r, w) = tokio::net::UnixStream::from_std(s).unwrap().into_split();
    let net = twoparty::VatNetwork::new(
        r.compat(),
        w.compat_write(),
        Side::Client,
        Default::default(),
    );
    let mut sys = RpcSystem::new(Box::new(net), None);
    let nic: nic::Client = sys.bootstrap(Side::Server);
    let task = tokio::task::spawn_local(async move {
        let _ = sys.await;
    });
    (nic, task)
}
