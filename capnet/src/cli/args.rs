//! The `capnet` command tree: every command, what it takes, and its help.
//! Values are checked here, so that a bad one is reported with the
//! argument it was given for, before anything is asked of the set.

use crate::config::{self, BondMode};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "capnet",
    version,
    about = "Start a capnet service set, look at it, change it",
    arg_required_else_help = true,
    // Our own `help` (below) answers `capnet help --help` too.
    disable_help_subcommand = true,
    after_help = "Environment: CAPNET_LOG (tracing filter, default info), CAPNET_BIN_DIR (where \
                  the service binaries are, default beside capnet).\n\
                  `capnet help COMMAND` or `capnet COMMAND --help` tells more of each command."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the service set and keep it running
    ///
    /// Starts a driver (nicdrv) per port, netsrv and tlsd, and restarts the
    /// ones that crash. The configuration is checked whole before anything
    /// starts.
    Up(Up),
    /// Processes, ports, bonds, addresses, routes, sockets, counters
    ///
    /// Processes with their state, pid, restarts, last exit and confinement;
    /// then what netsrv reports: ports, bonds, addresses, routes, sockets and
    /// its counters.
    Status(Listing),
    /// Ports: list them, show one, set its carrier
    ///
    /// Without PORT: every port's state (up, down, detached, restarting,
    /// failed), interface, driver epoch, restarts and counters. With PORT: the
    /// port's driver (link, MAC, MTU, all its counters). With PORT up|down:
    /// carrier from our side.
    Link(Link),
    /// Bonds: list them, make one, change its mode or primary
    Bond(Bond),
    /// Routes: list them, add or delete one
    Route(Route),
    /// Set a sim wire's fault injection
    ///
    /// Values not given are 0 and the carrier is up: each call sets all of
    /// them.
    #[command(visible_alias = "faults")]
    Wire(Wire),
    /// Set a port's carrier (the same as `capnet link PORT up|down`)
    #[command(hide = true)]
    Carrier(Carrier),
    /// tlsd's counters
    ///
    /// The counters of Linux /proc/net/tls_stat, plus re-offloads,
    /// handshakes, alerts and records.
    Tls(Tls),
    /// NIC offload contexts
    ///
    /// Every context of every running driver: port, id, kind, state, flow,
    /// records, bytes, resyncs, auth failures, frames dropped.
    Offload(Offload),
    /// Stop the service set
    Down(RunDirArg),
    /// Two hosts on a sim wire move data
    ///
    /// Needs no root and no configuration.
    Demo(Demo),
    /// Print the embedded default configuration
    Config,
    /// Print the default run directory
    RunDir,
    /// Print the help of a command, e.g. `capnet help bond add`
    Help {
        /// The command and its subcommands
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print a shell completion script
    ///
    /// For example `capnet completions bash > /etc/bash_completion.d/capnet`,
    /// or `source <(capnet completions bash)`.
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The run directory of the set a command talks to.
#[derive(Clone, Debug, Default, Args)]
pub struct RunDirArg {
    /// The set's run directory [default: `capnet run-dir`]
    #[arg(long, value_name = "DIR", global = true)]
    pub run_dir: Option<PathBuf>,
}

impl RunDirArg {
    pub fn path(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(libclient::default_run_dir)
    }
}

/// `--json` of a listing.
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct JsonArg {
    /// Print JSON (one document) instead of the table, as `ip -j` does
    #[arg(long, short = 'j')]
    pub json: bool,
}

/// A command that only lists.
#[derive(Debug, Args)]
pub struct Listing {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct Up {
    /// The configuration (TOML) [default: the embedded one, see `capnet config`]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Where relative sim wire paths point [default: the run directory]
    #[arg(long, value_name = "DIR")]
    pub wire_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpDown {
    Up,
    Down,
}

#[derive(Debug, Args)]
pub struct Link {
    /// One port: its driver's view
    pub port: Option<String>,
    /// Carrier from our side (sim: the wire; tap: TUNSETCARRIER)
    #[arg(value_enum, requires = "port", conflicts_with = "json")]
    pub carrier: Option<UpDown>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct Carrier {
    /// The port
    pub port: String,
    /// Carrier from our side
    #[arg(value_enum)]
    pub carrier: UpDown,
    #[command(flatten)]
    pub run_dir: RunDirArg,
}

#[derive(Debug, Args)]
pub struct Bond {
    #[command(subcommand)]
    pub command: Option<BondCommand>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum BondCommand {
    /// Every bond: mode, active leg, legs, failovers, announcements (the default)
    Show(JsonArg),
    /// Make a bond of free ports (ports with no addresses and in no bond)
    Add(BondAdd),
    /// Change a bond's mode
    Mode {
        /// The bond
        name: String,
        /// One leg carries traffic (active-backup) or flows spread over all (balance-xor)
        #[arg(value_name = "active-backup|balance-xor")]
        mode: BondMode,
    },
    /// Change an active-backup bond's preferred leg
    Primary {
        /// The bond
        name: String,
        /// One of its legs, or `none`
        #[arg(value_name = "PORT|none")]
        primary: String,
    },
}

#[derive(Debug, Args)]
pub struct BondAdd {
    /// The bond's name (letters, digits, - and _)
    pub name: String,
    /// One leg carries traffic (active-backup) or flows spread over all (balance-xor)
    #[arg(long, value_name = "active-backup|balance-xor")]
    pub mode: BondMode,
    /// Its ports, comma-separated
    #[arg(long, value_name = "PORT,PORT", value_delimiter = ',', required = true, value_parser = port_name)]
    pub legs: Vec<String>,
    /// active-backup: the preferred leg (`none`: no preference)
    #[arg(long, value_name = "PORT")]
    pub primary: Option<String>,
    /// An address of the bond; repeatable
    #[arg(long, value_name = "CIDR", value_parser = cidr)]
    pub address: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Route {
    #[command(subcommand)]
    pub command: Option<RouteCommand>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// The routes (the default)
    Show(JsonArg),
    /// Add a route
    #[command(override_usage = "capnet route add <TO> via <GATEWAY>")]
    Add(RouteChange),
    /// Delete a route
    #[command(
        aliases = ["delete", "remove"],
        override_usage = "capnet route del <TO> via <GATEWAY>"
    )]
    Del(RouteChange),
}

#[derive(Debug, Args)]
pub struct RouteChange {
    /// `default`, `default6` or a CIDR
    #[arg(value_parser = route_to)]
    pub to: String,
    /// The word `via`
    #[arg(value_name = "via", value_parser = ["via"], hide_possible_values = true)]
    pub via: String,
    /// The next hop, on the subnet of one of the interfaces
    pub gateway: IpAddr,
}

#[derive(Debug, Args)]
pub struct Wire {
    /// A sim port
    pub port: String,
    #[command(flatten)]
    pub faults: Faults,
    /// Carrier from our side, as `capnet link PORT up|down` sets it
    #[arg(long, value_enum, value_name = "up|down", default_value = "up")]
    pub carrier: UpDown,
    #[command(flatten)]
    pub run_dir: RunDirArg,
}

/// Fault injection in percent, on the frames this port transmits.
#[derive(Clone, Copy, Debug, Args)]
pub struct Faults {
    /// Frames lost, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub loss: f64,
    /// Frames held back behind the next, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub reorder: f64,
    /// Frames sent twice, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub duplicate: f64,
    /// Frames with a flipped bit, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub corrupt: f64,
}

#[derive(Debug, Args)]
pub struct Tls {
    #[command(subcommand)]
    pub command: Option<TlsCommand>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// tlsd's counters (the default)
    Stat(JsonArg),
}

#[derive(Debug, Args)]
pub struct Offload {
    #[command(subcommand)]
    pub command: Option<OffloadCommand>,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Subcommand)]
pub enum OffloadCommand {
    /// Every offload context of every running driver (the default)
    List(JsonArg),
}

#[derive(Debug, Args)]
pub struct Demo {
    /// Bytes each host sends
    #[arg(long, value_name = "N", default_value_t = 16 << 20)]
    pub bytes: u64,
    /// Frames lost on the wire, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub loss: f64,
    /// Frames reordered on the wire, percent
    #[arg(long, value_name = "PCT", default_value = "0", value_parser = percent)]
    pub reorder: f64,
    /// Where the two hosts' run directories go [default: a temporary one]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    config::ppm("the value", v)?;
    Ok(v)
}

fn cidr(s: &str) -> Result<String, String> {
    config::check_cidr(s)?;
    Ok(s.to_string())
}

fn route_to(s: &str) -> Result<String, String> {
    config::check_route_to(s)?;
    Ok(s.to_string())
}

fn port_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("a comma-separated list of ports, e.g. p0,p1".into());
    }
    Ok(s.to_string())
}

impl Cli {
    /// What the tree cannot say: `--json` goes with listings only.
    pub fn check(&self) -> Result<(), clap::Error> {
        let change = match &self.command {
            Command::Bond(b) => {
                b.json.json && !matches!(b.command, None | Some(BondCommand::Show(_)))
            }
            Command::Route(r) => {
                r.json.json && !matches!(r.command, None | Some(RouteCommand::Show(_)))
            }
            _ => false,
        };
        if change {
            return Err(command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--json goes with listings, not with changes",
            ));
        }
        Ok(())
    }
}

/// The full command tree, for help and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `capnet help WORDS`: the long help of the command the words name.
pub fn help_of(words: &[String]) -> Result<String, String> {
    let mut tree = command();
    // Built, each command knows its full name for its usage line.
    tree.build();
    let mut at = &mut tree;
    for (i, word) in words.iter().enumerate() {
        at = at.find_subcommand_mut(word).ok_or_else(|| {
            let known = ["capnet"]
                .into_iter()
                .chain(words[..i].iter().map(String::as_str));
            format!(
                "{} has no command {word:?}",
                known.collect::<Vec<_>>().join(" ")
            )
        })?;
    }
    Ok(at.render_long_help().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("capnet").chain(args.iter().copied()))
    }

    #[test]
    fn the_tree_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn help_names_the_command() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let h = help_of(&words(&["bond", "add"])).unwrap();
        assert!(h.contains("Usage: capnet bond add"), "{h}");
        let h = help_of(&words(&["faults"])).unwrap();
        assert!(h.contains("Usage: capnet wire"), "{h}");
        let e = help_of(&words(&["bond", "frob"])).unwrap_err();
        assert_eq!(e, "capnet bond has no command \"frob\"");
    }

    #[test]
    fn run_dir_goes_anywhere_after_the_command() {
        let c = parse(&[
            "bond",
            "add",
            "b0",
            "--mode",
            "active-backup",
            "--legs",
            "p0,p1",
            "--run-dir",
            "/r",
        ])
        .unwrap();
        let Command::Bond(b) = c.command else {
            panic!()
        };
        assert_eq!(b.run_dir.run_dir, Some(PathBuf::from("/r")));
        let Some(BondCommand::Add(add)) = b.command else {
            panic!()
        };
        assert_eq!(add.legs, ["p0", "p1"]);
        let c = parse(&["link", "p0", "down", "--run-dir", "/r"]).unwrap();
        let Command::Link(l) = c.command else {
            panic!()
        };
        assert_eq!(l.carrier, Some(UpDown::Down));
    }

    #[test]
    fn errors_name_the_argument() {
        let e = parse(&["route", "add", "10.9.0.0", "via", "10.0.0.2"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("<TO>") && e.contains("\"default\" or a CIDR"),
            "{e}"
        );
        let e = parse(&["route", "add", "default", "by", "10.0.0.2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'by'") && e.contains("<via>"), "{e}");
        let e = parse(&["bond", "add", "x", "--mode", "rr", "--legs", "p0"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--mode") && e.contains("active-backup or balance-xor"),
            "{e}"
        );
        let e = parse(&["wire", "p0", "--loss", "200"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--loss") && e.contains("from 0 to 100"), "{e}");
        let e = parse(&["link", "p0", "down", "--json"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--json"), "{e}");
        let e = parse(&["bond", "--json", "mode", "b0", "balance-xor"])
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--json"), "{e}");
        parse(&["route", "--run-dir", "/r", "show"])
            .unwrap()
            .check()
            .unwrap();
        let e = parse(&["status", "--bogus"]).unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
    }

    #[test]
    fn listings_take_json_with_or_without_their_verb() {
        for args in [
            &["bond", "--json"][..],
            &["bond", "show", "--json"],
            &["route", "-j"],
            &["route", "show", "--json"],
            &["tls", "stat", "--json"],
            &["offload", "--json"],
            &["status", "--json"],
            &["link", "p0", "--json"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
