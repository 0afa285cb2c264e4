//! IPv6 extension headers: the one walk from the fixed header to the
//! upper-layer protocol, for the checksum code and the TCP parse alike.

use smoltcp::wire::{IpProtocol, Ipv6ExtHeader};

/// Most extension headers walked before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// An extension header that does not fit in the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadExtHeader;

impl core::fmt::Display for BadExtHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("bad IPv6 extension header")
    }
}

/// Skips hop-by-hop and destination-options headers from `proto` (the
/// fixed header's next header) over `data` (its payload): the upper-layer
/// protocol and where it starts in `data`. Routing and fragment headers stop
/// the walk (the pseudo-header or the data would not be all here) and come
/// back as their own protocol; more than [`MAX_EXT_HEADERS`] headers come
/// back as `Ipv6NoNxt`.
pub fn upper_layer(
    mut proto: IpProtocol,
    data: &[u8],
) -> Result<(IpProtocol, usize), BadExtHeader> {
    let mut at = 0;
    for _ in 0..MAX_EXT_HEADERS {
        match proto {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts => {
                let rest = data.get(at..).ok_or(BadExtHeader)?;
                let h = Ipv6ExtHeader::new_checked(rest).map_err(|_| BadExtHeader)?;
                proto = h.next_header();
                at += 8 + usize::from(h.header_len()) * 8;
            }
            _ => return Ok((proto, at)),
        }
    }
    Ok((IpProtocol::Ipv6NoNxt, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hop-by-hop or destination-options header of `units` 8-byte units
    /// beyond the first, followed by `next`.
    fn ext(next: IpProtocol, units: u8) -> Vec<u8> {
        let mut h = vec![0u8; 8 + usize::from(units) * 8];
        h[0] = next.into();
        h[1] = units;
        h
    }

    #[test]
    fn walks_to_the_upper_layer() {
        let mut data = ext(IpProtocol::Ipv6Opts, 1);
        data.extend(ext(IpProtocol::Tcp, 0));
        data.extend([0u8; 20]);
        assert_eq!(
            upper_layer(IpProtocol::HopByHop, &data),
            Ok((IpProtocol::Tcp, 24))
        );
        assert_eq!(
            upper_layer(IpProtocol::Udp, &data),
            Ok((IpProtocol::Udp, 0))
        );
    }

    #[test]
    fn a_header_past_the_end_is_refused() {
        let data = ext(IpProtocol::Tcp, 2);
        assert_eq!(
            upper_layer(IpProtocol::HopByHop, &data[..12]),
            Err(BadExtHeader)
        );
        assert_eq!(upper_layer(IpProtocol::HopByHop, &[]), Err(BadExtHeader));
    }

    #[test]
    fn too_many_headers_end_the_walk() {
        let data: Vec<u8> = (0..MAX_EXT_HEADERS + 1)
            .flat_map(|_| ext(IpProtocol::HopByHop, 0))
            .collect();
        assert_eq!(
            upper_layer(IpProtocol::HopByHop, &data),
            Ok((IpProtocol::Ipv6NoNxt, 8 * MAX_EXT_HEADERS))
        );
    }
}
