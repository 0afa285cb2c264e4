//! The virtio-net header that a Linux TAP opened with `IFF_VNET_HDR` puts
//! before every frame both ways: how Linux and nicdrv tell each other that a
//! frame is a merged TCP frame still to be cut (GSO), and that its checksum
//! is partial or already verified. With it a TAP takes a 64 KiB frame in one
//! `write(2)` and hands one up in one `read(2)`.
//!
//! The header is ten bytes in the host's byte order (legacy virtio, which a
//! TAP speaks unless told otherwise with `TUNSETVNETLE`/`TUNSETVNETBE`):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | flags: `NEEDS_CSUM` (the checksum is partial), `DATA_VALID` (verified) |
//! | 1 | GSO type: none, TCPv4, TCPv6 (UDP and the ECN bit as Linux defines them) |
//! | 2..4 | header length (Ethernet, IP and TCP) |
//! | 4..6 | GSO size: the payload of each segment |
//! | 6..8 | checksum start: where the summed bytes begin |
//! | 8..10 | checksum offset: where, from the start, the checksum goes |
//!
//! What Linux hands up is checked here like anything from a peer: a
//! partial checksum must lie inside the frame, a GSO frame must promise
//! its checksums and be TCP (the cut it implies is checked by
//! [`crate::gso::Segments`]).

use crate::csum::sum16;
use crate::gso::DeviceCut;

/// The header's length (`TUNSETVNETHDRSZ`'s default).
pub const LEN: usize = 10;

/// The checksum from `csum_start` to the end is partial: the sender
/// summed only the pseudo-header into the checksum field.
pub const F_NEEDS_CSUM: u8 = 1;
/// The sender verified the frame's checksums.
pub const F_DATA_VALID: u8 = 2;

pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
/// With a TCP type: the first segment carries CWR, the others must not.
pub const GSO_ECN: u8 = 0x80;

/// The header, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

/// Why a frame from the device was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// Shorter than the header.
    Short,
    /// A GSO type other than TCP (UDP, or one Linux may add later).
    GsoType,
    /// A GSO frame without `NEEDS_CSUM` or `DATA_VALID`: its segments'
    /// checksums would be filled without anyone having checked the data.
    GsoUnchecked,
    /// A GSO size of zero.
    GsoSize,
    /// A partial checksum whose start or field lies outside the frame.
    CsumRange,
}

impl std::fmt::Display for VnetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VnetError::Short => "a frame shorter than its virtio-net header",
            VnetError::GsoType => "a GSO type other than TCP",
            VnetError::GsoUnchecked => "a GSO frame without a verified or partial checksum",
            VnetError::GsoSize => "a GSO frame with a segment size of zero",
            VnetError::CsumRange => "a partial checksum outside the frame",
        })
    }
}

impl std::error::Error for VnetError {}

/// What a checked frame from the device is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Its checksums need no checking: the device verified them, or the
    /// frame was made on the device's host and its partial checksum was
    /// completed here (or, for a GSO frame, is filled when it is cut).
    pub verified: bool,
    /// A merged TCP frame to be cut into segments of this payload size.
    pub gso_size: Option<u16>,
}

impl Header {
    /// Reads the header at the front of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Header, VnetError> {
        let b: &[u8; LEN] = bytes
            .get(..LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(VnetError::Short)?;
        let at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: at(2),
            gso_size: at(4),
            csum_start: at(6),
            csum_offset: at(8),
        })
    }

    /// Writes the header into `out`.
    pub fn emit(&self, out: &mut [u8; LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// The header of a merged frame the device is to cut, readied by
    /// [`crate::gso::Segments::for_device`].
    pub fn tso(cut: &DeviceCut) -> Header {
        let mut gso_type = if cut.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        if cut.cwr {
            gso_type |= GSO_ECN;
        }
        Header {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: cut.headers,
            gso_size: cut.size,
            csum_start: cut.l4,
            csum_offset: 16,
        }
    }

    /// Checks what the device said of `frame` and completes a partial
    /// checksum of a frame that is not to be cut (one pass over it, as
    /// verifying would be). A GSO frame's checksum is left partial: each
    /// segment's is filled when it is cut, and a frame handed on whole
    /// is marked verified, as coalesced frames are.
    pub fn receive(&self, frame: &mut [u8]) -> Result<Received, VnetError> {
        let gso_size = match self.gso_type & !GSO_ECN {
            GSO_NONE => None,
            GSO_TCPV4 | GSO_TCPV6 if self.gso_size == 0 => return Err(VnetError::GsoSize),
            GSO_TCPV4 | GSO_TCPV6 => Some(self.gso_size),
            _ => return Err(VnetError::GsoType),
        };
        let partial = self.flags & F_NEEDS_CSUM != 0;
        let valid = self.flags & F_DATA_VALID != 0;
        if gso_size.is_some() && !partial && !valid {
            return Err(VnetError::GsoUnchecked);
        }
        if partial {
            let start = usize::from(self.csum_start);
            let field = start + usize::from(self.csum_offset);
            if start >= frame.len() || field + 2 > frame.len() {
                return Err(VnetError::CsumRange);
            }
            if gso_size.is_none() {
                let sum = !sum16(&frame[start..]);
                frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
            }
        }
        Ok(Received {
            verified: partial || valid,
            gso_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::{self, testframes, RxCheck};
    use crate::gso::Segments;

    #[test]
    fn header_round_trips() {
        let h = Header {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut b = [0u8; LEN];
        h.emit(&mut b);
        assert_eq!(Header::parse(&b), Ok(h));
        assert_eq!(Header::parse(&b[..9]), Err(VnetError::Short));
    }

    /// A TCP frame whose checksum field holds only the pseudo-header's
    /// sum, as Linux hands one up with `NEEDS_CSUM`.
    fn partial_tcp4(payload: &[u8]) -> (Vec<u8>, Header) {
        let mut f = testframes::tcp4(payload, &testframes::with_checksums());
        let cut = Segments::new(&f, 1000, 1500).unwrap().for_device(&mut f);
        let mut h = Header::tso(&cut);
        h.gso_type = GSO_NONE;
        (f, h)
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let (mut f, h) = partial_tcp4(b"hello, partial world");
        assert_eq!(csum::check_rx(&f), Ok(RxCheck::Bad));
        let got = h.receive(&mut f).unwrap();
        assert_eq!(
            got,
            Received {
                verified: true,
                gso_size: None
            }
        );
        assert_eq!(csum::check_rx(&f), Ok(RxCheck::Verified));
    }

    #[test]
    fn a_partial_checksum_outside_the_frame_is_refused() {
        let (mut f, mut h) = partial_tcp4(b"x");
        h.csum_offset = f.len() as u16;
        assert_eq!(h.receive(&mut f), Err(VnetError::CsumRange));
        h.csum_start = f.len() as u16;
        h.csum_offset = 0;
        assert_eq!(h.receive(&mut f), Err(VnetError::CsumRange));
        h.csum_start = u16::MAX;
        h.csum_offset = u16::MAX;
        assert_eq!(h.receive(&mut f), Err(VnetError::CsumRange));
    }

    #[test]
    fn gso_frames_must_be_tcp_and_checked() {
        let (mut f, h) = partial_tcp4(&[7u8; 3000]);
        let gso = Header {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            ..h
        };
        assert_eq!(
            gso.receive(&mut f.clone()),
            Ok(Received {
                verified: true,
                gso_size: Some(1000)
            })
        );
        let udp = Header {
            gso_type: GSO_UDP,
            ..gso
        };
        assert_eq!(udp.receive(&mut f), Err(VnetError::GsoType));
        let zero = Header { gso_size: 0, ..gso };
        assert_eq!(zero.receive(&mut f), Err(VnetError::GsoSize));
        let unchecked = Header { flags: 0, ..gso };
        assert_eq!(unchecked.receive(&mut f), Err(VnetError::GsoUnchecked));
        let valid = Header {
            flags: F_DATA_VALID,
            ..gso
        };
        assert!(valid.receive(&mut f).unwrap().verified);
    }

    #[test]
    fn a_plain_frame_is_not_verified() {
        let mut f = testframes::tcp4(b"plain", &testframes::with_checksums());
        let got = Header::default().receive(&mut f).unwrap();
        assert_eq!(got, Received::default());
    }
}
