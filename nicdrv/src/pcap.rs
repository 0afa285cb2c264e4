//! Classic pcap capture (LINKTYPE_ETHERNET, microsecond timestamps), as read
//! by tcpdump, tshark and scapy.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MAGIC_USEC: u32 = 0xa1b2_c3d4;
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Large enough for a 65535-byte MTU frame, so nothing is ever cut.
pub const SNAPLEN: u32 = 262_144;
/// How often buffered records reach the file at the latest.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

pub struct PcapWriter<W: Write> {
    out: W,
    dirty: bool,
}

/// The global header this writer uses (native byte order, as libpcap does).
fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_USEC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// How a capture was reopened by [`PcapWriter::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopened {
    /// Records after the existing ones; `torn` bytes of a record cut short
    /// (a writer killed mid-record) were cut off first.
    Appended { records: u64, torn: u64 },
    /// Not a capture of this format (or empty): started anew.
    Started,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let f = File::create(path)?;
        let mut w = PcapWriter::new(BufWriter::with_capacity(256 * 1024, f))?;
        w.flush()?;
        Ok(w)
    }

    /// Continues the capture at `path` (a restarted driver's): after its
    /// last whole record, cutting off a record its killed writer left
    /// half written. A file that is not such a capture starts anew.
    pub fn append(path: &Path) -> io::Result<(Self, Reopened)> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = f.metadata()?.len();
        let mut header = [0u8; 24];
        let ours = len >= 24 && f.read_exact(&mut header).is_ok() && header == file_header();
        if !ours {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            let mut w = PcapWriter::new(BufWriter::with_capacity(256 * 1024, f))?;
            w.flush()?;
            return Ok((w, Reopened::Started));
        }
        // Walk the record headers to the end of the last whole record.
        // (The reader stands after the file header.)
        let mut r = BufReader::new(&mut f);
        let (mut at, mut records) = (24u64, 0u64);
        let mut h = [0u8; 16];
        while at + 16 <= len {
            r.read_exact(&mut h)?;
            let incl = u64::from(u32::from_ne_bytes([h[8], h[9], h[10], h[11]]));
            if incl > u64::from(SNAPLEN) || at + 16 + incl > len {
                break;
            }
            // Within the buffer where it can: no syscall per record.
            r.seek_relative(incl as i64)?;
            at += 16 + incl;
            records += 1;
        }
        drop(r);
        f.set_len(at)?;
        f.seek(SeekFrom::Start(at))?;
        let w = PcapWriter {
            out: BufWriter::with_capacity(256 * 1024, f),
            dirty: false,
        };
        Ok((
            w,
            Reopened::Appended {
                records,
                torn: len - at,
            },
        ))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&file_header())?;
        Ok(PcapWriter { out, dirty: true })
    }

    /// Appends one frame, captured at `ts`.
    pub fn record(&mut self, ts: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let incl = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_ne_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl])?;
        self.dirty = true;
        Ok(())
    }

    /// Whether records were written since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.dirty = false;
        Ok(())
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// One record read back (for tests and tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub secs: u32,
    pub micros: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Parses a classic pcap file written in either byte order.
pub fn parse(bytes: &[u8]) -> Result<(u32, Vec<Record>), String> {
    let (linktype, records, torn) = parse_live(bytes)?;
    let at = bytes.len() - torn;
    match torn {
        0 => Ok((linktype, records)),
        1..16 => Err(format!("truncated record header at {at}")),
        _ => Err(format!("truncated record at {at}")),
    }
}

/// Parses a capture a driver may still be writing: its records up to the
/// last whole one, and the bytes after it (a record half written — the
/// writer's buffer reaches the file in pieces).
pub fn parse_live(bytes: &[u8]) -> Result<(u32, Vec<Record>, usize), String> {
    if bytes.len() < 24 {
        return Err("shorter than the pcap header".into());
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default());
    let le = match magic {
        MAGIC_USEC => true,
        m if m.swap_bytes() == MAGIC_USEC => false,
        m => return Err(format!("bad magic {m:#x}")),
    };
    let u32_at = |at: usize| -> u32 {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap_or_default();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20);
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        if at + 16 > bytes.len() {
            break;
        }
        let incl = u32_at(at + 8) as usize;
        let Some(data) = bytes.get(at + 16..at + 16 + incl) else {
            break;
        };
        let rec = Record {
            secs: u32_at(at),
            micros: u32_at(at + 4),
            orig_len: u32_at(at + 12),
            data: data.to_vec(),
        };
        out.push(rec);
        at += 16 + incl;
    }
    Ok((linktype, out, bytes.len() - at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        w.record(t, &[1, 2, 3]).unwrap();
        w.record(t + Duration::from_micros(1), &[9; 60]).unwrap();
        assert!(w.is_dirty());
        w.flush().unwrap();
        assert!(!w.is_dirty());
        let bytes = w.get_ref().clone();
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 60);
        // The global header, field by field (native order; this test runs little-endian).
        if cfg!(target_endian = "little") {
            assert_eq!(
                &bytes[..24],
                &[
                    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0,
                    0, 0
                ]
            );
        }
        let (lt, recs) = parse(&bytes).unwrap();
        assert_eq!(lt, LINKTYPE_ETHERNET);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            Record {
                secs: 1_700_000_000,
                micros: 123_456,
                orig_len: 3,
                data: vec![1, 2, 3]
            }
        );
        assert_eq!(recs[1].micros, 123_457);
        assert_eq!(recs[1].data, vec![9; 60]);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(&[0; 10]).is_err());
        assert!(parse(&[0; 24]).unwrap_err().contains("magic"));
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.record(UNIX_EPOCH, &[1, 2, 3, 4]).unwrap();
        let mut b = w.get_ref().clone();
        b.pop();
        assert!(parse(&b).unwrap_err().contains("truncated"));
    }

    #[test]
    fn a_restarted_writer_appends_after_the_last_whole_record() {
        let dir = std::env::temp_dir().join(format!("nicdrv-pcap-append-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut w = PcapWriter::create(&path).unwrap();
        w.record(SystemTime::now(), &[1; 60]).unwrap();
        w.record(SystemTime::now(), &[2; 70]).unwrap();
        w.flush().unwrap();
        drop(w);
        // A writer killed half way through a third record.
        let mut torn = std::fs::read(&path).unwrap();
        let mut third = PcapWriter::new(Vec::new()).unwrap();
        third.record(SystemTime::now(), &[3; 80]).unwrap();
        torn.extend_from_slice(&third.get_ref()[24..24 + 16 + 30]);
        std::fs::write(&path, &torn).unwrap();

        let (mut w, how) = PcapWriter::append(&path).unwrap();
        assert_eq!(
            how,
            Reopened::Appended {
                records: 2,
                torn: 46
            }
        );
        w.record(SystemTime::now(), &[4; 90]).unwrap();
        w.flush().unwrap();
        let (_, recs) = parse(&std::fs::read(&path).unwrap()).unwrap();
        let firsts: Vec<(u8, usize)> = recs.iter().map(|r| (r.data[0], r.data.len())).collect();
        assert_eq!(firsts, [(1, 60), (2, 70), (4, 90)]);

        // Something else at that path: a capture starts anew.
        std::fs::write(&path, b"not a capture at all, no").unwrap();
        let (mut w, how) = PcapWriter::append(&path).unwrap();
        assert_eq!(how, Reopened::Started);
        w.record(SystemTime::now(), &[5; 10]).unwrap();
        w.flush().unwrap();
        let (_, recs) = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(recs.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_is_readable_after_flush() {
        let dir = std::env::temp_dir().join(format!("nicdrv-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut w = PcapWriter::create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        w.record(SystemTime::now(), &[0xaa; 100]).unwrap();
        w.flush().unwrap();
        let (_, recs) = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(recs.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
