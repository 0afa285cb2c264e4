//! capnet: start a service set, look at it, change it. The command tree is
//! `capnet::command`; this file parses and dispatches.

use capnet::command::{BondCommand, Cli, Command, OffloadCommand, RouteCommand, TlsCommand};
use capnet::{cli, config, demo, supervisor};
use clap::{CommandFactory, Parser};
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
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout, which may be a closed pipe
            // (`capnet --help | head -1`): nothing more to say then.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let name = cli.command.name();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("capnet {name}: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a reader that went away (a closed pipe) is not
/// an error.
fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// `--json`: the listings scripts read, as JSON.
fn json(command: &Command, dir: &std::path::Path) -> Result<serde_json::Value, String> {
    match command {
        Command::Route {
            action: None | Some(RouteCommand::Show),
        } => cli::routes_json(dir),
        Command::Tls {
            action: None | Some(TlsCommand::Stat),
        } => cli::tls_stat_json(dir),
        Command::Offload {
            action: None | Some(OffloadCommand::List),
        } => serde_json::to_value(cli::offload_rows(dir)?).map_err(|e| e.to_string()),
        other => Err(format!(
            "--json is not available for `capnet {}` (yet: route, tls stat and offload list have it)",
            other.name()
        )),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let run_dir = cli
        .run_dir
        .clone()
        .unwrap_or_else(libclient::default_run_dir);
    let dir = run_dir.as_path();
    if cli.json {
        return emit(&format!("{}\n", json(&cli.command, dir)?));
    }
    match cli.command {
        Command::Up { config, wire_dir } => {
            let config = match config {
                Some(path) => config::Config::load(&path)?,
                None => config::Config::parse(config::DEFAULT)?,
            };
            let wire_dir = wire_dir.unwrap_or_else(|| run_dir.clone());
            supervisor::up(supervisor::UpOptions {
                config,
                run_dir,
                wire_dir,
            })
        }
        Command::Status => emit(&cli::status(dir)?),
        Command::Wire {
            port,
            faults,
            carrier,
        } => cli::set_faults(
            dir,
            &port,
            cli::FaultArgs {
                loss: faults.loss,
                reorder: faults.reorder,
                duplicate: faults.duplicate,
                corrupt: faults.corrupt,
                carrier_up: carrier.is_up(),
            },
        ),
        Command::Carrier { port, state } => cli::set_carrier(dir, &port, state.is_up()),
        Command::Link { port: None, .. } => emit(&cli::links(dir)?),
        Command::Link {
            port: Some(port),
            state: None,
        } => emit(&cli::link_detail(dir, &port)?),
        Command::Link {
            port: Some(port),
            state: Some(state),
        } => cli::set_carrier(dir, &port, state.is_up()),
        Command::Bond { action } => match action.unwrap_or(BondCommand::Show) {
            BondCommand::Show => emit(&cli::bonds(dir)?),
            BondCommand::Add {
                name,
                mode,
                legs,
                primary,
                addresses,
            } => cli::bond_add(
                dir,
                cli::BondArgs {
                    name,
                    mode: mode.parse()?,
                    legs: legs.iter().map(|l| l.trim().to_string()).collect(),
                    primary: primary.filter(|p| p != "none"),
                    addresses,
                },
            ),
            BondCommand::Mode { name, mode } => cli::bond_mode(dir, &name, mode.parse()?),
            BondCommand::Primary { name, port } => {
                cli::bond_primary(dir, &name, Some(port.as_str()).filter(|p| *p != "none"))
            }
        },
        Command::Route { action } => match action.unwrap_or(RouteCommand::Show) {
            RouteCommand::Show => emit(&cli::routes(dir)?),
            RouteCommand::Add { to, gateway, .. } => cli::route_change(dir, true, &to, &gateway),
            RouteCommand::Del { to, gateway, .. } => cli::route_change(dir, false, &to, &gateway),
        },
        Command::Tls { action } => match action.unwrap_or(TlsCommand::Stat) {
            TlsCommand::Stat => emit(&cli::tls_stat(dir)?),
        },
        Command::Offload { action } => match action.unwrap_or(OffloadCommand::List) {
            OffloadCommand::List => emit(&cli::offload_list(dir)?),
        },
        Command::Down => cli::down(dir),
        Command::Demo {
            bytes,
            loss,
            reorder,
            dir,
        } => demo::run(demo::DemoOptions {
            bytes,
            loss,
            reorder,
            dir,
        }),
        Command::Config => emit(config::DEFAULT),
        Command::RunDir => emit(&format!("{}\n", libclient::default_run_dir().display())),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "capnet", &mut script);
            emit(&String::from_utf8_lossy(&script))
        }
    }
}
