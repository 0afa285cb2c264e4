//! capnet: start a service set, look at it, change it.

use capnet::{cli, config, demo, supervisor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  capnet up [--config FILE] [--run-dir DIR] [--wire-dir DIR]
        start the service set (embedded sim default without --config) and keep
        it running: crashed drivers and netsrv are restarted
  capnet status        processes (state, pid, restarts, last exit), ports, bonds,
                       addresses, routes, sockets, counters
  capnet link          every port: state (up, down, detached, restarting, failed),
                       interface, driver epoch, restarts, counters
  capnet link PORT     the port's driver: link, MAC, MTU, all its counters
  capnet link PORT up|down
        carrier from our side (sim: the wire; tap: TUNSETCARRIER)
  capnet bond [show]   every bond: mode, active leg, legs, failovers, announcements
  capnet bond add NAME --mode active-backup|balance-xor --legs PORT,PORT[,...]
                  [--primary PORT] [--address CIDR]...
        make a bond of free ports (ports with no addresses and in no bond)
  capnet bond mode NAME active-backup|balance-xor
  capnet bond primary NAME PORT|none
  capnet route         the routes
  capnet route add TO via GATEWAY      TO: default or a CIDR
  capnet route del TO via GATEWAY
  capnet wire PORT [--loss PCT] [--reorder PCT] [--duplicate PCT] [--corrupt PCT]
                   [--carrier up|down]
        a sim wire's fault injection (values not given are 0, carrier up);
        `capnet faults` is the same command
  capnet tls stat      tlsd's counters (the meaning of Linux /proc/net/tls_stat,
                       plus re-offloads, handshakes, alerts, records)
  capnet offload list  every NIC offload context: port, id, kind, state, flow,
                       records, bytes, resyncs, auth failures, frames dropped
  capnet down          stop the service set
  capnet demo [--bytes N] [--loss PCT] [--reorder PCT] [--dir DIR]
        two hosts on a sim wire move data
  capnet config        print the embedded default configuration
  capnet run-dir       print the default run directory
every command but up, demo, config and run-dir takes [--run-dir DIR]
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

    fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(v) = self.take(name) {
            out.push(v);
        }
        out
    }

    fn positional(&self, i: usize, what: &str) -> Result<String, String> {
        self.positional
            .get(i)
            .cloned()
            .ok_or_else(|| format!("usage: {what} is missing (see capnet --help)"))
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

fn up_down(v: Option<&String>) -> Result<bool, String> {
    match v.map(String::as_str) {
        Some("up") => Ok(true),
        Some("down") => Ok(false),
        _ => Err("usage: link PORT up|down".into()),
    }
}

fn main() -> ExitCode {
    // A panic anywhere, a data plane's included, ends the process (the
    // supervisor restarts it) instead of leaving it alive with a dead task.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |p| {
        report(p);
        std::process::abort();
    }));
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
        "wire" | "faults" => {
            let dir = run_dir(&mut f);
            let port = f.positional(0, "PORT")?;
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
            let port = f.positional(0, "PORT")?;
            let up = up_down(f.positional.get(1))?;
            f.finish(2)?;
            cli::set_carrier(&dir, &port, up)
        }
        "link" => {
            let dir = run_dir(&mut f);
            if f.positional.is_empty() {
                f.finish(0)?;
                print!("{}", cli::links(&dir)?);
                return Ok(());
            }
            let port = f.positional(0, "PORT")?;
            if f.positional.len() == 1 {
                f.finish(1)?;
                print!("{}", cli::link_detail(&dir, &port)?);
                return Ok(());
            }
            let up = up_down(f.positional.get(1))?;
            f.finish(2)?;
            cli::set_carrier(&dir, &port, up)
        }
        "bond" => {
            let dir = run_dir(&mut f);
            match f.positional.first().map(String::as_str) {
                None | Some("show") => {
                    f.finish(1)?;
                    print!("{}", cli::bonds(&dir)?);
                    Ok(())
                }
                Some("add") => {
                    let name = f.positional(1, "the bond's NAME")?;
                    let mode = f
                        .take("mode")
                        .ok_or("usage: bond add NAME --mode active-backup|balance-xor --legs A,B")?
                        .parse()?;
                    let legs = f
                        .take("legs")
                        .ok_or("usage: bond add NAME --mode MODE --legs A,B: --legs is missing")?
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .collect();
                    let args = cli::BondArgs {
                        name,
                        mode,
                        legs,
                        primary: f.take("primary").filter(|p| p != "none"),
                        addresses: f.take_all("address"),
                    };
                    f.finish(2)?;
                    cli::bond_add(&dir, args)
                }
                Some("mode") => {
                    let name = f.positional(1, "the bond's NAME")?;
                    let mode = f.positional(2, "MODE")?.parse()?;
                    f.finish(3)?;
                    cli::bond_mode(&dir, &name, mode)
                }
                Some("primary") => {
                    let name = f.positional(1, "the bond's NAME")?;
                    let primary = f.positional(2, "PORT or none")?;
                    f.finish(3)?;
                    cli::bond_primary(&dir, &name, Some(primary.as_str()).filter(|p| *p != "none"))
                }
                Some(other) => Err(format!(
                    "usage: bond {other:?}: use show, add, mode or primary"
                )),
            }
        }
        "route" => {
            let dir = run_dir(&mut f);
            match f.positional.first().map(String::as_str) {
                None | Some("show") => {
                    f.finish(1)?;
                    print!("{}", cli::routes(&dir)?);
                    Ok(())
                }
                Some(verb @ ("add" | "del" | "delete" | "remove")) => {
                    let add = verb == "add";
                    let to = f.positional(1, "TO")?;
                    if f.positional.get(2).map(String::as_str) != Some("via") {
                        return Err(format!("usage: route {verb} TO via GATEWAY"));
                    }
                    let via = f.positional(3, "GATEWAY")?;
                    f.finish(4)?;
                    cli::route_change(&dir, add, &to, &via)
                }
                Some(other) => Err(format!("usage: route {other:?}: use show, add or del")),
            }
        }
        "tls" => {
            let dir = run_dir(&mut f);
            match f.positional.first().map(String::as_str) {
                None | Some("stat") => {
                    f.finish(1)?;
                    print!("{}", cli::tls_stat(&dir)?);
                    Ok(())
                }
                Some(other) => Err(format!("usage: tls {other:?}: use stat")),
            }
        }
        "offload" => {
            let dir = run_dir(&mut f);
            match f.positional.first().map(String::as_str) {
                None | Some("list") => {
                    f.finish(1)?;
                    print!("{}", cli::offload_list(&dir)?);
                    Ok(())
                }
                Some(other) => Err(format!("usage: offload {other:?}: use list")),
            }
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
