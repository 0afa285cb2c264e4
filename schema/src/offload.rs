//! Offload kinds and flows (offload.capnp) as the services name and read
//! them, so that nicdrv, netsrv, libclient and the CLI say the same thing.

use crate::addr::{ip_octets, read_ip, read_socket_addr, write_socket_addr};
use crate::errors::SocketError;
use crate::offload_capnp::{offload_flow, tcp_flow, EspDirection, OffloadKind};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Every kind, in schema order.
pub const KINDS: [OffloadKind; 7] = [
    OffloadKind::TlsTx,
    OffloadKind::TlsRx,
    OffloadKind::EspCryptoTx,
    OffloadKind::EspCryptoRx,
    OffloadKind::EspPacketTx,
    OffloadKind::EspPacketRx,
    OffloadKind::NvmeTcpRx,
];

/// The schema's name of a kind (`tlsTx`), as errors and logs say it.
pub fn kind_name(k: OffloadKind) -> &'static str {
    match k {
        OffloadKind::TlsTx => "tlsTx",
        OffloadKind::TlsRx => "tlsRx",
        OffloadKind::EspCryptoTx => "espCryptoTx",
        OffloadKind::EspCryptoRx => "espCryptoRx",
        OffloadKind::EspPacketTx => "espPacketTx",
        OffloadKind::EspPacketRx => "espPacketRx",
        OffloadKind::NvmeTcpRx => "nvmeTcpRx",
    }
}

/// A kind as the command line prints it (`tls-tx`, as `--json` does).
pub fn kind_label(k: OffloadKind) -> &'static str {
    match k {
        OffloadKind::TlsTx => "tls-tx",
        OffloadKind::TlsRx => "tls-rx",
        OffloadKind::EspCryptoTx => "esp-crypto-tx",
        OffloadKind::EspCryptoRx => "esp-crypto-rx",
        OffloadKind::EspPacketTx => "esp-packet-tx",
        OffloadKind::EspPacketRx => "esp-packet-rx",
        OffloadKind::NvmeTcpRx => "nvme-tcp-rx",
    }
}

/// Whether a kind's flow is a TCP connection (else an ESP SA).
pub fn on_tcp(k: OffloadKind) -> bool {
    matches!(
        k,
        OffloadKind::TlsTx | OffloadKind::TlsRx | OffloadKind::NvmeTcpRx
    )
}

/// Whether the NIC processes frames the host transmits for this kind.
pub fn transmits(k: OffloadKind) -> bool {
    matches!(
        k,
        OffloadKind::TlsTx | OffloadKind::EspCryptoTx | OffloadKind::EspPacketTx
    )
}

/// An ESP security association, read from `EspSa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EspSa {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub spi: u32,
    pub inbound: bool,
}

/// What a context matches (`OffloadFlow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OffloadFlow {
    /// A TCP connection (local, remote) and its `txReach`.
    Tcp {
        local: SocketAddr,
        remote: SocketAddr,
        tx_reach: u32,
    },
    Esp(EspSa),
}

impl fmt::Display for EspSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} spi {:#010x}",
            if self.inbound { "in" } else { "out" },
            self.local,
            self.remote,
            self.spi
        )
    }
}

impl fmt::Display for OffloadFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadFlow::Tcp { local, remote, .. } => write!(f, "{local} -> {remote}"),
            OffloadFlow::Esp(sa) => fmt::Display::fmt(sa, f),
        }
    }
}

/// Reads a `TcpFlow`.
pub fn read_tcp_flow(r: tcp_flow::Reader<'_>) -> capnp::Result<OffloadFlow> {
    Ok(OffloadFlow::Tcp {
        local: read_socket_addr(r.get_local()?)?,
        remote: read_socket_addr(r.get_remote()?)?,
        tx_reach: r.get_tx_reach(),
    })
}

/// Reads an `EspSa`.
pub fn read_esp_sa(r: crate::offload_capnp::esp_sa::Reader<'_>) -> capnp::Result<OffloadFlow> {
    Ok(OffloadFlow::Esp(EspSa {
        local: read_ip(r.get_local()?)?,
        remote: read_ip(r.get_remote()?)?,
        spi: r.get_spi(),
        inbound: r
            .get_direction()
            .map_err(|e| SocketError::Invalid.to_capnp(format_args!("ESP direction {}", e.0)))?
            == EspDirection::Inbound,
    }))
}

/// Reads an `OffloadFlow`.
pub fn read_flow(r: offload_flow::Reader<'_>) -> capnp::Result<OffloadFlow> {
    match r.which()? {
        offload_flow::Tcp(t) => read_tcp_flow(t?),
        offload_flow::Esp(e) => read_esp_sa(e?),
    }
}

/// Writes a `TcpFlow`.
pub fn write_tcp_flow(
    mut b: tcp_flow::Builder<'_>,
    local: SocketAddr,
    remote: SocketAddr,
    tx_reach: u32,
) {
    write_socket_addr(b.reborrow().init_local(), local);
    write_socket_addr(b.reborrow().init_remote(), remote);
    b.set_tx_reach(tx_reach);
}

/// Writes an `OffloadFlow`.
pub fn write_flow(b: offload_flow::Builder<'_>, flow: &OffloadFlow) {
    match *flow {
        OffloadFlow::Tcp {
            local,
            remote,
            tx_reach,
        } => write_tcp_flow(b.init_tcp(), local, remote, tx_reach),
        OffloadFlow::Esp(sa) => {
            let mut e = b.init_esp();
            e.set_local(&ip_octets(sa.local));
            e.set_remote(&ip_octets(sa.remote));
            e.set_spi(sa.spi);
            e.set_direction(if sa.inbound {
                EspDirection::Inbound
            } else {
                EspDirection::Outbound
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_names_and_a_flow_type() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| kind_name(*k)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for k in KINDS {
            assert_eq!(
                kind_label(k),
                kind_name(k)
                    .chars()
                    .flat_map(|c| if c.is_ascii_uppercase() {
                        vec!['-', c.to_ascii_lowercase()]
                    } else {
                        vec![c]
                    })
                    .collect::<String>()
            );
        }
        assert!(on_tcp(OffloadKind::TlsRx) && !on_tcp(OffloadKind::EspPacketRx));
        assert!(transmits(OffloadKind::TlsTx) && !transmits(OffloadKind::NvmeTcpRx));
    }

    #[test]
    fn flows_round_trip() {
        let flows = [
            OffloadFlow::Tcp {
                local: "10.0.0.1:40000".parse().unwrap(),
                remote: "[fd00::2]:443".parse().unwrap(),
                tx_reach: 4096,
            },
            OffloadFlow::Esp(EspSa {
                local: "10.0.0.1".parse().unwrap(),
                remote: "fd00::9".parse().unwrap(),
                spi: 0x1234,
                inbound: true,
            }),
        ];
        for flow in flows {
            let mut msg = capnp::message::Builder::new_default();
            write_flow(msg.init_root(), &flow);
            let r = msg.get_root_as_reader::<offload_flow::Reader>().unwrap();
            assert_eq!(read_flow(r).unwrap(), flow);
        }
        assert_eq!(
            flows[1].to_string(),
            "in 10.0.0.1 -> fd00::9 spi 0x00001234"
        );
    }
}
