//! A service set run as a child `capnet up` process: what `capnet demo` and
//! the integration tests use to make hosts.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::cli::ProcessInfo;

pub struct Host {
    child: Child,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// What the supervisor logged (stderr), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

/// The `capnet` binary: this one if we are it, else beside the running
/// executable (or `$CAPNET_BIN_DIR`).
pub fn capnet_binary() -> io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    if me.file_name().is_some_and(|n| n == "capnet") {
        return Ok(me);
    }
    if let Some(dir) = std::env::var_os("CAPNET_BIN_DIR") {
        return Ok(PathBuf::from(dir).join("capnet"));
    }
    // Test binaries live in target/<profile>/deps.
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    for d in [dir.clone(), dir.join("..")] {
        let p = d.join("capnet");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "capnet binary not found; build the workspace",
    ))
}

impl Host {
    /// Starts `capnet up` with `config` (TOML text) in `run_dir`; relative
    /// wire paths point into `wire_dir`. Returns once applications can
    /// connect.
    pub fn start(config: &str, run_dir: &Path, wire_dir: &Path) -> io::Result<Host> {
        Host::start_with(config, run_dir, wire_dir, None)
    }

    /// As [`Host::start`], with the service binaries (capnet, nicdrv,
    /// netsrv) taken from `bin_dir` (`CAPNET_BIN_DIR` of the set): a test
    /// can replace one of them while the set runs.
    pub fn start_with_bin_dir(
        config: &str,
        run_dir: &Path,
        wire_dir: &Path,
        bin_dir: &Path,
    ) -> io::Result<Host> {
        Host::start_with(config, run_dir, wire_dir, Some(bin_dir))
    }

    fn start_with(
        config: &str,
        run_dir: &Path,
        wire_dir: &Path,
        bin_dir: Option<&Path>,
    ) -> io::Result<Host> {
        crate::supervisor::prepare_run_dir(run_dir)?;
        let config_path = run_dir.join("capnet.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = match bin_dir {
            Some(dir) => {
                let mut cmd = Command::new(dir.join("capnet"));
                cmd.env("CAPNET_BIN_DIR", dir);
                cmd
            }
            None => Command::new(capnet_binary()?),
        };
        let mut child = cmd
            .arg("up")
            .arg("--config")
            .arg(&config_path)
            .arg("--run-dir")
            .arg(run_dir)
            .arg("--wire-dir")
            .arg(wire_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Quiet unless asked: the caller prints what matters.
            .env(
                "CAPNET_LOG",
                std::env::var("CAPNET_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("applications connect to") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        // Passed on to our stderr, and kept for `Host::log`.
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut host = Host {
            child,
            run_dir: run_dir.to_path_buf(),
            socket: run_dir.join("capnet.sock"),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => Ok(host),
            Err(_) => {
                host.kill_set();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("capnet up in {} did not become ready", run_dir.display()),
                ))
            }
        }
    }

    pub fn net(&self) -> io::Result<libclient::Net> {
        libclient::Net::connect(&self.socket)
    }

    /// A connection to this host's tlsd.
    pub fn tls(&self) -> io::Result<libclient::Tls> {
        libclient::Tls::connect(self.run_dir.join("tls.sock"))
    }

    /// Runs a CLI command against this host (`capnet ARGS --run-dir DIR`).
    pub fn cli(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(capnet_binary()?)
            .args(args)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .output()
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the supervisor logged so far (at CAPNET_LOG's level, `warn` by
    /// default), one line per entry.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Every service process ("nicdrv sim0", ..., "netsrv").
    pub fn processes(&self) -> io::Result<Vec<ProcessInfo>> {
        crate::cli::processes(&self.run_dir).map_err(io::Error::other)
    }

    /// One service process by name ("nicdrv sim0", "netsrv").
    pub fn process(&self, name: &str) -> Option<ProcessInfo> {
        self.processes().ok()?.into_iter().find(|p| p.name == name)
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) to a running service process;
    /// returns its pid.
    pub fn kill(&self, name: &str, signal: i32) -> io::Result<u32> {
        let p = self.process(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no process {name:?}"))
        })?;
        if p.pid == 0 {
            return Err(io::Error::other(format!(
                "{name} is not running ({})",
                p.state
            )));
        }
        // SAFETY: kill(2) has no memory preconditions; the pid is a child of
        // our own supervisor.
        if unsafe { libc::kill(p.pid as libc::pid_t, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(p.pid)
    }

    /// Waits until `pred` holds for the process `name`; returns its last view.
    pub fn wait_process(
        &self,
        name: &str,
        pred: impl Fn(&ProcessInfo) -> bool,
        timeout: Duration,
    ) -> io::Result<ProcessInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.process(name);
            if let Some(p) = &p {
                if pred(p) {
                    return Ok(p.clone());
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name} not as expected within {timeout:?}; last seen: {p:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the set (SIGTERM) and waits for it.
    pub fn stop(mut self) -> io::Result<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..250 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_set();
        self.child.wait()
    }

    fn kill_set(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.terminate();
        }
    }
}
