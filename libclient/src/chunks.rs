//! The receive side of a ring stream: plain bytes, or marked chunks once
//! TLS RX offload switched it (see net.capnp `RxChunk`).
//!
//! From `ringOffset` on, netsrv writes chunks of `[header][data]` into the
//! receive ring (`capnet_wire::chunk` owns the format). [`Down`] hands out
//! plain bytes up to the switch and, from there on, the data of at most one
//! chunk per read with its flag. A header may arrive in pieces (and across
//! the ring's wrap); the pieces are kept until it is whole.

use capnet_ring::bytering::{ByteMem, DefaultBytes};
use capnet_ring::{ByteReader, RingError};
use capnet_wire::chunk::{ChunkHeader, HEADER_LEN as HEADER};
use std::io;

pub(crate) fn ring_err(e: RingError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("socket ring: {e}"))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// The header of a chunk of `len` bytes (for tests and fakes).
#[cfg(test)]
pub(crate) fn header(len: usize, decrypted: bool) -> [u8; HEADER] {
    ChunkHeader {
        len: len as u16,
        decrypted,
    }
    .to_bytes()
}

/// The down ring and where its reader stands.
pub struct Down<M: ByteMem = DefaultBytes> {
    pub ring: ByteReader<M>,
    /// Bytes taken out of the ring so far (headers included): the
    /// receive-ring position of the next byte.
    consumed: u64,
    /// Stream bytes handed out so far (headers not counted).
    data: u64,
    /// Where marked chunks begin; `None`: plain bytes throughout.
    chunks_from: Option<u64>,
    /// A header read in part.
    header: [u8; HEADER],
    header_len: usize,
    /// Data bytes of the current chunk not read yet.
    left: usize,
    decrypted: bool,
    /// An RX offload call is on its way: where chunks begin is not known
    /// yet, so nothing is read.
    switching: bool,
    /// Reads fail from now on (a malformed header; lost framing).
    broken: Option<String>,
}

/// How an RX switch ended.
pub enum SwitchEnd {
    /// Marked chunks from this receive-ring position on.
    Chunks(u64),
    /// The call failed and netsrv left the ring as it was.
    Unchanged,
    /// Nobody knows whether netsrv switched (the call timed out).
    Unknown,
}

impl<M: ByteMem> Down<M> {
    pub fn new(ring: ByteReader<M>) -> Down<M> {
        Down {
            ring,
            consumed: 0,
            data: 0,
            chunks_from: None,
            header: [0; HEADER],
            header_len: 0,
            left: 0,
            decrypted: false,
            switching: false,
            broken: None,
        }
    }

    /// The receive-ring position of the next byte (bytes consumed so far).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Stream bytes handed out so far (chunk headers not counted): the
    /// stream offset of the next byte.
    pub fn data_read(&self) -> u64 {
        self.data
    }

    /// Where marked chunks begin, once known.
    pub fn chunks_from(&self) -> Option<u64> {
        self.chunks_from
    }

    /// An RX switch is on its way (see [`Self::begin_switch`]).
    pub fn switching(&self) -> bool {
        self.switching
    }

    /// Reads stop until [`Self::end_switch`]: the switch position is on
    /// its way.
    pub fn begin_switch(&mut self) {
        self.switching = true;
    }

    pub fn end_switch(&mut self, end: SwitchEnd) -> io::Result<()> {
        self.switching = false;
        match end {
            SwitchEnd::Unchanged => Ok(()),
            SwitchEnd::Unknown => {
                let why = "capnet: the receive side's framing is unknown (offload timed out)";
                self.broken = Some(why.into());
                Err(io::Error::new(io::ErrorKind::TimedOut, why))
            }
            // Chunk mode, once on, stays on: a second RX offload answers
            // the same position.
            SwitchEnd::Chunks(at) if self.chunks_from == Some(at) => Ok(()),
            SwitchEnd::Chunks(at) => {
                let why = match self.chunks_from {
                    Some(was) => format!(
                        "capnet: marked chunks begin at ring offset {at}, but began at {was}"
                    ),
                    None if at < self.consumed => format!(
                        "capnet: marked chunks begin at ring offset {at}, already read up to {}",
                        self.consumed
                    ),
                    None => {
                        self.chunks_from = Some(at);
                        return Ok(());
                    }
                };
                self.broken = Some(why.clone());
                Err(invalid(&why))
            }
        }
    }

    /// Some bytes of one kind (plain, or one chunk's data with its flag),
    /// or `None` when nothing is readable now. `buf` is not empty.
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
        if let Some(why) = &self.broken {
            return Err(invalid(why));
        }
        if self.switching {
            return Ok(None);
        }
        match self.chunks_from {
            Some(from) if self.consumed >= from => self.read_chunk(buf),
            limit => {
                // Plain bytes, never past the start of the chunks.
                let max = match limit {
                    Some(from) => (from - self.consumed).min(buf.len() as u64) as usize,
                    None => buf.len(),
                };
                let n = self.ring.read(&mut buf[..max]).map_err(ring_err)?;
                self.consumed += n as u64;
                self.data += n as u64;
                Ok((n > 0).then_some((n, false)))
            }
        }
    }

    fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
        if self.left == 0 {
            while self.header_len < HEADER {
                let n = self
                    .ring
                    .read(&mut self.header[self.header_len..])
                    .map_err(ring_err)?;
                if n == 0 {
                    return Ok(None);
                }
                self.consumed += n as u64;
                self.header_len += n;
            }
            self.header_len = 0;
            let h = match ChunkHeader::parse(self.header) {
                Ok(h) => h,
                Err(e) => {
                    let why = format!(
                        "capnet: malformed receive chunk at ring offset {}: {e}",
                        self.consumed - HEADER as u64
                    );
                    self.broken = Some(why.clone());
                    return Err(invalid(&why));
                }
            };
            self.left = usize::from(h.len);
            self.decrypted = h.decrypted;
        }
        let max = self.left.min(buf.len());
        let n = self.ring.read(&mut buf[..max]).map_err(ring_err)?;
        self.consumed += n as u64;
        self.data += n as u64;
        self.left -= n;
        Ok((n > 0).then_some((n, self.decrypted)))
    }

    /// The end of the stream came inside a chunk (a header or data
    /// missing).
    pub fn mid_chunk(&self) -> bool {
        self.left > 0 || self.header_len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capnet_ring::bytering::{heap, HeapBytes};
    use capnet_ring::ByteWriter;
    use capnet_wire::chunk::MAX_LEN;

    fn ring(cap: u32) -> (ByteWriter<HeapBytes>, Down<HeapBytes>) {
        let (w, r) = heap(cap).unwrap();
        (w, Down::new(r))
    }

    /// Everything readable now, as (bytes, flag) runs merged by flag.
    fn drain(down: &mut Down<HeapBytes>, step: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut buf = vec![0u8; step];
        while let Some((n, d)) = down.read_some(&mut buf).unwrap() {
            assert!(n > 0 && n <= step);
            match out.last_mut() {
                Some((bytes, flag)) if *flag == d => bytes.extend_from_slice(&buf[..n]),
                _ => out.push((buf[..n].to_vec(), d)),
            }
        }
        out
    }

    #[test]
    fn plain_without_switch() {
        let (mut w, mut down) = ring(64);
        w.write(b"hello").unwrap();
        assert_eq!(drain(&mut down, 3), vec![(b"hello".to_vec(), false)]);
        assert_eq!(down.consumed(), 5);
    }

    #[test]
    fn plain_stops_at_the_switch_then_chunks() {
        let (mut w, mut down) = ring(64);
        w.write(b"plain").unwrap();
        down.begin_switch();
        let mut buf = [0u8; 64];
        assert!(
            down.read_some(&mut buf).unwrap().is_none(),
            "read while switching"
        );
        down.end_switch(SwitchEnd::Chunks(5)).unwrap();
        w.write(&header(3, true)).unwrap();
        w.write(b"abc").unwrap();
        w.write(&header(2, false)).unwrap();
        w.write(b"de").unwrap();
        // A large buffer still stops at the switch, then at each chunk.
        assert_eq!(down.read_some(&mut buf).unwrap(), Some((5, false)));
        assert_eq!(&buf[..5], b"plain");
        assert_eq!(down.read_some(&mut buf).unwrap(), Some((3, true)));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(down.read_some(&mut buf).unwrap(), Some((2, false)));
        assert_eq!(&buf[..2], b"de");
        assert_eq!(down.read_some(&mut buf).unwrap(), None);
        assert_eq!(down.consumed(), 5 + 4 + 3 + 4 + 2);
        assert_eq!(down.data_read(), 5 + 3 + 2);
        assert!(!down.mid_chunk());
    }

    #[test]
    fn switch_ahead_of_the_reader() {
        // netsrv had written more plain bytes than the reader took.
        let (mut w, mut down) = ring(64);
        w.write(b"0123456789").unwrap();
        w.write(&header(1, true)).unwrap();
        w.write(b"x").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(down.read_some(&mut buf).unwrap(), Some((4, false)));
        down.end_switch(SwitchEnd::Chunks(10)).unwrap();
        assert_eq!(
            drain(&mut down, 64),
            vec![(b"456789".to_vec(), false), (b"x".to_vec(), true)]
        );
    }

    #[test]
    fn headers_split_and_wrapping() {
        // A 32-byte ring: chunks of 7..13 bytes wrap at every position.
        let (mut w, mut down) = ring(32);
        down.end_switch(SwitchEnd::Chunks(0)).unwrap();
        let mut expect: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut byte = 0u8;
        for i in 0..200usize {
            let len = 3 + i % 7;
            let decrypted = i % 3 != 0;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    byte = byte.wrapping_add(1);
                    byte
                })
                .collect();
            let mut chunk = header(len, decrypted).to_vec();
            chunk.extend_from_slice(&data);
            // Published a byte or two at a time: headers arrive in pieces.
            for piece in chunk.chunks(1 + i % 2) {
                assert_eq!(w.write(piece).unwrap(), piece.len());
                got.extend(drain(&mut down, 1 + i % 5));
            }
            expect.push((data, decrypted));
        }
        let merge = |runs: Vec<(Vec<u8>, bool)>| {
            let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
            for (b, d) in runs {
                match out.last_mut() {
                    Some((bytes, flag)) if *flag == d => bytes.extend_from_slice(&b),
                    _ => out.push((b, d)),
                }
            }
            out
        };
        assert_eq!(merge(got), merge(expect));
        assert!(!down.mid_chunk());
    }

    #[test]
    fn malformed_headers() {
        for bad in [0u32, 0x1_0000, 0x0100_0001, 0x4000_0001, 0x8000_0000] {
            let (mut w, mut down) = ring(64);
            down.end_switch(SwitchEnd::Chunks(0)).unwrap();
            w.write(&bad.to_le_bytes()).unwrap();
            w.write(b"data").unwrap();
            let e = down.read_some(&mut [0u8; 16]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:#x}");
            // The framing is lost for good.
            let e = down.read_some(&mut [0u8; 16]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // The largest length is fine.
        let (mut w, mut down) = ring(1 << 17);
        down.end_switch(SwitchEnd::Chunks(0)).unwrap();
        w.write(&header(MAX_LEN, true)).unwrap();
        w.write(&vec![7u8; MAX_LEN]).unwrap();
        let runs = drain(&mut down, 4096);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0.len(), MAX_LEN);
        assert!(runs[0].1);
    }

    #[test]
    fn mid_chunk_and_switch_endings() {
        let (mut w, mut down) = ring(64);
        down.end_switch(SwitchEnd::Chunks(0)).unwrap();
        w.write(&header(4, false)[..2]).unwrap();
        assert_eq!(down.read_some(&mut [0u8; 8]).unwrap(), None);
        assert!(down.mid_chunk());
        w.write(&header(4, false)[2..]).unwrap();
        w.write(b"ab").unwrap();
        assert_eq!(down.read_some(&mut [0u8; 8]).unwrap(), Some((2, false)));
        assert!(down.mid_chunk());

        // A second switch to the same place is fine; elsewhere it is not.
        down.end_switch(SwitchEnd::Chunks(0)).unwrap();
        assert!(down.end_switch(SwitchEnd::Chunks(9)).is_err());
        assert!(down.read_some(&mut [0u8; 8]).is_err());

        // A switch behind the reader, or an unknown one, breaks the stream.
        let (mut w, mut down) = ring(64);
        w.write(b"abc").unwrap();
        drain(&mut down, 8);
        assert!(down.end_switch(SwitchEnd::Chunks(2)).is_err());
        assert!(down.read_some(&mut [0u8; 8]).is_err());
        let (_w, mut down) = ring(64);
        down.begin_switch();
        let e = down.end_switch(SwitchEnd::Unknown).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(down.read_some(&mut [0u8; 8]).is_err());
        let (_w, mut down) = ring(64);
        down.begin_switch();
        down.end_switch(SwitchEnd::Unchanged).unwrap();
        assert_eq!(down.read_some(&mut [0u8; 8]).unwrap(), None);
    }
}
