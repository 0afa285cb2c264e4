//! A hierarchical hashed timer wheel (Varghese & Lauck, "Hashed and
//! Hierarchical Timing Wheels", SOSP 1987; the shape of Linux's and tokio's
//! wheels) that holds the stack's timers: every connection's retransmission,
//! delayed-ACK, keepalive, TIME-WAIT... deadline, thousands at once.
//!
//! The wheel owns only deadlines and the items to hand back when they come;
//! it has no clock (the caller passes [`Instant`]s) and no callbacks of its
//! own ([`TimerWheel::expire`] hands due items to a closure).
//!
//! # Lazy cancellation: the owner's contract
//!
//! **There is no cancel and no re-arm.** An item, once inserted, comes out
//! of [`TimerWheel::expire`] when its deadline passes, whatever happened
//! since. The owner of a timer keeps its own *armed deadline* (or none) and,
//! when an item comes out, checks it against that: an item for a timer that
//! was stopped, or that was re-armed later, is stale and the owner ignores
//! it (or inserts a new one for the later deadline). To keep the wheel from
//! filling with stale items, the owner should also remember the earliest
//! deadline it has *queued* for each timer and insert only when the armed
//! deadline moves earlier than that: re-arming a retransmission timer later
//! on every ACK then costs nothing, and each timer has at most one queued
//! item per time its deadline moved earlier.
//!
//! # Time and rounding
//!
//! The wheel counts in ticks of [`TICK`] (1 ms). A deadline is rounded *up*
//! to a whole tick, so an item never comes out before its deadline: it
//! comes out of the first `expire(now)` with `now` at or after its rounded
//! deadline. A deadline whose rounded tick has already been reached (at or
//! before the latest `now` given to [`TimerWheel::new`] or `expire`) comes
//! out of the next `expire`, whatever its `now`. A `now` earlier than one
//! already seen is taken as the latest one seen (time does not go back).
//!
//! # Structure
//!
//! [`LEVELS`] levels of 64 slots; level `L` slot covers `64^L` ticks, so the
//! levels together span 2^60 ms, more than any [`Instant`] (a `u64` of
//! microseconds): no deadline is too far away and there is no overflow
//! list. An item goes to the level of the highest 6-bit digit in which its
//! tick differs from the current tick, into the slot of that digit; when the
//! current tick reaches a slot, its items move to finer levels (or fire).
//! Each level keeps a 64-bit occupancy map, so finding the next non-empty
//! slot is a few bit operations, however far away it is: a jump of hours
//! visits only the slots that hold items. Items live in one slab of nodes
//! linked into their slots, so memory is the peak number of items held, and
//! moving an item between levels does not move the item.

use core::fmt;
use std::time::Duration;

use crate::time::Instant;

/// The wheel's resolution: deadlines are rounded up to a whole tick.
pub const TICK: Duration = Duration::from_millis(1);

/// Microseconds per tick.
const TICK_US: u64 = 1000;

/// log2 of the slots per level.
const SLOT_BITS: u32 = 6;

/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;

/// Levels of the wheel: enough that their 6-bit digits cover every tick an
/// [`Instant`] can name.
pub const LEVELS: usize = 10;

/// The largest tick a deadline can round up to.
const MAX_TICK: u64 = u64::MAX.div_ceil(TICK_US);

// Every tick has a digit on some level, so `level_for` stays below LEVELS.
const _: () = assert!(MAX_TICK < 1 << (SLOT_BITS as usize * LEVELS));

/// No node: the end of a slot's list (or of the free list).
const NIL: usize = usize::MAX;

/// One held item (or a free node, with `item` None).
struct Node<T> {
    /// The rounded deadline, in ticks.
    tick: u64,
    /// The next node in the same slot (or the free list).
    next: usize,
    item: Option<T>,
}

/// One slot: a list of nodes, and the earliest tick among them.
#[derive(Clone, Copy)]
struct Slot {
    head: usize,
    /// Valid while the slot's bit in its level's occupancy map is set.
    min_tick: u64,
}

const EMPTY_SLOT: Slot = Slot {
    head: NIL,
    min_tick: 0,
};

struct Level {
    /// Bit `i` set: slot `i` holds at least one node.
    occupied: u64,
    slots: [Slot; SLOTS],
}

/// A hierarchical timer wheel of items of type `T`, each with a deadline.
///
/// See the [module documentation](self) for the lazy-cancellation contract
/// the owner keeps (there is no cancel) and for how deadlines are rounded.
pub struct TimerWheel<T> {
    /// The current tick: every item whose rounded deadline is at or before
    /// it has been handed out, or is on the `due` list. Every node linked
    /// into a slot has a later tick, in a slot after the current tick's on
    /// its level (so no level's occupied slots wrap round).
    now_tick: u64,
    levels: [Level; LEVELS],
    /// Items inserted with a deadline already reached: out at the next
    /// `expire`.
    due_head: usize,
    /// The earliest tick on the `due` list (valid when it is not empty).
    due_min_tick: u64,
    nodes: Vec<Node<T>>,
    free_head: usize,
    len: usize,
    /// How many slots `expire` has emptied, for the tests of its cost.
    #[cfg(test)]
    slots_visited: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose current time is `now`.
    pub fn new(now: Instant) -> Self {
        TimerWheel {
            now_tick: now.micros() / TICK_US,
            levels: core::array::from_fn(|_| Level {
                occupied: 0,
                slots: [EMPTY_SLOT; SLOTS],
            }),
            due_head: NIL,
            due_min_tick: 0,
            nodes: Vec::new(),
            free_head: NIL,
            len: 0,
            #[cfg(test)]
            slots_visited: 0,
        }
    }

    /// How many items the wheel holds (stale ones included: the wheel
    /// cannot tell).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `item`, to come out of [`expire`](Self::expire) once `now` is at
    /// or after `deadline` rounded up to a whole [`TICK`]. A deadline already
    /// reached comes out of the next `expire`. O(1) (amortized: the node
    /// slab may grow).
    pub fn insert(&mut self, deadline: Instant, item: T) {
        let tick = deadline.micros().div_ceil(TICK_US);
        let node = self.alloc(tick, item);
        self.len += 1;
        if tick <= self.now_tick {
            if self.due_head == NIL || tick < self.due_min_tick {
                self.due_min_tick = tick;
            }
            self.nodes[node].next = self.due_head;
            self.due_head = node;
        } else {
            self.link(node, tick);
        }
    }

    /// Hands every item whose rounded deadline is at or before `now` to
    /// `fired`, each exactly once, and removes it.
    ///
    /// Order: first the items that were inserted with their deadline already
    /// reached, in no particular order; then the rest in order of rounded
    /// deadline, those with the same rounded deadline in no particular
    /// order.
    ///
    /// Cost: proportional to the items handed out plus the non-empty slots
    /// passed (each item moves to a finer level at most [`LEVELS`]` - 1`
    /// times in its life), never to the items still pending nor to the
    /// length of the jump in time.
    ///
    /// `fired` must not panic: if it does, the items of the slot being
    /// emptied that it has not been handed are lost (and still counted by
    /// [`len`](Self::len)).
    pub fn expire(&mut self, now: Instant, fired: &mut impl FnMut(T)) {
        let now_tick = now.micros() / TICK_US;
        let mut node = core::mem::replace(&mut self.due_head, NIL);
        while node != NIL {
            let next = self.nodes[node].next;
            self.fire(node, fired);
            node = next;
        }
        while let Some((level, slot)) = self.next_slot() {
            let start = self.slot_start(level, slot);
            if start > now_tick {
                break;
            }
            // Nothing is held on a finer level (`next_slot` takes the
            // finest), so the current tick may jump to the slot's start.
            self.now_tick = start;
            let lvl = &mut self.levels[level];
            lvl.occupied &= !(1 << slot);
            let mut node = core::mem::replace(&mut lvl.slots[slot].head, NIL);
            #[cfg(test)]
            {
                self.slots_visited += 1;
            }
            while node != NIL {
                let next = self.nodes[node].next;
                let tick = self.nodes[node].tick;
                if tick <= self.now_tick {
                    self.fire(node, fired);
                } else {
                    // Same digits as now above `level`: a finer level.
                    self.link(node, tick);
                }
                node = next;
            }
        }
        self.now_tick = self.now_tick.max(now_tick);
        if self.len == 0 {
            // Give back the memory of a burst once it is over.
            self.nodes.clear();
            self.nodes.shrink_to(SLOTS);
            self.free_head = NIL;
        }
    }

    /// The rounded deadline of the earliest item held: `expire` at that
    /// instant hands it out, and no `expire` before it hands anything out.
    /// For items inserted already due, the earliest of their (past)
    /// deadlines. `None` when the wheel is empty. A few bit operations per
    /// level; no walk over items.
    ///
    /// The answer is exact on every level (each slot keeps its earliest
    /// tick), so a bindings' sleep until it wakes only when something is
    /// due; waking earlier and calling `expire` again is always harmless.
    /// A deadline within the last microseconds of `Instant`'s range (past
    /// the last whole tick) reads as `Instant`'s maximum, and never comes.
    pub fn next_deadline(&self) -> Option<Instant> {
        let tick = if self.due_head != NIL {
            // Everything on the due list is at or before the current tick,
            // everything in the slots after it.
            self.due_min_tick
        } else {
            let (level, slot) = self.next_slot()?;
            self.levels[level].slots[slot].min_tick
        };
        Some(Instant::from_micros(tick.saturating_mul(TICK_US)))
    }

    /// The first non-empty slot of the finest non-empty level: the slot the
    /// current tick reaches first (a finer level's slots all come before a
    /// coarser one's, since they share the current tick's coarser digits).
    fn next_slot(&self) -> Option<(usize, usize)> {
        self.levels
            .iter()
            .position(|l| l.occupied != 0)
            .map(|level| (level, self.levels[level].occupied.trailing_zeros() as usize))
    }

    /// The first tick of `slot` on `level`, in the current tick's span of
    /// that level.
    fn slot_start(&self, level: usize, slot: usize) -> u64 {
        let shift = SLOT_BITS as usize * level;
        let above = self.now_tick >> shift >> SLOT_BITS << SLOT_BITS;
        (above | slot as u64) << shift
    }

    /// Links node `node`, of tick `tick` later than the current tick, into
    /// its slot.
    fn link(&mut self, node: usize, tick: u64) {
        let differ = self.now_tick ^ tick;
        // `differ` is not zero (tick > now_tick), and its highest bit is
        // below SLOT_BITS * LEVELS (both ticks are at most MAX_TICK).
        let level = ((63 - differ.leading_zeros()) / SLOT_BITS) as usize;
        let slot = ((tick >> (SLOT_BITS as usize * level)) as usize) & (SLOTS - 1);
        let lvl = &mut self.levels[level];
        let s = &mut lvl.slots[slot];
        if lvl.occupied & (1 << slot) == 0 {
            lvl.occupied |= 1 << slot;
            s.min_tick = tick;
        } else {
            s.min_tick = s.min_tick.min(tick);
        }
        self.nodes[node].next = s.head;
        s.head = node;
    }

    fn alloc(&mut self, tick: u64, item: T) -> usize {
        if self.free_head == NIL {
            self.nodes.push(Node {
                tick,
                next: NIL,
                item: Some(item),
            });
            self.nodes.len() - 1
        } else {
            let node = self.free_head;
            let n = &mut self.nodes[node];
            self.free_head = n.next;
            n.tick = tick;
            n.next = NIL;
            n.item = Some(item);
            node
        }
    }

    /// Frees `node` and hands its item to `fired`.
    fn fire(&mut self, node: usize, fired: &mut impl FnMut(T)) {
        let n = &mut self.nodes[node];
        let item = n.item.take();
        n.next = self.free_head;
        self.free_head = node;
        self.len -= 1;
        // Always Some: only held nodes are linked into slots or `due`.
        if let Some(item) = item {
            fired(item);
        }
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now_tick", &self.now_tick)
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    const MS: u64 = 1000;
    const SEC: u64 = 1000 * MS;
    const HOUR: u64 = 3600 * SEC;

    fn us(t: u64) -> Instant {
        Instant::from_micros(t)
    }

    fn drain<T>(w: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        w.expire(us(now), &mut |t| out.push(t));
        out
    }

    #[test]
    fn empty_wheel() {
        let mut w = TimerWheel::<u32>::new(us(5 * SEC));
        assert!(w.is_empty());
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
        assert!(drain(&mut w, 10 * HOUR).is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn deadlines_round_up_and_never_fire_early() {
        let mut w = TimerWheel::new(us(0));
        w.insert(us(1500), "a"); // rounds up to 2 ms
        w.insert(us(2000), "b"); // exactly 2 ms
        w.insert(us(2001), "c"); // 3 ms
        assert_eq!(w.len(), 3);
        assert_eq!(w.next_deadline(), Some(us(2 * MS)));
        assert!(drain(&mut w, 1999).is_empty());
        let mut got = drain(&mut w, 2000);
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert_eq!(w.next_deadline(), Some(us(3 * MS)));
        assert!(drain(&mut w, 2999).is_empty());
        assert_eq!(drain(&mut w, 3000), ["c"]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_at_the_next_expire() {
        let mut w = TimerWheel::new(us(10 * SEC + 500));
        w.insert(us(3 * SEC), 1);
        w.insert(us(0), 2);
        // Rounds up to 10 s exactly: reached already.
        w.insert(us(10 * SEC - 1), 3);
        // Rounds up to 10.001 s: not reached, even though before `now`.
        w.insert(us(10 * SEC + 1), 4);
        assert_eq!(w.next_deadline(), Some(us(0)));
        // Even an expire with an earlier `now` hands them out.
        let mut got = drain(&mut w, 0);
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(w.next_deadline(), Some(us(10 * SEC + MS)));
        // Time going back does not undo the current tick.
        assert!(drain(&mut w, SEC).is_empty());
        w.insert(us(10 * SEC), 5);
        assert_eq!(drain(&mut w, SEC), [5]);
        assert_eq!(drain(&mut w, 10 * SEC + MS), [4]);
    }

    #[test]
    fn long_deadlines() {
        let start = 123_456_789;
        let mut w = TimerWheel::new(us(start));
        let far = [
            start + 90 * SEC,
            start + 2 * HOUR + 17,
            start + 50 * HOUR,
            start + 400 * 24 * HOUR,
            start + 30 * 365 * 24 * HOUR,
        ];
        for (i, &d) in far.iter().enumerate() {
            w.insert(us(d), i);
        }
        for (i, &d) in far.iter().enumerate() {
            let rounded = d.div_ceil(MS) * MS;
            assert_eq!(w.next_deadline(), Some(us(rounded)));
            assert!(drain(&mut w, rounded - 1).is_empty(), "item {i} early");
            assert_eq!(drain(&mut w, rounded), [i]);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn a_jump_of_hours_visits_only_occupied_slots() {
        let mut w = TimerWheel::new(us(0));
        w.insert(us(5 * HOUR), ());
        w.insert(us(5 * HOUR + 3 * MS), ());
        assert!(drain(&mut w, 4 * HOUR).is_empty());
        assert!(w.slots_visited < LEVELS, "{}", w.slots_visited);
        assert_eq!(drain(&mut w, 10 * HOUR).len(), 2);
        // Each item cascades through at most one slot per level.
        assert!(w.slots_visited <= 2 * LEVELS, "{}", w.slots_visited);
        // An empty wheel costs nothing to move on.
        let before = w.slots_visited;
        assert!(drain(&mut w, 1000 * HOUR).is_empty());
        assert_eq!(w.slots_visited, before);
    }

    #[test]
    fn the_end_of_time() {
        let mut w = TimerWheel::new(us(u64::MAX - 10 * SEC));
        w.insert(us(u64::MAX - 5 * SEC), 1);
        // Past the last whole millisecond: never reached.
        w.insert(us(u64::MAX), 2);
        assert_eq!(
            w.next_deadline(),
            Some(us((u64::MAX - 5 * SEC).div_ceil(MS) * MS))
        );
        assert_eq!(drain(&mut w, u64::MAX), [1]);
        assert_eq!(w.next_deadline(), Some(us(u64::MAX)));
        assert!(drain(&mut w, u64::MAX).is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn memory_is_given_back_when_empty() {
        let mut w = TimerWheel::new(us(0));
        for i in 0..10_000u64 {
            w.insert(us(i * 7 * MS), i);
        }
        assert_eq!(w.len(), 10_000);
        assert_eq!(drain(&mut w, HOUR).len(), 10_000);
        assert!(w.nodes.capacity() <= SLOTS);
        // Nodes are reused rather than grown while items come and go.
        for round in 0..100u64 {
            let t = HOUR + round * SEC;
            for i in 0..50 {
                w.insert(us(t + i * MS), i);
            }
            assert_eq!(drain(&mut w, t + SEC).len(), 50);
            assert!(w.nodes.len() <= 50);
        }
    }

    /// Random inserts and random jumps in time, checked against a BTreeMap
    /// of (rounded tick, id): exactly the due items fire, none early, none
    /// lost, in order, and `next_deadline` is exact.
    #[test]
    fn matches_a_reference_model() {
        for seed in 0..20u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut now: u64 = rng.gen_range(0..1 << 50);
            let mut w = TimerWheel::new(us(now));
            let mut model: BTreeMap<(u64, u64), u64> = BTreeMap::new();
            let mut model_tick = now / MS;
            let mut next_id = 0u64;
            for _ in 0..3000 {
                for _ in 0..rng.gen_range(0..8) {
                    let deadline = match rng.gen_range(0..6) {
                        0 => now.saturating_sub(rng.gen_range(0..10 * SEC)),
                        1 => now + rng.gen_range(0..5 * MS),
                        2 => now + rng.gen_range(0..300 * MS),
                        3 => now + rng.gen_range(0..20 * 60 * SEC),
                        4 => now + rng.gen_range(0..48 * HOUR),
                        _ => now + rng.gen_range(0..3 * 365 * 24 * HOUR),
                    };
                    w.insert(us(deadline), next_id);
                    model.insert((deadline.div_ceil(MS), next_id), deadline);
                    next_id += 1;
                }
                assert_eq!(w.len(), model.len());
                assert_eq!(
                    w.next_deadline(),
                    model.keys().next().map(|&(tick, _)| us(tick * MS))
                );
                let target = match rng.gen_range(0..10) {
                    0 => now.saturating_sub(rng.gen_range(0..SEC)),
                    1..=4 => now + rng.gen_range(0..3 * MS),
                    5..=7 => now + rng.gen_range(0..2 * SEC),
                    8 => now + rng.gen_range(0..2 * HOUR),
                    // Straight to the next deadline, to the microsecond.
                    _ => w.next_deadline().map_or(now, |d| d.micros().max(now)),
                };
                let mut fired = Vec::new();
                w.expire(us(target), &mut |id| fired.push(id));
                model_tick = model_tick.max(target / MS);
                let mut expected: Vec<u64> = Vec::new();
                while let Some(entry) = model.first_entry() {
                    if entry.key().0 > model_tick {
                        break;
                    }
                    let ((_, id), deadline) = entry.remove_entry();
                    assert!(deadline <= now.max(target), "{id} due late?");
                    expected.push(id);
                }
                let mut got = fired.clone();
                got.sort_unstable();
                expected.sort_unstable();
                assert_eq!(got, expected, "seed {seed} at {target}");
                now = now.max(target);
            }
            // Everything left comes out at the end of time, in order.
            let mut ticks = Vec::new();
            let all: BTreeMap<u64, u64> = model.iter().map(|(&(t, id), _)| (id, t)).collect();
            w.expire(us(u64::MAX), &mut |id| ticks.push(all[&id]));
            assert_eq!(ticks.len(), model.len());
            assert!(ticks.windows(2).all(|p| p[0] <= p[1]));
            assert!(w.is_empty());
        }
    }

    /// Items that were not already due on insert come out in order of
    /// rounded deadline.
    #[test]
    fn fires_in_deadline_order() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut w = TimerWheel::new(us(0));
        let mut deadlines = Vec::new();
        for id in 0..5000usize {
            let d = rng.gen_range(1..10 * HOUR);
            deadlines.push(d.div_ceil(MS));
            w.insert(us(d), id);
        }
        let mut order = Vec::new();
        let mut now = 0;
        while now < 11 * HOUR {
            now += rng.gen_range(0..20 * 60 * SEC);
            w.expire(us(now), &mut |id| order.push(deadlines[id]));
        }
        assert_eq!(order.len(), 5000);
        assert!(order.windows(2).all(|p| p[0] <= p[1]));
    }
}
