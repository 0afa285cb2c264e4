//! Where a frame's TCP payload is and which connection it belongs to: the
//! one parse the NIC's offload engines, netsrv's offload path and the
//! capture checks in tests share; and the TCP header itself ([`Header`]).

use smoltcp::wire::{IpProtocol, TcpPacket};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

mod header;

pub use crate::seq::{SeqNumber, StreamBase};
pub use header::{Flags, Header, HeaderError, SackBlock, MAX_SACK_BLOCKS};

/// A TCP connection as this host sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.local, self.remote)
    }
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

impl Flow {
    /// Both ends unicast, of one family, with non-zero ports.
    pub fn check(&self) -> Result<(), String> {
        if self.local.is_ipv4() != self.remote.is_ipv4() {
            return Err(format!("flow {self}: mixes IPv4 and IPv6"));
        }
        if self.local.port() == 0 || self.remote.port() == 0 {
            return Err(format!("flow {self}: port 0"));
        }
        if !unicast(self.local.ip()) || !unicast(self.remote.ip()) {
            return Err(format!("flow {self}: not a unicast address"));
        }
        Ok(())
    }

    /// The (source, destination) of frames this host sends on the flow.
    pub fn outbound(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// The (source, destination) of frames this host receives on the flow.
    pub fn inbound(&self) -> (SocketAddr, SocketAddr) {
        (self.remote, self.local)
    }
}

/// Where the TCP payload of a frame is, and what it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (after a SYN's).
    pub seq: u32,
    /// The acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub rst: bool,
    /// The payload's bytes in the frame (up to the IP length: Ethernet
    /// padding is not payload).
    pub payload: Range<usize>,
}

/// Parses an Ethernet frame carrying an unfragmented TCP segment over IPv4
/// or IPv6 (hop-by-hop and destination-options headers are walked). Anything
/// else, or lengths that do not add up: `None`.
pub fn parse_tcp(frame: &[u8]) -> Option<TcpSegment> {
    tcp_in(frame, &crate::ip::upper_layer(frame)?)
}

/// The TCP segment of `frame` whose IP layer `ip` is (already walked).
pub fn tcp_in(frame: &[u8], ip: &crate::ip::UpperLayer) -> Option<TcpSegment> {
    if ip.protocol != IpProtocol::Tcp {
        return None;
    }
    tcp(ip.src, ip.dst, ip.at, &frame[ip.range()])
}

fn tcp(src: IpAddr, dst: IpAddr, l4: usize, seg: &[u8]) -> Option<TcpSegment> {
    let t = TcpPacket::new_checked(seg).ok()?;
    let syn = t.syn();
    let seq = (t.seq_number().0 as u32).wrapping_add(u32::from(syn));
    Some(TcpSegment {
        src: SocketAddr::new(src, t.src_port()),
        dst: SocketAddr::new(dst, t.dst_port()),
        seq,
        ack: t.ack().then(|| t.ack_number().0 as u32),
        syn,
        rst: t.rst(),
        payload: l4 + usize::from(t.header_len())..l4 + seg.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flow_checks() {
        let ok = Flow {
            local: sa("10.0.0.1:40000"),
            remote: sa("10.0.0.2:443"),
        };
        assert!(ok.check().is_ok());
        assert_eq!(ok.to_string(), "10.0.0.1:40000->10.0.0.2:443");
        let mixed = Flow {
            local: sa("10.0.0.1:40000"),
            remote: sa("[fd00::2]:443"),
        };
        assert!(mixed.check().unwrap_err().contains("mixes"));
        let port0 = Flow {
            local: sa("10.0.0.1:0"),
            ..ok
        };
        assert!(port0.check().unwrap_err().contains("port 0"));
        let any = Flow {
            remote: sa("0.0.0.0:443"),
            ..ok
        };
        assert!(any.check().unwrap_err().contains("unicast"));
        let mcast = Flow {
            local: sa("[ff02::1]:1"),
            remote: sa("[fd00::2]:443"),
        };
        assert!(mcast.check().unwrap_err().contains("unicast"));
    }
}
