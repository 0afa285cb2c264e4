//! Model checks of the ring protocol with loom: the heap-backed instances of the very queue and
//! byte-ring code that runs over shared memory, with loom's atomics swapped in.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!       cargo test -p capnet-ring --release --test loom`
//!
//! A doorbell is modelled like an eventfd: a loom atomic counter the ringer bumps and the
//! sleeper drains, plus an `AtomicBool` "ringer finished". "Sleeping" is a loop that waits for a
//! ring; if the ringer has finished without ringing while work is queued, that is a lost wakeup
//! and the test fails.
//!
//! Each test was seen to fail when the protocol is broken on purpose: a fence removed from
//! either side of the signal handshake, a Release index store or an Acquire index load
//! weakened to Relaxed (slot and byte accesses are tracked with loom cells, so a missing
//! happens-before shows as a causality violation), EOF published with Relaxed.
#![cfg(loom)]

use capnet_ring::bytering::{self, ByteReader, ByteWriter, HeapBytes};
use capnet_ring::queue::{self, HeapQueue};
use capnet_ring::{Consumer, Desc, Producer, RingError};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

/// A loom model bounded to three preemptions unless `LOOM_MAX_PREEMPTIONS` says otherwise
/// (all of these finish in seconds at 3).
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound.get_or_insert(3);
    b.check(f);
}

fn d(i: u32) -> Desc {
    Desc {
        offset: i.wrapping_mul(0x1000_0001),
        len: i + 1,
        flags: i ^ 0x5a,
        context: !i,
    }
}

/// A doorbell, modelled like an eventfd: a counter the ringer bumps and the sleeper drains.
/// (A bool cleared by the sleeper would lose a ring that lands between its load and its
/// store; a `swap` polled in a spin loop is mis-modelled by loom 0.7.) Each bell has one ringer
/// and one sleeper.
#[derive(Clone)]
struct Bell {
    rings: Arc<AtomicUsize>,
    /// Rings the sleeper has drained so far.
    taken: Arc<AtomicUsize>,
    /// Set by the ringer once it has published everything it ever will.
    done: Arc<AtomicBool>,
}

impl Bell {
    fn new() -> Bell {
        Bell {
            rings: Arc::new(AtomicUsize::new(0)),
            taken: Arc::new(AtomicUsize::new(0)),
            done: Arc::new(AtomicBool::new(false)),
        }
    }

    fn ring(&self) {
        self.rings.fetch_add(1, SeqCst);
    }

    fn finish(&self) {
        self.done.store(true, SeqCst);
    }

    /// Drains pending rings; true if there were any.
    fn take(&self) -> bool {
        let rings = self.rings.load(SeqCst);
        let pending = rings != self.taken.load(SeqCst);
        self.taken.store(rings, SeqCst);
        pending
    }

    /// Sleeps until rung. If the ringer finishes without ringing, the sleeper would sleep
    /// forever: `work_left()` then says whether that is a lost wakeup (it must be false).
    fn sleep(&self, work_left: impl Fn() -> bool) {
        loop {
            if self.take() {
                return;
            }
            if self.done.load(SeqCst) {
                // The last ring happens before `done`: look once more.
                if !self.take() {
                    assert!(
                        !work_left(),
                        "lost wakeup: asleep with work queued and no doorbell"
                    );
                }
                return;
            }
            thread::yield_now();
        }
    }
}

fn enqueue_spin(p: &mut Producer<HeapQueue>, x: Desc) {
    loop {
        match p.enqueue(x) {
            Ok(()) => return,
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn queue_wraps_around_with_small_capacity() {
    model(|| {
        let (mut p, mut c) = queue::heap(2).unwrap();
        let t = thread::spawn(move || (0..3).for_each(|i| enqueue_spin(&mut p, d(i))));
        let mut next = 0;
        while next < 3 {
            match c.dequeue().unwrap() {
                Some(x) => {
                    assert_eq!(x, d(next), "slot read before the producer's writes");
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        t.join().unwrap();
        assert!(c.is_empty());
    });
}

#[test]
fn queue_full_and_empty() {
    model(|| {
        let (mut p, mut c) = queue::heap(1).unwrap();
        let t = thread::spawn(move || {
            p.enqueue(d(1)).unwrap();
            match p.enqueue(d(2)) {
                Ok(()) => true,
                Err(RingError::Full) => false,
                Err(e) => panic!("{e}"),
            }
        });
        let first = c.dequeue().unwrap();
        assert!(first.is_none() || first == Some(d(1)));
        let second_ok = t.join().unwrap();
        if first.is_none() {
            assert!(!second_ok, "capacity 1 held two descriptors");
        }
        let mut got: Vec<Desc> = first.into_iter().collect();
        while let Some(x) = c.dequeue().unwrap() {
            got.push(x);
        }
        let want = if second_ok {
            vec![d(1), d(2)]
        } else {
            vec![d(1)]
        };
        assert_eq!(got, want);
    });
}

/// Consumer side of the suppression protocol: drain, request, re-check, sleep.
fn consume_all(c: &mut Consumer<HeapQueue>, bell: &Bell, n: u32) {
    let mut got = 0;
    while got < n {
        while let Some(x) = c.dequeue().unwrap() {
            assert_eq!(x, d(got));
            got += 1;
        }
        if got == n {
            break;
        }
        c.request_signal();
        if !c.is_empty() {
            c.cancel_signal();
            continue;
        }
        bell.sleep(|| !c.is_empty());
    }
}

#[test]
fn queue_no_lost_wakeup() {
    model(|| {
        let (mut p, mut c) = queue::heap(4).unwrap();
        let bell = Bell::new();
        let ringer = bell.clone();
        let t = thread::spawn(move || {
            // Two batches, one signal check each.
            p.enqueue_batch(&[d(0), d(1)]).unwrap();
            if p.signal_wanted() {
                ringer.ring();
            }
            p.enqueue(d(2)).unwrap();
            if p.signal_wanted() {
                ringer.ring();
            }
            ringer.finish();
        });
        consume_all(&mut c, &bell, 3);
        t.join().unwrap();
    });
}

fn write_all(w: &mut ByteWriter<HeapBytes>, mut data: &[u8]) {
    while !data.is_empty() {
        let n = w.write(data).unwrap();
        data = &data[n..];
        if n == 0 {
            thread::yield_now();
        }
    }
}

#[test]
fn bytering_wraps_around_and_ends_with_eof() {
    model(|| {
        let (mut w, mut r) = bytering::heap(4).unwrap();
        let t = thread::spawn(move || {
            write_all(&mut w, b"abcdef");
            w.close();
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 3];
        while !r.eof() {
            let n = r.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(got, b"abcdef");
        t.join().unwrap();
    });
}

#[test]
fn bytering_error_code_after_data() {
    model(|| {
        let (mut w, mut r) = bytering::heap(2).unwrap();
        let t = thread::spawn(move || {
            write_all(&mut w, b"xy");
            w.set_error(7);
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 2];
        while r.error().is_none() {
            assert!(!r.eof());
            let n = r.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(
            got, b"xy",
            "error seen before the bytes written ahead of it"
        );
        assert_eq!(r.error(), Some(7));
        t.join().unwrap();
    });
}

/// A reader that keeps its bytes in the ring (TCP's send queue): it reads
/// them in place, twice (a transmission and a retransmission), before it
/// consumes them; the writer refills the space at once. Both copies must be
/// the bytes written there (loom's cells catch a write into held bytes).
#[test]
fn bytering_held_bytes_stay_until_consumed() {
    model(|| {
        let (mut w, mut r) = bytering::heap(4).unwrap();
        let t = thread::spawn(move || write_all(&mut w, b"abcdef"));
        // SAFETY: this thread holds the reader; only unconsumed bytes are read; no reset.
        let held = unsafe { r.held() };
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = r.available().unwrap().min(2);
            if n == 0 {
                thread::yield_now();
                continue;
            }
            let (mut first, mut again) = ([0u8; 2], [0u8; 2]);
            held.copy_out(r.head(), &mut first[..n]).unwrap();
            held.copy_out(r.head(), &mut again[..n]).unwrap();
            assert_eq!(first[..n], again[..n]);
            got.extend_from_slice(&first[..n]);
            r.consume(n);
        }
        assert_eq!(got, b"abcdef");
        t.join().unwrap();
    });
}

/// Reader side of the data-signal protocol: read, request, re-check, sleep.
fn read_all(r: &mut ByteReader<HeapBytes>, bell: &Bell, want: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    while got.len() < want.len() {
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == want.len() {
            break;
        }
        r.request_signal();
        if r.available().unwrap() > 0 {
            r.cancel_signal();
            continue;
        }
        bell.sleep(|| r.available().unwrap() > 0);
    }
    assert_eq!(got, want);
}

#[test]
fn bytering_no_lost_data_signal() {
    model(|| {
        let (mut w, mut r) = bytering::heap(4).unwrap();
        let bell = Bell::new();
        let ringer = bell.clone();
        let t = thread::spawn(move || {
            for chunk in [&b"ab"[..], b"c"] {
                write_all(&mut w, chunk);
                if w.signal_wanted() {
                    ringer.ring();
                }
            }
            ringer.finish();
        });
        read_all(&mut r, &bell, b"abc");
        t.join().unwrap();
    });
}

#[test]
fn bytering_no_lost_space_signal() {
    model(|| {
        let (mut w, mut r) = bytering::heap(2).unwrap();
        let bell = Bell::new();
        let ringer = bell.clone();
        // The reader drains, answering space requests after each read.
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 1];
            while got.len() < 3 {
                let n = r.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n > 0 && r.signal_wanted() {
                    ringer.ring();
                }
                if n == 0 {
                    thread::yield_now();
                }
            }
            ringer.finish();
            got
        });
        // The writer fills the ring, then sleeps for space.
        let mut data = &b"xyz"[..];
        while !data.is_empty() {
            let n = w.write(data).unwrap();
            data = &data[n..];
            if data.is_empty() {
                break;
            }
            w.request_signal();
            if w.space().unwrap() > 0 {
                w.cancel_signal();
                continue;
            }
            bell.sleep(|| w.space().unwrap() > 0);
        }
        assert_eq!(t.join().unwrap(), b"xyz");
    });
}

/// The channel pattern: frames go out on an active queue and their buffers come back on a free
/// queue; each side sleeps on its own doorbell with the suppression protocol. Two buffers carry
/// four frames, so the sender must sleep for returns and the receiver for frames.
#[test]
fn queue_pair_recycles_buffers_without_lost_wakeups() {
    model(|| {
        let (mut active_p, mut active_c) = queue::heap(2).unwrap();
        let (mut free_p, mut free_c) = queue::heap(2).unwrap();
        let wake_rx = Bell::new();
        let wake_tx = Bell::new();
        let (rx_bell, tx_bell) = (wake_rx.clone(), wake_tx.clone());
        let receiver = thread::spawn(move || {
            let mut seen = 0;
            while seen < 4 {
                while let Some(x) = active_c.dequeue().unwrap() {
                    assert_eq!(x.len, seen + 1, "frames arrive in order");
                    seen += 1;
                    free_p.enqueue(x).unwrap();
                    if free_p.signal_wanted() {
                        wake_tx.ring();
                    }
                }
                if seen == 4 {
                    break;
                }
                active_c.request_signal();
                if !active_c.is_empty() {
                    active_c.cancel_signal();
                    continue;
                }
                rx_bell.sleep(|| !active_c.is_empty());
            }
            wake_tx.finish();
        });
        let mut owned = vec![0u32, 1];
        for frame in 0..4u32 {
            while owned.is_empty() {
                if let Some(back) = free_c.dequeue().unwrap() {
                    owned.push(back.offset);
                    continue;
                }
                free_c.request_signal();
                if !free_c.is_empty() {
                    free_c.cancel_signal();
                    continue;
                }
                tx_bell.sleep(|| !free_c.is_empty());
            }
            let buf = owned.pop().unwrap();
            let desc = Desc {
                offset: buf,
                len: frame + 1,
                ..Desc::default()
            };
            active_p.enqueue(desc).unwrap(); // never full: two buffers, two slots
            if active_p.signal_wanted() {
                wake_rx.ring();
            }
        }
        wake_rx.finish();
        receiver.join().unwrap();
    });
}

/// A ready list over two byte rings: the writer writes a slot's ring, lists the slot and rings;
/// the reader learns slots only from the list (flag cleared, then the ring read). Whatever the
/// interleaving, every byte is read: a mark that found its slot still listed is covered by the
/// reader's look after it clears the flag.
#[test]
fn ready_list_never_loses_news() {
    model(|| {
        let (mut list_tx, mut list_rx) = capnet_ring::ready::heap(2).unwrap();
        let (mut w0, mut r0) = bytering::heap(4).unwrap();
        let (mut w1, mut r1) = bytering::heap(4).unwrap();
        let bell = Bell::new();
        let ringer = bell.clone();
        let t = thread::spawn(move || {
            for (slot, byte) in [(0u32, b'a'), (1, b'b'), (0, b'c')] {
                let w = if slot == 0 { &mut w0 } else { &mut w1 };
                write_all(w, &[byte]);
                list_tx.mark(slot).unwrap();
                ringer.ring();
            }
            ringer.finish();
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        while got.len() < 3 {
            while let Some(slot) = list_rx.take().unwrap() {
                let r = if slot == 0 { &mut r0 } else { &mut r1 };
                loop {
                    let n = r.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            if got.len() < 3 {
                bell.sleep(|| !list_rx.is_empty());
                if bell.done.load(SeqCst) && list_rx.is_empty() {
                    assert_eq!(
                        (r0.available().unwrap(), r1.available().unwrap()),
                        (0, 0),
                        "news lost: bytes in a ring no list entry names"
                    );
                    break;
                }
            }
        }
        got.sort_unstable();
        assert_eq!(got, b"abc");
        t.join().unwrap();
    });
}
