//! A receiving NIC's offload marks travel with the bytes through TCP: over
//! a wire that loses, reorders and duplicates, a NIC that "decrypts" some
//! segments and places others straight into its own memory, the reader
//! learns byte for byte what each received byte is, and no byte is lost or
//! read twice (placed bytes included).

mod sim;

use capnet_tcpip::tcp::{Mark, Options, TcpId};
use capnet_tcpip::RxMeta;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sim::{Faults, Link, Net};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The "cipher": what the sender writes is the plaintext XOR this.
const KEY: u8 = 0x5a;
const PLACER: u32 = 9;

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(11) as u8)
        .collect()
}

/// TCP payload range of an Ethernet + IPv4 + TCP frame, and its sequence.
fn payload(frame: &[u8]) -> Option<(u32, std::ops::Range<usize>)> {
    if frame.len() < 54 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let tcp = 14 + ihl;
    let doff = usize::from(frame[tcp + 12] >> 4) * 4;
    let seq = u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().unwrap());
    let range = tcp + doff..14 + total;
    (!range.is_empty()).then_some((seq, range))
}

/// What the receiving NIC placed: its memory, by sequence number.
type Placed = Rc<RefCell<BTreeMap<u32, Vec<u8>>>>;

/// A NIC on host 1 that opens (`decrypt` share) or places (`place` share)
/// received segments at random, leaving the others as they came.
fn nic(seed: u64, decrypt: f64, place: f64, placed: Placed) -> sim::Nic {
    let mut rng = SmallRng::seed_from_u64(seed);
    Box::new(move |to, frame| {
        let Some((seq, range)) = payload(frame).filter(|_| to == 1) else {
            return RxMeta::default();
        };
        let roll: f64 = rng.gen();
        let mark = if roll < decrypt {
            frame[range].iter_mut().for_each(|b| *b ^= KEY);
            Mark::Decrypted
        } else if roll < decrypt + place {
            let plain = frame[range].iter().map(|b| b ^ KEY).collect();
            placed.borrow_mut().insert(seq, plain);
            Mark::Placed { context: PLACER }
        } else {
            Mark::Plain
        };
        RxMeta {
            checksum_ok: true,
            mark,
        }
    })
}

/// The plaintext byte the NIC placed at sequence `seq`.
fn placed_byte(placed: &Placed, seq: u32) -> Option<u8> {
    placed
        .borrow()
        .iter()
        .filter(|(s, p)| seq.wrapping_sub(**s) < p.len() as u32)
        .map(|(s, p)| p[seq.wrapping_sub(*s) as usize])
        .next()
}

/// Sends `data` (as "ciphertext") from host 0 to 1; host 1 reads run by
/// run and turns every byte back into plaintext by its mark. Returns the
/// plaintext read and how many bytes of each mark came.
fn transfer(net: &mut Net, data: &[u8], placed: &Placed) -> (Vec<u8>, [usize; 3]) {
    let wire: Vec<u8> = data.iter().map(|b| b ^ KEY).collect();
    let l = net.listen(1, 7100, Options::default());
    let a = net.connect(0, net.addr(1, 7100), Options::default());
    let mut b: Option<TcpId> = None;
    let (mut sent, mut got, mut by_mark) = (0, Vec::new(), [0usize; 3]);
    let ok = net.run_until(Duration::from_secs(600), |net| {
        b = b.or_else(|| net.accept(1, l));
        let now = net.now;
        net.hosts[0]
            .stack
            .tcp(now, a, |c| {
                if c.is_established() {
                    sent += c.write(&wire[sent..]);
                }
            })
            .unwrap();
        if let Some(b) = b {
            net.hosts[1]
                .stack
                .tcp(now, b, |c| {
                    let first = c.first_data_seqs().unwrap().1 .0;
                    while let Some((mark, n)) = c.front_run() {
                        let at = got.len();
                        match mark {
                            Mark::Placed { context } => {
                                assert_eq!(context, PLACER);
                                for i in 0..n {
                                    let seq = first.wrapping_add((at + i) as u32);
                                    got.push(placed_byte(placed, seq).expect("placed byte"));
                                }
                                c.consume(n);
                                by_mark[2] += n;
                            }
                            _ => {
                                let mut buf = vec![0u8; n];
                                assert_eq!(c.read(&mut buf), n, "a run reads whole");
                                let decrypted = mark == Mark::Decrypted;
                                got.extend(
                                    buf.iter().map(|b| if decrypted { *b } else { b ^ KEY }),
                                );
                                by_mark[usize::from(!decrypted)] += n;
                            }
                        }
                    }
                })
                .unwrap();
        }
        net.drain_events(0);
        net.drain_events(1);
        got.len() >= data.len()
    });
    assert!(ok, "timed out with {} of {} bytes", got.len(), data.len());
    (got, by_mark)
}

#[test]
fn marks_stay_with_their_bytes_through_loss_reordering_and_duplication() {
    for (seed, loss, reorder, dup) in [
        (11, 0.0, 0.0, 0.0),
        (12, 0.02, 0.0, 0.0),
        (13, 0.0, 0.05, 0.05),
        (14, 0.03, 0.03, 0.03),
    ] {
        let link = Link {
            faults: Faults {
                loss,
                reorder,
                duplicate: dup,
                ..Faults::default()
            },
            ..Link::default()
        };
        let mut net = Net::new(2, link, seed);
        let placed = Placed::default();
        net.nic = Some(nic(seed, 0.4, 0.2, placed.clone()));
        let data = plaintext(1 << 20);
        let (got, by_mark) = transfer(&mut net, &data, &placed);
        assert!(got == data, "seed {seed}: the stream differs");
        // Every kind of run came, so the check covered each.
        assert!(by_mark.iter().all(|&n| n > 0), "seed {seed}: {by_mark:?}");
        let c = net.hosts[1].stack.tcp.conns().next().unwrap().1.counters;
        if loss + reorder > 0.0 {
            assert!(c.marked_out_of_order > 0, "seed {seed}: {c:?}");
        }
        eprintln!("seed {seed}: decrypted/plain/placed {by_mark:?}; {c:?}");
    }
}

#[test]
fn placed_bytes_leave_the_window_open() {
    // A NIC that places everything: the receiver never reads, and still
    // the whole stream (far beyond the receive buffer) arrives.
    let mut net = Net::new(2, Link::default(), 21);
    let placed = Placed::default();
    net.nic = Some(nic(21, 0.0, 1.0, placed.clone()));
    let data = plaintext(4 << 20);
    let wire: Vec<u8> = data.iter().map(|b| b ^ KEY).collect();
    let l = net.listen(1, 7200, Options::default());
    let a = net.connect(0, net.addr(1, 7200), Options::default());
    let mut sent = 0;
    let ok = net.run_until(Duration::from_secs(60), |net| {
        let _ = net.accept(1, l);
        let now = net.now;
        net.hosts[0]
            .stack
            .tcp(now, a, |c| {
                if c.is_established() {
                    sent += c.write(&wire[sent..]);
                }
                sent == wire.len() && c.send_queued() == 0
            })
            .unwrap()
    });
    assert!(ok, "sent {sent}");
    let (_, c) = net.hosts[1].stack.tcp.conns().next().unwrap();
    assert_eq!(c.readable(), data.len());
    assert_eq!(
        c.front_run(),
        Some((Mark::Placed { context: PLACER }, data.len()))
    );
}
