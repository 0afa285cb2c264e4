//! The TCP header with the options capnet's engine speaks (RFC 9293 3.1,
//! MSS; RFC 7323 window scale and timestamps; RFC 2018 SACK): one parse,
//! one emit.
//!
//! Parsing is total: any byte string gives a header or a typed error,
//! never a panic. Unknown options are skipped by their length; a malformed
//! known option is an error (RFC 9293 3.1: "a TCP implementation MUST be
//! prepared to handle an illegal option length ... by resetting the
//! connection"; the engine drops the segment and counts it).

use super::SeqNumber;
use std::fmt;

/// The control bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }

    pub fn fin(self) -> bool {
        self.has(Flags::FIN)
    }
    pub fn syn(self) -> bool {
        self.has(Flags::SYN)
    }
    pub fn rst(self) -> bool {
        self.has(Flags::RST)
    }
    pub fn ack(self) -> bool {
        self.has(Flags::ACK)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Flags, char); 8] = [
            (Flags::SYN, 'S'),
            (Flags::FIN, 'F'),
            (Flags::RST, 'R'),
            (Flags::PSH, 'P'),
            (Flags::ACK, '.'),
            (Flags::URG, 'U'),
            (Flags::ECE, 'E'),
            (Flags::CWR, 'W'),
        ];
        for (flag, c) in NAMES {
            if self.has(flag) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A SACK block: `[start, end)` received above the cumulative ACK.
pub type SackBlock = (SeqNumber, SeqNumber);

/// At most four SACK blocks fit in 40 bytes of options (RFC 2018 3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// A TCP header and its options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    /// Meaningful only with [`Flags::ACK`].
    pub ack: SeqNumber,
    pub flags: Flags,
    /// As on the wire: not yet scaled.
    pub window: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    pub sack: [SackBlock; MAX_SACK_BLOCKS],
    pub sack_len: u8,
}

/// Why a byte string is not a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than 20 bytes, or than its data offset says.
    Truncated,
    /// A data offset below 5 words.
    BadDataOffset,
    /// A known option with the wrong length, or one running past the header.
    BadOption(u8),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Truncated => write!(f, "TCP header truncated"),
            HeaderError::BadDataOffset => write!(f, "TCP data offset below 5"),
            HeaderError::BadOption(kind) => write!(f, "TCP option {kind} malformed"),
        }
    }
}

mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Header {
    /// The SACK blocks carried.
    pub fn sack_blocks(&self) -> &[SackBlock] {
        &self.sack[..usize::from(self.sack_len).min(MAX_SACK_BLOCKS)]
    }

    /// Adds a SACK block; false when no room is left.
    pub fn push_sack(&mut self, block: SackBlock) -> bool {
        let n = usize::from(self.sack_len);
        if n >= MAX_SACK_BLOCKS {
            return false;
        }
        self.sack[n] = block;
        self.sack_len += 1;
        true
    }

    /// The number of sequence numbers the segment occupies: payload plus
    /// one each for SYN and FIN.
    pub fn seq_len(&self, payload: usize) -> usize {
        payload + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Parses `segment` (the TCP header and payload); returns the header
    /// and where the payload starts. The checksum is not checked here.
    pub fn parse(segment: &[u8]) -> Result<(Header, usize), HeaderError> {
        if segment.len() < 20 {
            return Err(HeaderError::Truncated);
        }
        let offset = usize::from(segment[12] >> 4) * 4;
        if offset < 20 {
            return Err(HeaderError::BadDataOffset);
        }
        if segment.len() < offset {
            return Err(HeaderError::Truncated);
        }
        let mut h = Header {
            src_port: be16(&segment[0..]),
            dst_port: be16(&segment[2..]),
            seq: SeqNumber(be32(&segment[4..])),
            ack: SeqNumber(be32(&segment[8..])),
            flags: Flags(segment[13]),
            window: be16(&segment[14..]),
            ..Header::default()
        };
        h.parse_options(&segment[20..offset])?;
        Ok((h, offset))
    }

    fn parse_options(&mut self, mut opts: &[u8]) -> Result<(), HeaderError> {
        while let Some(&kind) = opts.first() {
            match kind {
                option::END => break,
                option::NOP => {
                    opts = &opts[1..];
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*opts.get(1).ok_or(HeaderError::BadOption(kind))?);
            if len < 2 || len > opts.len() {
                return Err(HeaderError::BadOption(kind));
            }
            let body = &opts[2..len];
            match (kind, body.len()) {
                (option::MSS, 2) => self.mss = Some(be16(body)),
                // RFC 7323 2.3: a shift above 14 is taken as 14.
                (option::WINDOW_SCALE, 1) => self.window_scale = Some(body[0].min(14)),
                (option::SACK_PERMITTED, 0) => self.sack_permitted = true,
                (option::SACK, n) if n % 8 == 0 && n > 0 => {
                    for block in body.chunks_exact(8).take(MAX_SACK_BLOCKS) {
                        self.push_sack((SeqNumber(be32(block)), SeqNumber(be32(&block[4..]))));
                    }
                }
                (option::TIMESTAMP, 8) => self.timestamp = Some((be32(body), be32(&body[4..]))),
                (option::MSS | option::WINDOW_SCALE | option::SACK_PERMITTED, _)
                | (option::SACK | option::TIMESTAMP, _) => {
                    return Err(HeaderError::BadOption(kind))
                }
                _ => {}
            }
            opts = &opts[len..];
        }
        Ok(())
    }

    fn options_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + 3
        }
        if self.sack_permitted && self.timestamp.is_none() {
            n += 4; // NOP NOP + 2
        }
        if self.timestamp.is_some() {
            n += 12; // (SACK-permitted or NOP NOP) + 10
        }
        let sacks = usize::from(self.sack_len).min(self.max_sack_blocks());
        if sacks > 0 {
            n += 4 + 8 * sacks; // NOP NOP + 2 + blocks
        }
        n
    }

    /// How many SACK blocks fit beside the other options (RFC 2018 3).
    fn max_sack_blocks(&self) -> usize {
        let mut room = 40 - 4; // NOP NOP kind len
        if self.mss.is_some() {
            room -= 4;
        }
        if self.window_scale.is_some() {
            room -= 4;
        }
        if self.timestamp.is_some() {
            room -= 12;
        }
        (room / 8).min(MAX_SACK_BLOCKS)
    }

    /// The header's length with its options (a multiple of 4, at most 60).
    pub fn header_len(&self) -> usize {
        20 + self.options_len()
    }

    /// Writes the header into the front of `buf` (at least
    /// [`header_len`](Self::header_len) bytes) with a zero checksum; returns
    /// its length. SACK blocks beyond what fits are left out.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.header_len();
        let b = &mut buf[..len];
        b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
        let ack = if self.flags.ack() { self.ack.0 } else { 0 };
        b[8..12].copy_from_slice(&ack.to_be_bytes());
        b[12] = ((len / 4) as u8) << 4;
        b[13] = self.flags.0;
        b[14..16].copy_from_slice(&self.window.to_be_bytes());
        b[16..20].fill(0);
        let mut o = 20;
        let mut put = |bytes: &[u8]| {
            b[o..o + bytes.len()].copy_from_slice(bytes);
            o += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[option::MSS, 4, m[0], m[1]]);
        }
        if self.timestamp.is_none() && self.sack_permitted {
            put(&[option::NOP, option::NOP, option::SACK_PERMITTED, 2]);
        }
        if let Some((val, ecr)) = self.timestamp {
            if self.sack_permitted {
                put(&[option::SACK_PERMITTED, 2]);
            } else {
                put(&[option::NOP, option::NOP]);
            }
            put(&[option::TIMESTAMP, 10]);
            put(&val.to_be_bytes());
            put(&ecr.to_be_bytes());
        }
        if let Some(shift) = self.window_scale {
            put(&[option::NOP, option::WINDOW_SCALE, 3, shift]);
        }
        let sacks = usize::from(self.sack_len).min(self.max_sack_blocks());
        if sacks > 0 {
            put(&[
                option::NOP,
                option::NOP,
                option::SACK,
                (2 + 8 * sacks) as u8,
            ]);
            for (start, end) in &self.sack[..sacks] {
                put(&start.0.to_be_bytes());
                put(&end.0.to_be_bytes());
            }
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, TcpPacket, TcpRepr};

    fn full() -> Header {
        let mut h = Header {
            src_port: 40000,
            dst_port: 443,
            seq: SeqNumber(0xffff_fff0),
            ack: SeqNumber(7),
            flags: Flags::SYN | Flags::ACK,
            window: 65535,
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((1, 2)),
            ..Header::default()
        };
        h.push_sack((SeqNumber(100), SeqNumber(200)));
        h
    }

    #[test]
    fn round_trips_through_its_own_parse_and_smoltcps() {
        let mut variants = vec![full(), Header::default()];
        let mut no_ts = full();
        no_ts.timestamp = None;
        variants.push(no_ts);
        let mut sacks = full();
        sacks.mss = None;
        sacks.window_scale = None;
        sacks.sack_permitted = false;
        sacks.push_sack((SeqNumber(300), SeqNumber(400)));
        sacks.push_sack((SeqNumber(500), SeqNumber(600)));
        variants.push(sacks);
        for h in variants {
            let mut buf = [0u8; 60];
            let n = h.emit(&mut buf);
            assert_eq!(n, h.header_len());
            assert_eq!(n % 4, 0);
            let (back, offset) = Header::parse(&buf[..n]).unwrap();
            assert_eq!(offset, n);
            let mut expected = h;
            if !h.flags.ack() {
                expected.ack = SeqNumber(0);
            }
            assert_eq!(back, expected);
            // An independent parser agrees on the options it knows.
            let p = TcpPacket::new_checked(&buf[..n]).unwrap();
            let any = IpAddress::v4(1, 1, 1, 1);
            let caps = smoltcp::phy::ChecksumCapabilities::ignored();
            if h.src_port != 0 {
                let r = TcpRepr::parse(&p, &any, &any, &caps).unwrap();
                assert_eq!(r.max_seg_size, h.mss);
                assert_eq!(r.window_scale, h.window_scale);
                assert_eq!(r.sack_permitted, h.sack_permitted);
                assert_eq!(r.timestamp.map(|t| (t.tsval, t.tsecr)), h.timestamp);
            }
        }
    }

    #[test]
    fn four_sack_blocks_fit_only_without_timestamps() {
        let mut h = Header::default();
        for i in 0..4 {
            assert!(h.push_sack((SeqNumber(i * 100), SeqNumber(i * 100 + 50))));
        }
        assert!(!h.push_sack((SeqNumber(1), SeqNumber(2))));
        assert_eq!(h.header_len(), 20 + 4 + 32);
        h.timestamp = Some((5, 6));
        let mut buf = [0u8; 60];
        let n = h.emit(&mut buf);
        assert!(n <= 60);
        let (back, _) = Header::parse(&buf[..n]).unwrap();
        assert_eq!(back.sack_blocks().len(), 3);
    }

    #[test]
    fn hostile_bytes_give_errors_not_panics() {
        assert_eq!(Header::parse(&[0; 19]), Err(HeaderError::Truncated));
        let mut b = [0u8; 24];
        b[12] = 4 << 4;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadDataOffset));
        b[12] = 6 << 4;
        b[20] = option::MSS;
        b[21] = 9;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadOption(option::MSS)));
        b[21] = 3;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadOption(option::MSS)));
        b[20] = 99;
        b[21] = 0;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadOption(99)));
        // An unknown option of good length is skipped.
        b[21] = 4;
        assert!(Header::parse(&b).is_ok());
        // Window scale above 14 is 14.
        b[20] = option::WINDOW_SCALE;
        b[21] = 3;
        b[22] = 200;
        b[23] = option::END;
        assert_eq!(Header::parse(&b).unwrap().0.window_scale, Some(14));
        // Every 1- and 2-byte corruption of a full header parses or errs.
        let mut buf = [0u8; 60];
        let n = full().emit(&mut buf);
        for i in 0..n {
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut c = buf;
                c[i] = v;
                let _ = Header::parse(&c[..n]);
                let _ = Header::parse(&c[..i]);
            }
        }
    }
}
