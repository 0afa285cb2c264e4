//! capnet: start a service set, look at it, change it.

use capnet::cli::args::{self, BondCommand, Cli, Command, OffloadCommand, RouteCommand};
use capnet::cli::args::{TlsCommand, UpDown};
use capnet::{cli, config, demo, supervisor};
use clap::FromArgMatches;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

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
        // No escape codes in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Help, version and usage errors print and exit here (2 for errors).
    let matches = args::command().get_matches();
    let name = matches.subcommand_name().unwrap_or_default().to_string();
    let cli = Cli::from_arg_matches(&matches)
        .and_then(|cli| cli.check().map(|()| cli))
        .unwrap_or_else(|e| e.exit());
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("capnet {name}: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a command's output; a reader that went away (`capnet status |
/// head -1`) ends the command quietly.
fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("standard output: {e}")),
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Up(up) => {
            let config = match &up.config {
                Some(path) => config::Config::load(path)?,
                None => config::Config::parse(config::DEFAULT)?,
            };
            let run_dir = up.run_dir.path();
            let wire_dir = up.wire_dir.unwrap_or_else(|| run_dir.clone());
            supervisor::up(supervisor::UpOptions {
                config,
                run_dir,
                wire_dir,
            })
        }
        Command::Status(l) => emit(&cli::status(&l.run_dir.path(), l.json.json)?),
        Command::Link(l) => {
            let dir = l.run_dir.path();
            match (l.port, l.carrier) {
                (None, _) => emit(&cli::links(&dir, l.json.json)?),
                (Some(port), None) => emit(&cli::link_detail(&dir, &port, l.json.json)?),
                (Some(port), Some(c)) => cli::set_carrier(&dir, &port, c == UpDown::Up),
            }
        }
        Command::Carrier(c) => {
            cli::set_carrier(&c.run_dir.path(), &c.port, c.carrier == UpDown::Up)
        }
        Command::Bond(b) => {
            let dir = b.run_dir.path();
            match b.command {
                None => emit(&cli::bonds(&dir, b.json.json)?),
                Some(BondCommand::Show(j)) => emit(&cli::bonds(&dir, j.json)?),
                Some(BondCommand::Add(a)) => cli::bond_add(
                    &dir,
                    cli::BondArgs {
                        name: a.name,
                        mode: a.mode,
                        legs: a.legs,
                        primary: a.primary.filter(|p| p != "none"),
                        addresses: a.address,
                    },
                ),
                Some(BondCommand::Mode { name, mode }) => cli::bond_mode(&dir, &name, mode),
                Some(BondCommand::Primary { name, primary }) => {
                    cli::bond_primary(&dir, &name, Some(primary.as_str()).filter(|p| *p != "none"))
                }
            }
        }
        Command::Route(r) => {
            let dir = r.run_dir.path();
            match r.command {
                None => emit(&cli::routes(&dir, r.json.json)?),
                Some(RouteCommand::Show(j)) => emit(&cli::routes(&dir, j.json)?),
                Some(RouteCommand::Add(c)) => {
                    cli::route_change(&dir, true, &c.to, &c.gateway.to_string())
                }
                Some(RouteCommand::Del(c)) => {
                    cli::route_change(&dir, false, &c.to, &c.gateway.to_string())
                }
            }
        }
        Command::Wire(w) => cli::set_faults(
            &w.run_dir.path(),
            &w.port,
            cli::FaultArgs {
                loss: w.faults.loss,
                reorder: w.faults.reorder,
                duplicate: w.faults.duplicate,
                corrupt: w.faults.corrupt,
                carrier_up: w.carrier == UpDown::Up,
            },
        ),
        Command::Tls(t) => {
            let json = match t.command {
                None => t.json.json,
                Some(TlsCommand::Stat(j)) => j.json,
            };
            emit(&cli::tls_stat(&t.run_dir.path(), json)?)
        }
        Command::Offload(o) => {
            let json = match o.command {
                None => o.json.json,
                Some(OffloadCommand::List(j)) => j.json,
            };
            emit(&cli::offload_list(&o.run_dir.path(), json)?)
        }
        Command::Down(d) => cli::down(&d.path()),
        Command::Demo(d) => demo::run(demo::DemoOptions {
            bytes: d.bytes,
            loss: d.loss,
            reorder: d.reorder,
            dir: d.dir,
        }),
        Command::Config => emit(config::DEFAULT),
        Command::RunDir => emit(&format!("{}\n", libclient::default_run_dir().display())),
        Command::Help { command } => emit(&args::help_of(&command)?),
        Command::Completions { shell } => {
            // Into memory first: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut args::command(), "capnet", &mut script);
            emit(&String::from_utf8_lossy(&script))
        }
    }
}
