//! Fault injection on the frames a port transmits: loss, reordering,
//! duplication and corruption, each with a probability in parts per million,
//! drawn from a seedable RNG so that a run can be repeated exactly.
//!
//! [`Shaper`] is the whole transmit-side behaviour without any I/O: it is
//! handed each frame and an `emit` callback that puts a frame on the wire.

use crate::counters::{inc, Counters};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// One million: a probability of 1.
pub const PPM: u32 = 1_000_000;

/// How long a reordered frame is held back at most.
pub const REORDER_HOLD: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    pub loss_ppm: u32,
    pub reorder_ppm: u32,
    pub duplicate_ppm: u32,
    pub corrupt_ppm: u32,
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("lossPpm", self.loss_ppm),
            ("reorderPpm", self.reorder_ppm),
            ("duplicatePpm", self.duplicate_ppm),
            ("corruptPpm", self.corrupt_ppm),
        ] {
            if v > PPM {
                return Err(format!("{name} {v} is more than {PPM}"));
            }
        }
        Ok(())
    }

    /// No fault at all: the fast path draws no random numbers.
    pub fn is_clean(&self) -> bool {
        *self == FaultConfig::default()
    }
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub lose: bool,
    /// (byte index, non-zero XOR mask)
    pub corrupt: Option<(usize, u8)>,
    pub duplicate: bool,
    pub reorder: bool,
}

/// Draws the fault decisions.
pub struct FaultInjector {
    cfg: FaultConfig,
    rng: SmallRng,
}

impl FaultInjector {
    /// `seed`: `None` seeds from the OS.
    pub fn new(cfg: FaultConfig, seed: Option<u64>) -> FaultInjector {
        let rng = match seed {
            Some(s) => SmallRng::seed_from_u64(s),
            None => SmallRng::from_entropy(),
        };
        FaultInjector { cfg, rng }
    }

    pub fn config(&self) -> FaultConfig {
        self.cfg
    }

    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.cfg = cfg;
    }

    fn chance(&mut self, ppm: u32) -> bool {
        match ppm {
            0 => false,
            PPM.. => true,
            p => self.rng.gen_range(0..PPM) < p,
        }
    }

    pub fn decide(&mut self, frame_len: usize) -> Decision {
        if self.cfg.is_clean() {
            return Decision::default();
        }
        let cfg = self.cfg;
        if self.chance(cfg.loss_ppm) {
            return Decision {
                lose: true,
                ..Decision::default()
            };
        }
        let corrupt = if frame_len > 0 && self.chance(cfg.corrupt_ppm) {
            Some((
                self.rng.gen_range(0..frame_len),
                self.rng.gen_range(1..=255u8),
            ))
        } else {
            None
        };
        Decision {
            lose: false,
            corrupt,
            duplicate: self.chance(cfg.duplicate_ppm),
            reorder: self.chance(cfg.reorder_ppm),
        }
    }
}

/// The transmit side of a wire: applies the decisions and keeps the one
/// frame that reordering holds back.
pub struct Shaper {
    inj: FaultInjector,
    held: Vec<u8>,
    held_until: Option<Instant>,
}

impl Shaper {
    pub fn new(cfg: FaultConfig, seed: Option<u64>) -> Shaper {
        Shaper {
            inj: FaultInjector::new(cfg, seed),
            held: Vec::new(),
            held_until: None,
        }
    }

    pub fn config(&self) -> FaultConfig {
        self.inj.config()
    }

    pub fn set_config(&mut self, cfg: FaultConfig) {
        self.inj.set_config(cfg);
    }

    /// No faults set and no frame held: what goes in comes out unchanged
    /// and in order.
    pub fn is_clean(&self) -> bool {
        self.inj.config().is_clean() && self.held_until.is_none()
    }

    /// When the held frame must leave, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held_until
    }

    /// Puts `frame` on the wire through `emit`, with faults applied. The frame
    /// may be changed in place (corruption).
    pub fn transmit(
        &mut self,
        frame: &mut [u8],
        now: Instant,
        c: &Counters,
        mut emit: impl FnMut(&[u8]),
    ) {
        let d = self.inj.decide(frame.len());
        if d.lose {
            inc(&c.wire_lost);
        } else {
            if let Some((i, mask)) = d.corrupt {
                frame[i] ^= mask;
                inc(&c.wire_corrupted);
            }
            if d.reorder && self.held_until.is_none() {
                // Hold this one back; it leaves after the next frame or after REORDER_HOLD.
                self.held.clear();
                self.held.extend_from_slice(frame);
                self.held_until = Some(now + REORDER_HOLD);
                inc(&c.wire_reordered);
                if d.duplicate {
                    emit(frame);
                    inc(&c.wire_duplicated);
                }
                return;
            }
            emit(frame);
            if d.duplicate {
                emit(frame);
                inc(&c.wire_duplicated);
            }
        }
        self.release(&mut emit);
    }

    /// Sends the held frame if its time has come.
    pub fn on_timer(&mut self, now: Instant, mut emit: impl FnMut(&[u8])) {
        if self.held_until.is_some_and(|t| t <= now) {
            self.release(&mut emit);
        }
    }

    /// Forgets the held frame (the wire went away).
    pub fn discard_held(&mut self) {
        self.held_until = None;
        self.held.clear();
    }

    fn release(&mut self, emit: &mut impl FnMut(&[u8])) {
        if self.held_until.take().is_some() {
            emit(&self.held);
            self.held.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(loss: u32, reorder: u32, dup: u32, corrupt: u32) -> FaultConfig {
        FaultConfig {
            loss_ppm: loss,
            reorder_ppm: reorder,
            duplicate_ppm: dup,
            corrupt_ppm: corrupt,
        }
    }

    #[test]
    fn validate_limits() {
        assert!(cfg(PPM, 0, 0, 0).validate().is_ok());
        assert!(cfg(0, PPM + 1, 0, 0)
            .validate()
            .unwrap_err()
            .contains("reorderPpm"));
        assert!(FaultConfig::default().is_clean());
    }

    #[test]
    fn statistics_with_fixed_seed() {
        const N: u64 = 200_000;
        let c = Counters::default();
        let mut s = Shaper::new(cfg(100_000, 50_000, 20_000, 10_000), Some(42));
        let mut sent = 0u64;
        let t0 = Instant::now();
        for i in 0..N {
            let mut f = [i as u8; 64];
            s.transmit(&mut f, t0, &c, |_| sent += 1);
        }
        s.on_timer(t0 + REORDER_HOLD, |_| sent += 1);
        let snap = c.snapshot();
        let near = |got: u64, ppm: u64, base: u64| {
            let want = base * ppm / 1_000_000;
            let tol = want / 10 + 50;
            assert!(got.abs_diff(want) <= tol, "got {got}, want {want} ± {tol}");
        };
        near(snap.wire_lost, 100_000, N);
        let survivors = N - snap.wire_lost;
        near(snap.wire_corrupted, 10_000, survivors);
        near(snap.wire_duplicated, 20_000, survivors);
        // A frame is held only when nothing is held already, so a little fewer.
        near(snap.wire_reordered, 50_000, survivors);
        assert_eq!(sent, survivors + snap.wire_duplicated);

        // The same seed gives the same run.
        let c2 = Counters::default();
        let mut s2 = Shaper::new(cfg(100_000, 50_000, 20_000, 10_000), Some(42));
        for i in 0..N {
            let mut f = [i as u8; 64];
            s2.transmit(&mut f, t0, &c2, |_| {});
        }
        assert_eq!(c2.snapshot(), snap);
    }

    #[test]
    fn clean_config_passes_everything_untouched() {
        let c = Counters::default();
        let mut s = Shaper::new(FaultConfig::default(), Some(1));
        let mut out = Vec::new();
        for i in 0..100u8 {
            let mut f = [i; 20];
            s.transmit(&mut f, Instant::now(), &c, |b| out.push(b.to_vec()));
        }
        assert_eq!(out.len(), 100);
        assert!(out.iter().enumerate().all(|(i, f)| f == &[i as u8; 20]));
        assert_eq!(c.snapshot(), Default::default());
    }

    #[test]
    fn full_loss_then_none() {
        let c = Counters::default();
        let mut s = Shaper::new(cfg(PPM, 0, 0, 0), Some(1));
        let mut n = 0;
        for _ in 0..10 {
            s.transmit(&mut [1, 2, 3], Instant::now(), &c, |_| n += 1);
        }
        assert_eq!((n, c.snapshot().wire_lost), (0, 10));
        s.set_config(FaultConfig::default());
        s.transmit(&mut [1, 2, 3], Instant::now(), &c, |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn reorder_swaps_with_next_or_times_out() {
        let c = Counters::default();
        let mut s = Shaper::new(cfg(0, PPM, 0, 0), Some(1));
        let t0 = Instant::now();
        let mut out: Vec<u8> = Vec::new();
        s.transmit(&mut [1], t0, &c, |b| out.extend_from_slice(b));
        assert_eq!(out, Vec::<u8>::new());
        assert_eq!(s.deadline(), Some(t0 + REORDER_HOLD));
        // Frame 2 is also picked for reordering, but one is already held: 2 goes, then 1.
        s.transmit(&mut [2], t0, &c, |b| out.extend_from_slice(b));
        assert_eq!(out, vec![2, 1]);
        s.transmit(&mut [3], t0, &c, |b| out.extend_from_slice(b));
        s.on_timer(t0, |b| out.extend_from_slice(b));
        assert_eq!(out, vec![2, 1]);
        s.on_timer(t0 + REORDER_HOLD, |b| out.extend_from_slice(b));
        assert_eq!(out, vec![2, 1, 3]);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn corruption_flips_exactly_one_byte() {
        let c = Counters::default();
        let mut s = Shaper::new(cfg(0, 0, 0, PPM), Some(9));
        for _ in 0..100 {
            let orig = [0x55u8; 64];
            let mut f = orig;
            let mut seen = None;
            s.transmit(&mut f, Instant::now(), &c, |b| seen = Some(b.to_vec()));
            let seen = seen.unwrap();
            assert_eq!(
                seen.iter().zip(orig.iter()).filter(|(a, b)| a != b).count(),
                1
            );
        }
        assert_eq!(c.snapshot().wire_corrupted, 100);
    }

    #[test]
    fn duplicate_sends_twice() {
        let c = Counters::default();
        let mut s = Shaper::new(cfg(0, 0, PPM, 0), Some(3));
        let mut n = 0;
        s.transmit(&mut [7; 10], Instant::now(), &c, |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!(c.snapshot().wire_duplicated, 1);
    }
}
