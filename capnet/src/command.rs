//! The command line, as a typed tree (clap): every command and subcommand
//! answers `--help`, a bad argument is named, and shells complete it
//! (`capnet completions bash|zsh|fish`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Start a capnet service set, look at it, change it.
#[derive(Debug, Parser)]
#[command(
    name = "capnet",
    version,
    after_help = "Environment: CAPNET_LOG (tracing filter, default info), CAPNET_BIN_DIR \
                  (where nicdrv, netsrv and tlsd are; default: beside capnet)."
)]
pub struct Cli {
    /// The set's run directory (default: `capnet run-dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// JSON instead of text (route, tls stat, offload list), as `ip -j`.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the service set and keep it running: crashed drivers, netsrv
    /// and tlsd are restarted.
    Up {
        /// The configuration (default: the embedded one, `capnet config`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where relative sim wires are (beneath DIR/wires/); another
        /// host's run directory joins its wire (default: the run directory).
        #[arg(long, value_name = "DIR")]
        wire_dir: Option<PathBuf>,
    },
    /// Processes (state, pid, restarts, last exit, confinement), ports,
    /// bonds, addresses, routes, sockets and counters.
    Status,
    /// Ports: every port, one port's driver and counters, or its carrier.
    Link {
        /// One port.
        port: Option<String>,
        /// Carrier from our side (sim: the wire; tap: TUNSETCARRIER).
        #[arg(requires = "port")]
        state: Option<UpDown>,
    },
    /// Bonds: list them, make one, change its mode or primary leg.
    Bond {
        #[command(subcommand)]
        action: Option<BondCommand>,
    },
    /// Routes: list, add or delete.
    Route {
        #[command(subcommand)]
        action: Option<RouteCommand>,
    },
    /// A sim wire's fault injection; values not given are 0, carrier up.
    #[command(visible_alias = "faults")]
    Wire {
        port: String,
        #[command(flatten)]
        faults: Faults,
        /// The wire's carrier.
        #[arg(long, value_name = "STATE", default_value = "up")]
        carrier: UpDown,
    },
    /// Carrier of a port from our side (as `capnet link PORT up|down`).
    #[command(hide = true)]
    Carrier { port: String, state: UpDown },
    /// tlsd: its counters.
    Tls {
        #[command(subcommand)]
        action: Option<TlsCommand>,
    },
    /// NIC offload contexts.
    Offload {
        #[command(subcommand)]
        action: Option<OffloadCommand>,
    },
    /// Stop the service set.
    Down,
    /// Two hosts on a sim wire move data, checked with sha256 (no root).
    Demo {
        /// Bytes each way.
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        /// Frames lost on each side, in percent.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Frames reordered on each side, in percent.
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        /// Where the two hosts' run directories go (default: a new one in
        /// the temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the embedded default configuration.
    Config,
    /// Print the default run directory.
    RunDir,
    /// Print a completion script for a shell.
    Completions { shell: clap_complete::Shell },
}

impl Command {
    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Status => "status",
            Command::Link { .. } => "link",
            Command::Bond { .. } => "bond",
            Command::Route { .. } => "route",
            Command::Wire { .. } => "wire",
            Command::Carrier { .. } => "carrier",
            Command::Tls { .. } => "tls",
            Command::Offload { .. } => "offload",
            Command::Down => "down",
            Command::Demo { .. } => "demo",
            Command::Config => "config",
            Command::RunDir => "run-dir",
            Command::Completions { .. } => "completions",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpDown {
    Up,
    Down,
}

impl UpDown {
    pub fn is_up(self) -> bool {
        self == UpDown::Up
    }
}

/// Fault injection on a sim wire, in percent.
#[derive(Debug, Args)]
pub struct Faults {
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub loss: f64,
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub reorder: f64,
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub duplicate: f64,
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub corrupt: f64,
}

#[derive(Debug, Subcommand)]
pub enum BondCommand {
    /// Every bond: mode, active leg, legs, failovers, announcements.
    Show,
    /// Make a bond of free ports (no addresses, in no bond).
    Add {
        name: String,
        /// active-backup or balance-xor.
        #[arg(long)]
        mode: String,
        /// Its legs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        legs: Vec<String>,
        /// The preferred leg (active-backup), or none.
        #[arg(long)]
        primary: Option<String>,
        /// An address of the bond (CIDR); repeatable.
        #[arg(long = "address", value_name = "CIDR")]
        addresses: Vec<String>,
    },
    /// Change a bond's mode (active-backup or balance-xor).
    Mode { name: String, mode: String },
    /// Set a bond's primary leg, or none.
    Primary { name: String, port: String },
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// The routes.
    Show,
    /// Add a route: `capnet route add TO via GATEWAY` (TO: default, or a CIDR).
    Add {
        to: String,
        #[arg(value_parser = ["via"], hide_possible_values = true)]
        via: String,
        gateway: String,
    },
    /// Delete a route: `capnet route del TO via GATEWAY`.
    #[command(visible_alias = "delete", alias = "remove")]
    Del {
        to: String,
        #[arg(value_parser = ["via"], hide_possible_values = true)]
        via: String,
        gateway: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// tlsd's counters (the meaning of Linux /proc/net/tls_stat, plus
    /// re-offloads, handshakes, alerts, records).
    Stat,
}

#[derive(Debug, Subcommand)]
pub enum OffloadCommand {
    /// Every NIC offload context: port, id, kind, state, flow, records,
    /// bytes, resyncs, auth failures, frames dropped.
    List,
}

/// Every command path (`["bond", "add"]`, ...), for tests and docs.
pub fn paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = vec![Vec::new()];
    walk(&<Cli as clap::CommandFactory>::command(), &[], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_answers_help() {
        for path in paths() {
            let mut argv = vec!["capnet".to_string()];
            argv.extend(path.iter().cloned());
            argv.push("--help".into());
            let e = Cli::try_parse_from(&argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{path:?}");
            assert_eq!(e.exit_code(), 0, "{path:?}");
        }
        assert!(paths().len() > 15, "{:?}", paths());
    }

    #[test]
    fn the_commands_people_and_tests_use_parse() {
        for argv in [
            "capnet up --config x.toml --run-dir r --wire-dir w",
            "capnet status --run-dir r",
            "capnet link",
            "capnet link p0",
            "capnet link p0 down --run-dir r",
            "capnet bond",
            "capnet bond add b0 --mode active-backup --legs p0,p1 --primary p0 --address 10.0.0.1/24",
            "capnet bond mode b0 balance-xor",
            "capnet bond primary b0 none",
            "capnet route",
            "capnet route add default via 10.0.0.254",
            "capnet route del 10.1.0.0/16 via 10.0.0.254",
            "capnet faults sim0 --loss 1 --reorder 0.5",
            "capnet wire sim0 --carrier down",
            "capnet tls stat",
            "capnet tls",
            "capnet offload list",
            "capnet down",
            "capnet demo --bytes 1024 --loss 2",
            "capnet config",
            "capnet run-dir",
            "capnet completions bash",
        ] {
            let argv: Vec<&str> = argv.split(' ').collect();
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{argv:?}: {e}");
            }
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = Cli::try_parse_from(["capnet", "link", "p0", "sideways"]).unwrap_err();
        assert!(e.to_string().contains("sideways"), "{e}");
        let e = Cli::try_parse_from(["capnet", "route", "add", "default", "by", "1.2.3.4"])
            .unwrap_err();
        assert!(e.to_string().contains("by"), "{e}");
        let e = Cli::try_parse_from(["capnet", "demo", "--loss", "lots"]).unwrap_err();
        assert!(e.to_string().contains("--loss"), "{e}");
    }
}
