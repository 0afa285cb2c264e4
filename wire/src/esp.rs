//! ESP (RFC 4303) as far as a NIC must read it to find an SA: the SPI and
//! sequence number ahead of the encrypted payload. What follows them
//! (IV, ciphertext, trailer, ICV) belongs to the SA's cipher.

use smoltcp::wire::IpProtocol;
use std::net::IpAddr;
use std::ops::Range;

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;

/// The fixed header of an ESP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspHeader {
    pub spi: u32,
    /// The low 32 bits of the sequence number (ESN keeps the high ones
    /// out of the packet).
    pub seq: u32,
}

impl EspHeader {
    /// Reads the header at the start of `bytes`; `None` if it is short.
    /// SPI 0 is reserved (RFC 4303 2.1) and never names an SA.
    pub fn parse(bytes: &[u8]) -> Option<EspHeader> {
        let h: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let spi = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        (spi != 0).then(|| EspHeader {
            spi,
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    pub fn emit(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..HEADER_LEN].copy_from_slice(&self.seq.to_be_bytes());
    }
}

/// Where an ESP packet is in a frame, and whose SA it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub header: EspHeader,
    /// The bytes after the header, up to the IP length.
    pub payload: Range<usize>,
}

/// Parses an Ethernet frame carrying an unfragmented ESP packet over IPv4 or
/// IPv6 (transport or tunnel mode alike: the outer header is what counts).
pub fn parse_esp(frame: &[u8]) -> Option<EspPacket> {
    esp_in(frame, &crate::ip::upper_layer(frame)?)
}

/// The ESP packet of `frame` whose IP layer `ip` is (already walked).
pub fn esp_in(frame: &[u8], ip: &crate::ip::UpperLayer) -> Option<EspPacket> {
    if ip.protocol != IpProtocol::IpSecEsp {
        return None;
    }
    let header = EspHeader::parse(&frame[ip.range()])?;
    Some(EspPacket {
        src: ip.src,
        dst: ip.dst,
        header,
        payload: ip.at + HEADER_LEN..ip.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (protocol 50) + `esp`, with Ethernet padding after.
    fn v4(esp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + esp.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 50;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let sum = crate::csum::sum16(&ip);
        ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(esp);
        f.resize(f.len().max(60), 0);
        f
    }

    #[test]
    fn finds_the_sa_and_the_payload() {
        let mut esp = vec![0u8; HEADER_LEN];
        EspHeader {
            spi: 0x1234_5678,
            seq: 9,
        }
        .emit(&mut esp);
        esp.extend_from_slice(b"ciphertext");
        let f = v4(&esp);
        let p = parse_esp(&f).unwrap();
        assert_eq!(p.header.spi, 0x1234_5678);
        assert_eq!(p.header.seq, 9);
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(&f[p.payload], b"ciphertext");
    }

    #[test]
    fn refuses_short_headers_spi_zero_and_other_protocols() {
        assert!(parse_esp(&v4(&[0, 0, 0, 1, 0, 0, 0])).is_none());
        assert!(parse_esp(&v4(&[0; 12])).is_none());
        let mut tcp = v4(&[0, 0, 0, 1, 0, 0, 0, 1]);
        tcp[14 + 9] = 6;
        assert!(parse_esp(&tcp).is_none());
        assert!(crate::tcp::parse_tcp(&v4(&[0, 0, 0, 1, 0, 0, 0, 1])).is_none());
    }
}
