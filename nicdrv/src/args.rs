//! Command line of the nicdrv process (normally written by the supervisor).
//!
//! Hand-rolled on purpose: the process is started by a program, so the
//! grammar is small and strict, and every mistake gets a clear message
//! (the binary exits with code 2).

use crate::faults::{FaultConfig, PPM};
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: nicdrv --name NAME --backend sim --wire PATH [common options]
       nicdrv --name NAME --backend tap --tap IFNAME [--netns NS] [common options]
common options:
  --mac XX:XX:XX:XX:XX:XX   our MAC (default: random, locally administered)
  --mtu N                   IP MTU, 68..=65535 (default 1500); frames are mtu+14 bytes
  --buffers N               buffers per ring direction, a power of two (default 512)
  --pcap FILE               capture every frame received and sent (classic pcap)
  --loss-ppm N --reorder-ppm N --duplicate-ppm N --corrupt-ppm N
                            wire faults on our transmit side, parts per million
  --seed N                  seed of the fault injection RNG
  --no-csum-offload         do not verify RX checksums nor fill TX checksums (and no
                            segmentation offload)
  --no-segmentation         no TCP segmentation offload: the stack's frames are at most
                            one MTU, and received segments are not coalesced
  --tls-offload             offer TLS TX and RX offload contexts (kTLS device offload);
                            needs checksum offload
  --epoch N                 which instance of the port's driver this is (reported in
                            OffloadInfo.driverEpoch; default 0)
  --rpc-fd N                inherited connected Unix socket: serve Nic (capnp); repeatable
  --handoff-fd N            inherited Unix socket: redeem RingGrant tokens; repeatable
  --listen PATH             Unix socket (0600); first byte 'R' = capnp, 'H' = handoff
  --user UID:GID            started as root: become this user once the device is open";

/// The device behind the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A virtual wire to another nicdrv, met at a Unix socket path.
    Sim { wire: PathBuf },
    /// A Linux TAP device, optionally inside a named network namespace.
    Tap { tap: String, netns: Option<String> },
}

impl Backend {
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Sim { .. } => "sim",
            Backend::Tap { .. } => "tap",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub name: String,
    pub backend: Backend,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub buffers: u32,
    pub pcap: Option<PathBuf>,
    pub faults: FaultConfig,
    pub seed: Option<u64>,
    pub csum_offload: bool,
    /// TSO and GRO (on unless `--no-segmentation` or `--no-csum-offload`).
    pub segmentation: bool,
    /// TLS TX and RX offload (`--tls-offload`).
    pub tls_offload: bool,
    pub epoch: u32,
    pub rpc_fds: Vec<RawFd>,
    pub handoff_fds: Vec<RawFd>,
    pub listen: Option<PathBuf>,
    /// The user to become once the device and capture are open.
    pub user: Option<capnet_confine::User>,
}

pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_BUFFERS: u32 = 512;
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;
pub const MAX_BUFFERS: u32 = 1 << 16;

/// Why the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// `-h` / `--help`: print the usage and exit 0.
    Help,
    Invalid(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => f.write_str(USAGE),
            ArgError::Invalid(m) => write!(f, "nicdrv: {m}\n{USAGE}"),
        }
    }
}

impl std::error::Error for ArgError {}

fn invalid(m: impl Into<String>) -> ArgError {
    ArgError::Invalid(m.into())
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, ArgError>
where
    T::Err: fmt::Display,
{
    v.parse::<T>()
        .map_err(|e| invalid(format!("{flag} {v:?}: {e}")))
}

fn ppm(flag: &str, v: &str) -> Result<u32, ArgError> {
    let n: u32 = num(flag, v)?;
    if n > PPM {
        return Err(invalid(format!(
            "{flag} {n}: at most {PPM} (parts per million)"
        )));
    }
    Ok(n)
}

fn fd(flag: &str, v: &str) -> Result<RawFd, ArgError> {
    let n: RawFd = num(flag, v)?;
    if n < 0 {
        return Err(invalid(format!("{flag} {n}: not a file descriptor")));
    }
    Ok(n)
}

pub use capnet_wire::mac::{format_mac, parse_mac};

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, ArgError> {
    let mut it = args.into_iter();
    let mut name = None;
    let mut backend = None;
    let mut wire = None;
    let mut tap = None;
    let mut netns = None;
    let mut mac = None;
    let mut mtu = DEFAULT_MTU;
    let mut buffers = DEFAULT_BUFFERS;
    let mut pcap = None;
    let mut faults = FaultConfig::default();
    let mut seed = None;
    let mut csum_offload = true;
    let mut segmentation = true;
    let mut tls_offload = false;
    let mut epoch = 0;
    let mut rpc_fds = Vec::new();
    let mut handoff_fds = Vec::new();
    let mut listen = None;
    let mut user = None;

    while let Some(flag) = it.next() {
        // Accept `--flag=value` as well as `--flag value`.
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        let mut value = || -> Result<String, ArgError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            it.next()
                .ok_or_else(|| invalid(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(ArgError::Help),
            "--name" => {
                let v = value()?;
                if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control() || c == '/') {
                    return Err(invalid(format!(
                        "--name {v:?}: 1 to 64 printable characters, no '/'"
                    )));
                }
                name = Some(v);
            }
            "--backend" => {
                let v = value()?;
                match v.as_str() {
                    "sim" | "tap" => backend = Some(v),
                    _ => return Err(invalid(format!("--backend {v:?}: expected sim or tap"))),
                }
            }
            "--wire" => wire = Some(PathBuf::from(value()?)),
            "--tap" => {
                let v = value()?;
                if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', ':']) {
                    return Err(invalid(format!(
                        "--tap {v:?}: an interface name of 1 to 15 characters"
                    )));
                }
                tap = Some(v);
            }
            "--netns" => {
                let v = value()?;
                if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                    return Err(invalid(format!("--netns {v:?}: a name under /run/netns")));
                }
                netns = Some(v);
            }
            "--mac" => {
                let v = value()?;
                mac = Some(parse_mac(&v).map_err(|e| invalid(format!("--mac {v:?}: {e}")))?);
            }
            "--mtu" => {
                let v = value()?;
                mtu = num(&flag, &v)?;
                if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                    return Err(invalid(format!(
                        "--mtu {mtu}: must be {MIN_MTU}..={MAX_MTU}"
                    )));
                }
            }
            "--buffers" => {
                let v = value()?;
                buffers = num(&flag, &v)?;
                if !buffers.is_power_of_two() || !(2..=MAX_BUFFERS).contains(&buffers) {
                    return Err(invalid(format!(
                        "--buffers {buffers}: a power of two from 2 to {MAX_BUFFERS}"
                    )));
                }
            }
            "--pcap" => pcap = Some(PathBuf::from(value()?)),
            "--loss-ppm" => faults.loss_ppm = ppm(&flag, &value()?)?,
            "--reorder-ppm" => faults.reorder_ppm = ppm(&flag, &value()?)?,
            "--duplicate-ppm" => faults.duplicate_ppm = ppm(&flag, &value()?)?,
            "--corrupt-ppm" => faults.corrupt_ppm = ppm(&flag, &value()?)?,
            "--seed" => seed = Some(num(&flag, &value()?)?),
            "--no-csum-offload" => csum_offload = false,
            "--no-segmentation" => segmentation = false,
            "--tls-offload" => tls_offload = true,
            "--epoch" => epoch = num(&flag, &value()?)?,
            "--rpc-fd" => rpc_fds.push(fd(&flag, &value()?)?),
            "--handoff-fd" => handoff_fds.push(fd(&flag, &value()?)?),
            "--listen" => listen = Some(PathBuf::from(value()?)),
            "--user" => user = Some(capnet_confine::User::parse(&value()?).map_err(invalid)?),
            other => return Err(invalid(format!("unknown argument {other:?}"))),
        }
        if inline.is_some()
            && matches!(
                flag.as_str(),
                "--no-csum-offload" | "--no-segmentation" | "--tls-offload" | "-h" | "--help"
            )
        {
            return Err(invalid(format!("{flag} takes no value")));
        }
    }

    let name = name.ok_or_else(|| invalid("--name is required"))?;
    if tls_offload && !csum_offload {
        // The engine changes the payload: the driver must fill the checksums
        // after sealing, and RX decrypts only frames whose checksum it verified.
        return Err(invalid(
            "--tls-offload needs checksum offload: it cannot go with --no-csum-offload",
        ));
    }
    let backend = match backend.as_deref() {
        None => return Err(invalid("--backend is required (sim or tap)")),
        Some("sim") => {
            if tap.is_some() || netns.is_some() {
                return Err(invalid("--tap and --netns belong to --backend tap"));
            }
            Backend::Sim {
                wire: wire.ok_or_else(|| invalid("--backend sim needs --wire PATH"))?,
            }
        }
        Some(_) => {
            if wire.is_some() {
                return Err(invalid("--wire belongs to --backend sim"));
            }
            Backend::Tap {
                tap: tap.ok_or_else(|| invalid("--backend tap needs --tap IFNAME"))?,
                netns,
            }
        }
    };
    if rpc_fds.is_empty() && listen.is_none() {
        return Err(invalid(
            "nobody could reach the port: give --rpc-fd N or --listen PATH",
        ));
    }
    let mut all_fds: Vec<RawFd> = rpc_fds.iter().chain(&handoff_fds).copied().collect();
    all_fds.sort_unstable();
    if all_fds.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("the same file descriptor is named twice"));
    }
    Ok(Args {
        name,
        backend,
        mac,
        mtu,
        buffers,
        pcap,
        faults,
        seed,
        csum_offload,
        // Segments are cut and coalesced with their checksums filled and verified.
        segmentation: segmentation && csum_offload,
        tls_offload,
        epoch,
        rpc_fds,
        handoff_fds,
        listen,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgError> {
        parse(s.split_whitespace().map(String::from))
    }

    fn err(s: &str) -> String {
        match p(s) {
            Err(ArgError::Invalid(m)) => m,
            other => panic!("{s:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn full_sim_command_line() {
        let a = p("--name sim0 --backend sim --wire /tmp/w.sock --mac 02:00:00:00:00:01 --mtu 9000 \
                   --pcap /tmp/x.pcap --loss-ppm 10 --reorder-ppm 20 --duplicate-ppm 30 --corrupt-ppm 40 \
                   --seed 7 --buffers 256 --no-csum-offload --rpc-fd 3 --rpc-fd 4 --handoff-fd 5 --listen /tmp/l")
        .unwrap();
        assert_eq!(a.name, "sim0");
        assert_eq!(
            a.backend,
            Backend::Sim {
                wire: "/tmp/w.sock".into()
            }
        );
        assert_eq!(a.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(a.mtu, 9000);
        assert_eq!(a.buffers, 256);
        assert_eq!(a.pcap, Some("/tmp/x.pcap".into()));
        assert_eq!(
            a.faults,
            FaultConfig {
                loss_ppm: 10,
                reorder_ppm: 20,
                duplicate_ppm: 30,
                corrupt_ppm: 40
            }
        );
        assert_eq!(a.seed, Some(7));
        assert!(!a.csum_offload);
        assert_eq!(a.rpc_fds, vec![3, 4]);
        assert_eq!(a.handoff_fds, vec![5]);
        assert_eq!(a.listen, Some("/tmp/l".into()));
    }

    #[test]
    fn tap_defaults_and_inline_values() {
        let a = p("--name=tap0 --backend=tap --tap=tap0 --netns=peer --listen=/x").unwrap();
        assert_eq!(
            a.backend,
            Backend::Tap {
                tap: "tap0".into(),
                netns: Some("peer".into())
            }
        );
        assert_eq!(a.mtu, DEFAULT_MTU);
        assert_eq!(a.buffers, DEFAULT_BUFFERS);
        assert!(a.csum_offload);
        assert!(!a.tls_offload);
        assert_eq!(a.epoch, 0);
        assert_eq!(a.mac, None);
        assert_eq!(a.faults, FaultConfig::default());
    }

    #[test]
    fn errors_are_clear() {
        assert!(err("--backend sim --wire w --listen l").contains("--name is required"));
        assert!(err("--name a --wire w --listen l").contains("--backend is required"));
        assert!(err("--name a --backend sim --listen l").contains("needs --wire"));
        assert!(err("--name a --backend tap --listen l").contains("needs --tap"));
        assert!(
            err("--name a --backend tap --tap t --wire w --listen l").contains("--wire belongs")
        );
        assert!(err("--name a --backend sim --wire w --netns x --listen l")
            .contains("--tap and --netns"));
        assert!(err("--name a --backend eth --listen l").contains("expected sim or tap"));
        assert!(err("--name a --backend sim --wire w").contains("--rpc-fd N or --listen"));
        assert!(err("--name a --backend sim --wire w --listen l --mtu 10").contains("68..=65535"));
        assert!(
            err("--name a --backend sim --wire w --listen l --mtu 65536").contains("68..=65535")
        );
        assert!(err("--name a --backend sim --wire w --listen l --mtu x").contains("--mtu \"x\""));
        assert!(
            err("--name a --backend sim --wire w --listen l --buffers 100")
                .contains("power of two")
        );
        assert!(
            err("--name a --backend sim --wire w --listen l --loss-ppm 1000001")
                .contains("at most")
        );
        assert!(
            err("--name a --backend sim --wire w --listen l --rpc-fd -1").contains("not a file")
        );
        assert!(err("--name a --backend sim --wire w --rpc-fd 3 --handoff-fd 3").contains("twice"));
        assert!(
            err("--name a --backend sim --wire w --listen l --mac 01:00:00:00:00:01")
                .contains("multicast")
        );
        assert!(
            err("--name a --backend sim --wire w --listen l --mac 02:00:00:00:00")
                .contains("six hex")
        );
        assert!(
            err("--name a --backend sim --wire w --listen l --mac 02:00:00:00:00:zz")
                .contains("bad octet")
        );
        assert!(
            err("--name a --backend tap --tap abcdefghijklmnop --listen l").contains("1 to 15")
        );
        assert!(
            err("--name a --backend sim --wire w --listen l --frobnicate")
                .contains("unknown argument")
        );
        assert!(err("--name a --backend sim --wire w --listen").contains("--listen needs a value"));
        assert!(
            err("--name a --backend sim --wire w --listen l --no-csum-offload=1")
                .contains("no value")
        );
        assert_eq!(p("--help"), Err(ArgError::Help));
        let shown = ArgError::Invalid("x".into()).to_string();
        assert!(shown.contains("usage: nicdrv"));
    }

    #[test]
    fn tls_offload_needs_checksum_offload() {
        let a = p("--name a --backend sim --wire w --listen l --tls-offload --epoch 3").unwrap();
        assert!(a.tls_offload && a.csum_offload);
        assert_eq!(a.epoch, 3);
        let e = err("--name a --backend sim --wire w --listen l --tls-offload --no-csum-offload");
        assert!(e.contains("--tls-offload needs checksum offload"), "{e}");
        let e = err("--name a --backend sim --wire w --listen l --no-csum-offload --tls-offload");
        assert!(e.contains("--no-csum-offload"), "{e}");
        assert!(
            err("--name a --backend sim --wire w --listen l --tls-offload=yes")
                .contains("no value")
        );
        assert!(err("--name a --backend sim --wire w --listen l --epoch -1").contains("--epoch"));
    }

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("02-AB-cd-00-10-ff").unwrap();
        assert_eq!(format_mac(&m), "02:ab:cd:00:10:ff");
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("002:00:00:00:00:01").is_err());
    }
}
