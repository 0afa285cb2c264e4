//! The marked receive chunk: how netsrv tells a client which bytes of its
//! receive ring the NIC decrypted (TLS RX offload).
//!
//! From the ring offset that `TcpSocket.offload` names, the receive ring
//! carries chunks of `[header][data]`. The header is a little-endian u32:
//! bits 0..23 are the data length (1..=65535), bit 31 is set when the NIC
//! decrypted every TLS byte of the data, bits 24..30 are zero. netsrv
//! writes them, libclient reads them; the ring is shared memory the other
//! side can write, so a reader parses a private copy and trusts nothing.

/// Bytes of a header.
pub const HEADER_LEN: usize = 4;
/// Largest data length of one chunk.
pub const MAX_LEN: usize = 0xffff;

const DECRYPTED: u32 = 1 << 31;
const LEN_MASK: u32 = 0x00ff_ffff;
const RESERVED: u32 = !(LEN_MASK | DECRYPTED);

/// One chunk's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Data bytes that follow (1..=[`MAX_LEN`]).
    pub len: u16,
    /// The NIC decrypted every TLS byte of the data.
    pub decrypted: bool,
}

/// Why four bytes are not a chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A reserved bit is set (the raw header).
    Reserved(u32),
    /// The length is 0 or above [`MAX_LEN`] (the raw header).
    Length(u32),
}

impl core::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChunkError::Reserved(h) => write!(f, "reserved bits set in chunk header {h:#010x}"),
            ChunkError::Length(h) => write!(
                f,
                "chunk header {h:#010x} gives a length outside 1..={MAX_LEN}"
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

impl ChunkHeader {
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = u32::from(self.len);
        if self.decrypted {
            h |= DECRYPTED;
        }
        h.to_le_bytes()
    }

    pub fn parse(bytes: [u8; HEADER_LEN]) -> Result<ChunkHeader, ChunkError> {
        let h = u32::from_le_bytes(bytes);
        if h & RESERVED != 0 {
            return Err(ChunkError::Reserved(h));
        }
        match u16::try_from(h & LEN_MASK) {
            Ok(len) if len > 0 => Ok(ChunkHeader {
                len,
                decrypted: h & DECRYPTED != 0,
            }),
            _ => Err(ChunkError::Length(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for len in [1u16, 1400, u16::MAX] {
            for decrypted in [false, true] {
                let h = ChunkHeader { len, decrypted };
                assert_eq!(ChunkHeader::parse(h.to_bytes()), Ok(h));
            }
        }
        assert_eq!(
            u32::from_le_bytes(
                ChunkHeader {
                    len: 10,
                    decrypted: true
                }
                .to_bytes()
            ),
            0x8000_000a
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let raw = |h: u32| ChunkHeader::parse(h.to_le_bytes());
        assert_eq!(raw(0), Err(ChunkError::Length(0)));
        assert_eq!(raw(DECRYPTED), Err(ChunkError::Length(DECRYPTED)));
        assert_eq!(raw(0x1_0000), Err(ChunkError::Length(0x1_0000)));
        assert_eq!(raw(1 << 24 | 5), Err(ChunkError::Reserved(1 << 24 | 5)));
        assert!(raw(0x4000_0001)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
    }
}
