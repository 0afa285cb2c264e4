//! The tracker with a framing that is not TLS: NVMe/TCP-like PDUs, an
//! 8-byte common header (type, flags, header length, data offset, PDU
//! length little-endian at bytes 4..8), whose first 24 bytes (a
//! C2HData PDU's header) the engine wants before the data.

use super::*;

const CH_LEN: usize = 8;
const PSH_LEN: usize = 24;
const C2H_DATA: u8 = 0x07;

struct Pdus;

impl Framing for Pdus {
    fn header_len(&self) -> usize {
        CH_LEN
    }

    fn prefix_len(&self) -> usize {
        PSH_LEN
    }

    fn record_len(&self, hdr: &[u8]) -> Option<usize> {
        let plen = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
        let ok = hdr[0] <= 0x09 && usize::from(hdr[2]) <= plen && plen <= 1 << 20;
        ok.then_some(plen)
    }

    fn candidate_len(&self, hdr: &[u8]) -> Option<usize> {
        let c2h = hdr[0] == C2H_DATA && hdr[1] == 0 && usize::from(hdr[2]) == PSH_LEN;
        self.record_len(hdr).filter(|_| c2h)
    }
}

fn header(plen: usize) -> [u8; CH_LEN] {
    let mut h = [C2H_DATA, 0, PSH_LEN as u8, PSH_LEN as u8, 0, 0, 0, 0];
    h[4..].copy_from_slice(&(plen as u32).to_le_bytes());
    h
}

/// A stream of PDUs of these lengths (data bytes 0xaa, which is no PDU
/// type), and where each starts.
fn pdus(lens: &[usize]) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::new();
    let mut starts = Vec::new();
    for &len in lens {
        starts.push(stream.len());
        let mut pdu = vec![0xaa; len];
        pdu[..CH_LEN].copy_from_slice(&header(len));
        stream.extend_from_slice(&pdu);
    }
    starts.push(stream.len());
    (stream, starts)
}

/// What a walk over a stream saw.
#[derive(Debug, Default)]
struct Seen {
    /// (record index, its stream offset) of every record opened.
    records: Vec<(u64, usize)>,
    candidates: Vec<usize>,
    rejected: Vec<usize>,
    synced: usize,
    lost: usize,
}

/// Feeds `stream[r]` for each range `r` (from sequence `base`), and
/// answers candidates as the holder would, from `starts`. Checks that
/// each record's prefix and bytes are where they should be.
fn feed(
    t: &mut Tracker<Pdus>,
    base: SeqNumber,
    stream: &[u8],
    starts: &[usize],
    segs: impl IntoIterator<Item = Range<usize>>,
    seen: &mut Seen,
) {
    // The record opened last: index, length, prefix, bytes seen.
    let mut open: Option<(u64, usize, Prefix, usize)> = None;
    for seg in segs {
        let payload = &stream[seg.clone()];
        if t.arrive(base + seg.start, payload.len()).is_none() {
            continue;
        }
        if !t.in_sync() {
            // A gap: the open record is given up on.
            open = None;
        }
        while let Some(ev) = t.next(payload) {
            match ev {
                Event::Start { index, len, prefix } => {
                    assert!(open.is_none(), "{index}: previous record unfinished");
                    open = Some((index, len, prefix, PSH_LEN));
                }
                Event::Body { range, at, len } => {
                    let (index, rlen, prefix, seen_at) = open.as_mut().unwrap();
                    assert_eq!((at, len), (*seen_at, *rlen));
                    let start = seg.start + range.start - at;
                    if at == PSH_LEN {
                        seen.records.push((*index, start));
                        assert_eq!(starts[*index as usize], start);
                        assert_eq!(starts[*index as usize + 1] - start, len);
                        assert_eq!(&prefix[..], &stream[start..start + PSH_LEN]);
                    }
                    *seen_at += range.len();
                    if *seen_at == len {
                        open = None;
                    }
                }
                Event::Lost => {
                    seen.lost += 1;
                    open = None;
                }
                Event::Synced { .. } => {
                    assert!(open.is_none());
                    seen.synced += 1;
                }
                Event::Candidate { seq } => {
                    let at = (seq - base) as usize;
                    seen.candidates.push(at);
                    match starts.iter().position(|&s| s == at) {
                        Some(index) => t.confirm(seq, index as u64).unwrap(),
                        None => {
                            seen.rejected.push(at);
                            t.reject(seq).unwrap();
                        }
                    }
                }
            }
        }
    }
}

fn segments(len: usize, mss: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len).step_by(mss).map(move |s| s..(s + mss).min(len))
}

#[test]
fn follows_pdus_in_order_across_the_wrap() {
    let (stream, starts) = pdus(&[100, 2000, 64, 3000, 500, 1200, 800, 900]);
    // The stream crosses 2^32 in its second PDU.
    let base = SeqNumber(0xffff_ff00);
    for mss in [1, 7, 23, 24, 25, 1000, 1448, stream.len()] {
        let mut t = Tracker::new(Pdus, base, 0);
        let mut seen = Seen::default();
        feed(
            &mut t,
            base,
            &stream,
            &starts,
            segments(stream.len(), mss),
            &mut seen,
        );
        let want: Vec<_> = (0..8).map(|i| (i as u64, starts[i])).collect();
        assert_eq!(seen.records, want, "mss {mss}");
        assert!(seen.candidates.is_empty());
        assert!(t.in_sync());
        assert_eq!(t.expected(), base + stream.len());
        assert_eq!(t.counters(), StreamCounters::default());
    }
}

#[test]
fn records_of_only_a_prefix() {
    // NVMe/TCP PDUs without data are all header.
    let lens = [PSH_LEN, 100, PSH_LEN, PSH_LEN, 50];
    let (stream, _) = pdus(&lens);
    for mss in [1, 7, 24, 1000] {
        let mut t = Tracker::new(Pdus, SeqNumber(0), 0);
        let (mut starts, mut body) = (Vec::new(), vec![0; lens.len()]);
        for seg in segments(stream.len(), mss) {
            let payload = &stream[seg.clone()];
            t.arrive(SeqNumber(seg.start as u32), payload.len())
                .unwrap();
            while let Some(ev) = t.next(payload) {
                match ev {
                    Event::Start { index, len, .. } => starts.push((index, len)),
                    Event::Body { range, .. } => body[starts.len() - 1] += range.len(),
                    other => panic!("{other:?}"),
                }
            }
        }
        let want: Vec<_> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u64, l))
            .collect();
        assert_eq!(starts, want, "mss {mss}");
        assert_eq!(body, [0, 100 - PSH_LEN, 0, 0, 50 - PSH_LEN]);
    }
}

#[test]
fn resyncs_after_a_loss() {
    // Starts: 0, 100, 2100, 2164, 5164, 5664, 6864, 7664, 8564.
    let (stream, starts) = pdus(&[100, 2000, 64, 3000, 500, 1200, 800, 900]);
    let base = SeqNumber(0xffff_f000);
    let mut t = Tracker::new(Pdus, base, 0);
    let mut seen = Seen::default();
    // Bytes 2000..3000 are lost.
    let segs = segments(stream.len(), 1000).filter(|s| s.start != 2000);
    feed(&mut t, base, &stream, &starts, segs, &mut seen);
    // Records 0 and 1 before the loss; the first header after it is
    // 5164's (record 4), confirmed.
    // (The holder here answers at once: the tracker is in sync from the
    // next header on.)
    assert_eq!(
        seen.records,
        [(0, 0), (1, 100), (5, 5664), (6, 6864), (7, 7664)]
    );
    assert_eq!(seen.candidates, [5164]);
    assert_eq!((seen.synced, seen.lost), (1, 0));
    assert!(t.in_sync());
    let c = t.counters();
    assert_eq!((c.sync_losses, c.resync_requests, c.resyncs), (1, 1, 1));
    // Answers about a candidate no longer followed change nothing.
    assert_eq!(
        t.confirm(base + 5164usize, 4),
        Err(ResyncError::UnknownCandidate {
            tcp_seq: (base + 5164usize).0
        })
    );
    assert!(t.reject(base + 5164usize).is_err());
    // A retransmission of bytes already seen is not walked.
    assert_eq!(t.arrive(base + 1000usize, 1000), None);
}

#[test]
fn a_false_header_breaks_its_chain_and_the_search_goes_on() {
    let (mut stream, starts) = pdus(&[100, 2000, 64, 3000, 500, 1200, 800, 900]);
    // In record 3's data, after the loss: something that looks like a
    // header, whose chain leads into data.
    stream[4000..4008].copy_from_slice(&header(300));
    let base = SeqNumber(7);
    let mut t = Tracker::new(Pdus, base, 0);
    let mut seen = Seen::default();
    let segs = segments(stream.len(), 1000).filter(|s| s.start != 2000);
    feed(&mut t, base, &stream, &starts, segs, &mut seen);
    // The false candidate (rejected by the holder here) and the real one.
    assert_eq!(seen.candidates, [4000, 5164]);
    assert_eq!(seen.rejected, [4000]);
    assert_eq!(seen.records.last(), Some(&(7, 7664)));
    assert!(t.in_sync());

    // Unanswered, the false chain breaks by itself at 4300 and the
    // search finds 5164 in the same segment.
    let mut t = Tracker::new(Pdus, base, 0);
    let mut events = Vec::new();
    for seg in segments(stream.len(), 1000).filter(|s| s.start != 2000) {
        let payload = &stream[seg.clone()];
        if t.arrive(base + seg.start, payload.len()).is_some() {
            while let Some(ev) = t.next(payload) {
                if let Event::Candidate { seq } = ev {
                    events.push(seq - base);
                }
            }
        }
    }
    assert_eq!(events, [4000, 5164]);
    assert!(!t.in_sync());
}

#[test]
fn a_bad_header_in_sync_loses_sync() {
    let (mut stream, starts) = pdus(&[100, 2000, 64, 3000, 500, 1200, 800, 900]);
    // Record 2's header is garbage (type 0xaa): the search starts the
    // byte after it, and finds record 4 (the garbage hides record 3's
    // length).
    stream[2100] = 0xaa;
    let base = SeqNumber(0);
    let mut t = Tracker::new(Pdus, base, 0);
    let mut seen = Seen::default();
    feed(
        &mut t,
        base,
        &stream,
        &starts,
        segments(stream.len(), 1448),
        &mut seen,
    );
    assert_eq!(seen.lost, 1);
    assert_eq!(seen.candidates, [2164]);
    assert_eq!(seen.records[..2], [(0, 0), (1, 100)]);
    assert_eq!(seen.records.last(), Some(&(7, 7664)));
    assert_eq!(t.counters().sync_losses, 1);
}

#[test]
fn random_losses_always_come_back() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7143);
    for _ in 0..200 {
        let lens: Vec<usize> = (0..60).map(|_| rng.gen_range(PSH_LEN + 1..3000)).collect();
        let (stream, starts) = pdus(&lens);
        let base = SeqNumber(rng.gen());
        let mut segs = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let n = rng.gen_range(1..1500).min(stream.len() - at);
            segs.push(at..at + n);
            at += n;
        }
        // Lose a few segments in the first half.
        let half = segs.len() / 2;
        for _ in 0..rng.gen_range(1..4) {
            segs.remove(rng.gen_range(1..half));
        }
        let mut t = Tracker::new(Pdus, base, 0);
        let mut seen = Seen::default();
        feed(&mut t, base, &stream, &starts, segs, &mut seen);
        assert!(t.in_sync(), "{seen:?}");
        assert_eq!(seen.records.last().unwrap().0, 59, "{seen:?}");
        assert!(seen.records.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
