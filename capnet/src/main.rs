//! capnet: start a service set, look at it, change it.

use capnet::{cli, config, demo, supervisor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  capnet up [--config FILE] [--run-dir DIR] [--wire-dir DIR]
                                   start the service set (embedded sim default without --config)
  capnet status [--run-dir DIR]    processes, ports, counters, addresses, routes, sockets
  capnet faults PORT [--loss PCT] [--reorder PCT] [--duplicate PCT] [--corrupt PCT] [--carrier up|down]
                [--run-dir DIR]    set a sim wire's fault injection
  capnet carrier PORT up|down [--run-dir DIR]
  capnet down [--run-dir DIR]      stop the service set
  capnet demo [--bytes N] [--loss PCT] [--reorder PCT] [--dir DIR]
                                   two hosts on a sim wire move data
  capnet config                    print the embedded default configuration
  capnet run-dir                   print the default run directory
environment: CAPNET_LOG (tracing filter, default info), CAPNET_BIN_DIR";

struct Flags {
    positional: Vec<String>,
    named: Vec<(String, String)>,
}

fn parse_flags(args: impl Iterator<Item = String>) -> Result<Flags, String> {
    let mut f = Flags {
        positional: Vec::new(),
        named: Vec::new(),
    };
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            f.named.push((name.to_string(), v));
        } else {
            f.positional.push(a);
        }
    }
    Ok(f)
}

impl Flags {
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.named.iter().position(|(n, _)| n == name)?;
        Some(self.named.remove(i).1)
    }

    fn percent(&mut self, name: &str) -> Result<f64, String> {
        match self.take(name) {
            None => Ok(0.0),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
        }
    }

    fn finish(self, positional: usize) -> Result<(), String> {
        if let Some((n, _)) = self.named.first() {
            return Err(format!("unknown option --{n}"));
        }
        if self.positional.len() > positional {
            return Err(format!(
                "unexpected argument {:?}",
                self.positional[positional]
            ));
        }
        Ok(())
    }
}

fn run_dir(f: &mut Flags) -> PathBuf {
    f.take("run-dir")
        .map(PathBuf::from)
        .unwrap_or_else(libclient::default_run_dir)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = parse_flags(args).and_then(|f| dispatch(&cmd, f));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("capnet {cmd}: {msg}");
            ExitCode::from(if msg.starts_with("usage") { 2 } else { 1 })
        }
    }
}

fn dispatch(cmd: &str, mut f: Flags) -> Result<(), String> {
    match cmd {
        "up" => {
            let config = match f.take("config") {
                Some(path) => config::Config::load(&PathBuf::from(path))?,
                None => config::Config::parse(config::DEFAULT)?,
            };
            let run_dir = run_dir(&mut f);
            let wire_dir = f
                .take("wire-dir")
                .map(PathBuf::from)
                .unwrap_or_else(|| run_dir.clone());
            f.finish(0)?;
            supervisor::up(supervisor::UpOptions {
                config,
                run_dir,
                wire_dir,
            })
        }
        "status" => {
            let dir = run_dir(&mut f);
            f.finish(0)?;
            print!("{}", cli::status(&dir)?);
            Ok(())
        }
        "faults" => {
            let dir = run_dir(&mut f);
            let port = f.positional.first().cloned().ok_or("which port?")?;
            let args = cli::FaultArgs {
                loss: f.percent("loss")?,
                reorder: f.percent("reorder")?,
                duplicate: f.percent("duplicate")?,
                corrupt: f.percent("corrupt")?,
                carrier_up: match f.take("carrier").as_deref() {
                    None | Some("up") => true,
                    Some("down") => false,
                    Some(other) => return Err(format!("--carrier {other:?}: up or down")),
                },
            };
            f.finish(1)?;
            cli::set_faults(&dir, &port, args)
        }
        "carrier" => {
            let dir = run_dir(&mut f);
            let port = f.positional.first().cloned().ok_or("which port?")?;
            let up = match f.positional.get(1).map(String::as_str) {
                Some("up") => true,
                Some("down") => false,
                _ => return Err("carrier PORT up|down".into()),
            };
            f.finish(2)?;
            cli::set_carrier(&dir, &port, up)
        }
        "down" => {
            let dir = run_dir(&mut f);
            f.finish(0)?;
            cli::down(&dir)
        }
        "demo" => {
            let bytes = match f.take("bytes") {
                Some(v) => v.parse().map_err(|e| format!("--bytes {v:?}: {e}"))?,
                None => 16 << 20,
            };
            let opts = demo::DemoOptions {
                bytes,
                loss: f.percent("loss")?,
                reorder: f.percent("reorder")?,
                dir: f.take("dir").map(PathBuf::from),
            };
            f.finish(0)?;
            demo::run(opts)
        }
        "config" => {
            f.finish(0)?;
            print!("{}", config::DEFAULT);
            Ok(())
        }
        "run-dir" => {
            f.finish(0)?;
            println!("{}", libclient::default_run_dir().display());
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("usage: unknown command {other:?}\n{USAGE}")),
    }
}
