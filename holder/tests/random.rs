//! The holder machine against a fake world — a flow, ports whose drivers
//! revoke and die, an egress that flaps, answers that come late — driven by
//! seeded random event sequences. After every step the invariants of
//! docs/offload.md ("The holder's machine") are checked:
//!
//! - a revoked context is never used again (activated, asked, answered)
//!   once the holder was told;
//! - the flow never goes through a context the holder knows is revoked,
//!   and never sends while held (no cleartext, no stall passed off as
//!   progress);
//! - the software path is switched to before a context is drained, and a
//!   context is drained before it is released;
//! - every context made is released exactly once, by the end;
//! - a context starts exactly where the software path stopped, and the
//!   software path resumes exactly where a context stopped: stream ranges
//!   never overlap, so no nonce or sequence number is used twice.

use capnet_holder::{Action, ContextId, CreateError, Egress, Event, Holder, Offers, Path, TlsRx};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

const PORTS: [(&str, bool); 3] = [("p0", true), ("p1", true), ("p2", false)];

#[derive(Debug, Default)]
struct Ctx {
    port: String,
    /// Revoked by its NIC, or its driver died.
    revoked: bool,
    switched: bool,
    drained: bool,
    released: u32,
}

struct World {
    rng: StdRng,
    h: Holder<TlsRx>,
    /// Index into PORTS; `None`: no port.
    egress: Option<usize>,
    dead: HashSet<usize>,
    /// The flow's stream position and what it goes through.
    pos: u64,
    path: Path,
    ctxs: HashMap<ContextId, Ctx>,
    next_id: u64,
    /// Told to the holder as revoked (or on a driver it was told died).
    told_revoked: HashSet<ContextId>,
    /// Answers and events on their way, delivered in random order.
    pending: Vec<Event<u64>>,
    /// Random refusals of creates (off for the liveness check).
    refuse: bool,
    log: Vec<String>,
    activations: usize,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let egress = Some(rng.gen_range(0..PORTS.len()));
        let h = Holder::new(Egress::unknown());
        let mut w = World {
            rng,
            h,
            egress,
            dead: HashSet::new(),
            pos: 0,
            path: Path::Software,
            ctxs: HashMap::new(),
            next_id: 1,
            told_revoked: HashSet::new(),
            pending: Vec::new(),
            refuse: true,
            log: Vec::new(),
            activations: 0,
        };
        w.perform_all();
        w
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nholder: {:?}\nworld path {:?} pos {}\nlast steps:\n{}",
            self.h,
            self.path,
            self.pos,
            self.log[self.log.len().saturating_sub(30)..].join("\n")
        )
    }

    fn check(&self, ok: bool, what: &str) {
        if !ok {
            self.fail(what);
        }
    }

    /// A context may be used (activated, asked, answered).
    fn usable(&self, ctx: ContextId) -> bool {
        let c = &self.ctxs[&ctx];
        !self.told_revoked.contains(&ctx) && !c.switched && c.released == 0
    }

    fn deliver(&mut self, ev: Event<u64>) {
        match &ev {
            Event::Revoked { ctx } => {
                self.told_revoked.insert(*ctx);
            }
            Event::DriverDied { port } => {
                for (id, c) in &self.ctxs {
                    if &c.port == port {
                        self.told_revoked.insert(*id);
                    }
                }
            }
            // The software path never stopped: the flow goes on once the
            // holder knows.
            Event::CannotOffload => self.path = Path::Software,
            _ => {}
        }
        let r = self.h.handle(ev.clone());
        self.log
            .push(format!("event {ev:?} -> {r:?} ({})", self.h.phase()));
        self.perform_all();
    }

    fn perform_all(&mut self) {
        while let Some(a) = self.h.poll_action() {
            self.log.push(format!("  action {a:?}"));
            self.perform(a);
        }
        // The machine's idea of the path is the world's.
        self.check(
            self.h.path() == self.path,
            "the holder's path is not the flow's",
        );
        if let Path::Context(c) = self.path {
            self.check(
                !self.told_revoked.contains(&c),
                "the flow goes through a context known to be revoked",
            );
        }
    }

    fn perform(&mut self, a: Action<u64>) {
        match a {
            Action::PauseSoftware => {
                self.check(self.path == Path::Software, "paused a flow not in software");
                self.path = Path::Held;
                let ev = if self.rng.gen_ratio(1, 10) {
                    Event::CannotOffload
                } else {
                    Event::SoftwarePaused { at: self.pos }
                };
                self.pending.push(ev);
            }
            Action::Create { at, .. } => {
                self.check(self.path == Path::Held, "created while the flow moves");
                self.check(
                    at == self.pos,
                    "a context would not start where software stopped",
                );
                // The create goes where the flow leaves now (netsrv decides).
                let ev = match self.egress {
                    None => Event::CreateFailed(CreateError::Refused),
                    Some(i) if !PORTS[i].1 => Event::CreateFailed(CreateError::Unsupported),
                    Some(i) if self.dead.contains(&i) => Event::CreateFailed(CreateError::Refused),
                    Some(_) if self.refuse && self.rng.gen_ratio(1, 10) => {
                        Event::CreateFailed(CreateError::Refused)
                    }
                    Some(i) => {
                        let ctx = ContextId(self.next_id);
                        self.next_id += 1;
                        self.ctxs.insert(
                            ctx,
                            Ctx {
                                port: PORTS[i].0.into(),
                                ..Ctx::default()
                            },
                        );
                        // Sometimes the NIC takes it back before the
                        // answer arrives.
                        if self.rng.gen_ratio(1, 8) {
                            self.ctxs.get_mut(&ctx).unwrap().revoked = true;
                            self.pending.push(Event::Revoked { ctx });
                        }
                        Event::Created {
                            ctx,
                            port: PORTS[i].0.into(),
                        }
                    }
                };
                self.pending.push(ev);
            }
            Action::Activate { ctx, at } => {
                self.check(self.usable(ctx), "activated a revoked or released context");
                self.check(
                    self.path == Path::Held && at == self.pos,
                    "activated elsewhere",
                );
                self.path = Path::Context(ctx);
                self.activations += 1;
            }
            Action::ResumeSoftware { at } => {
                self.check(
                    self.path == Path::Held && at == self.pos,
                    "resumed elsewhere",
                );
                self.path = Path::Software;
            }
            Action::SwitchToSoftware { ctx } => {
                self.check(
                    self.path == Path::Context(ctx),
                    "switched from a context not in use",
                );
                self.path = Path::Software;
                self.ctxs.get_mut(&ctx).unwrap().switched = true;
                self.pending
                    .push(Event::SoftwareResumed { ctx, at: self.pos });
            }
            Action::Drain { ctx } => {
                self.check(self.path != Path::Context(ctx), "drained before the switch");
                let c = self.ctxs.get_mut(&ctx).unwrap();
                c.switched = true;
                c.drained = true;
                self.pending.push(Event::Drained { ctx });
            }
            Action::Release { ctx } => {
                let c = &self.ctxs[&ctx];
                self.check(c.drained, "released before the drain was asked");
                self.check(c.released == 0, "released twice");
                self.ctxs.get_mut(&ctx).unwrap().released += 1;
                self.pending.push(Event::Released { ctx });
            }
            Action::LocateRecord { ctx, at } => {
                self.check(self.usable(ctx), "asked about a context no longer in use");
                let record = self.rng.gen_bool(0.5).then_some(at / 100);
                self.pending.push(Event::RecordLocated { ctx, at, record });
            }
            Action::Resync { ctx, .. } => {
                self.check(self.usable(ctx), "answered a context no longer in use");
            }
        }
    }

    /// The flow moves on, through whatever it goes through.
    fn send(&mut self) {
        match self.path {
            Path::Held => {}
            Path::Software => self.pos += self.rng.gen_range(1..2000),
            Path::Context(c) => {
                self.check(
                    !self.told_revoked.contains(&c),
                    "sent through a revoked context",
                );
                self.pos += self.rng.gen_range(1..2000);
            }
        }
    }

    fn deliver_one(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.pending.len());
        let ev = self.pending.swap_remove(i);
        self.deliver(ev);
    }

    fn egress_event(&mut self) -> Event<u64> {
        match self.egress {
            None => Event::Egress(Egress::NoPort),
            Some(i) => {
                let offers = match self.rng.gen_range(0..3) {
                    0 if PORTS[i].1 => Offers::Yes,
                    0 => Offers::No,
                    _ => Offers::Unknown,
                };
                Event::Egress(Egress::port(PORTS[i].0, offers))
            }
        }
    }

    fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=29 => self.deliver_one(),
            30..=49 => self.send(),
            50..=59 => {
                // The egress changes; netsrv's report is on its way.
                self.egress = self
                    .rng
                    .gen_bool(0.85)
                    .then(|| self.rng.gen_range(0..PORTS.len()));
                let ev = self.egress_event();
                self.pending.push(ev);
            }
            60..=66 => {
                // A NIC revokes one of its contexts (perhaps twice).
                let live: Vec<ContextId> = self
                    .ctxs
                    .iter()
                    .filter(|(_, c)| c.released == 0)
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(&ctx) = live.get(self.rng.gen_range(0..live.len().max(1))) {
                    self.ctxs.get_mut(&ctx).unwrap().revoked = true;
                    self.pending.push(Event::Revoked { ctx });
                }
            }
            67..=70 => {
                // A driver dies; it comes back (same port, new instance),
                // which netsrv reports as an egress change.
                let i = self.rng.gen_range(0..PORTS.len());
                for c in self.ctxs.values_mut() {
                    if c.port == PORTS[i].0 {
                        c.revoked = true;
                    }
                }
                self.dead.insert(i);
                self.pending.push(Event::DriverDied {
                    port: PORTS[i].0.into(),
                });
            }
            71..=74 => {
                if let Some(i) = self.dead.iter().next().copied() {
                    self.dead.remove(&i);
                    if self.egress == Some(i) {
                        let ev = self.egress_event();
                        self.pending.push(ev);
                    }
                }
            }
            75..=79 => self.deliver(Event::Rekeyed),
            80..=87 => {
                // The NIC asks for a resync: usually the context in use.
                let ctx = match self.path {
                    Path::Context(c) if self.rng.gen_bool(0.8) => c,
                    _ => ContextId(self.rng.gen_range(1..self.next_id + 1)),
                };
                let at = self.pos + self.rng.gen_range(0..500);
                self.pending.push(Event::ResyncRequested { ctx, at });
            }
            _ => {
                // Old news, again: events naming a context, repeated.
                let ctx = ContextId(self.rng.gen_range(1..self.next_id + 1));
                let ev = match self.rng.gen_range(0..4) {
                    0 => Event::Revoked { ctx },
                    1 => Event::Drained { ctx },
                    2 => Event::Released { ctx },
                    _ => Event::Created {
                        ctx,
                        port: "p0".into(),
                    },
                };
                // Only about contexts that exist and are done with.
                if self.ctxs.get(&ctx).is_some_and(|c| c.released > 0) {
                    if let Event::Revoked { ctx } = ev {
                        self.told_revoked.insert(ctx);
                    }
                    self.deliver(ev);
                }
            }
        }
    }

    /// Delivers everything on its way, and what that brings, until quiet.
    fn settle(&mut self) {
        let mut rounds = 0;
        while !self.pending.is_empty() {
            self.deliver_one();
            rounds += 1;
            self.check(rounds < 10_000, "the holder never settles");
        }
    }
}

/// Returns how many contexts were made and how many times one was used.
fn run(seed: u64, steps: usize) -> (usize, usize) {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }

    // Liveness: a live port that offers the kind gets the flow offloaded.
    w.settle();
    w.dead.clear();
    w.refuse = false;
    w.egress = Some(0);
    w.pending
        .push(Event::Egress(Egress::port("p0", Offers::Yes)));
    w.settle();
    if let Path::Software = w.path {
        // A flow that could not be offloaded just then (CannotOffload)
        // tries again with new keys.
        for _ in 0..20 {
            if w.path != Path::Software {
                break;
            }
            w.deliver(Event::Rekeyed);
            w.settle();
        }
    }
    w.check(
        matches!(w.path, Path::Context(_)),
        "not offloaded on a port that offers the kind",
    );

    // The end: everything made is released, exactly once.
    w.deliver(Event::Close);
    w.settle();
    w.check(w.h.is_closed(), "not closed after everything settled");
    w.check(w.h.held().is_none(), "a context is still held after close");
    for (id, c) in &w.ctxs {
        w.check(
            c.released == 1,
            &format!("{id} released {} times", c.released),
        );
    }
    (w.ctxs.len(), w.activations)
}

#[test]
fn random_event_sequences_keep_the_invariants() {
    let (mut made, mut used) = (0, 0);
    for seed in 0..600 {
        let (m, u) = run(seed, 300);
        made += m;
        used += u;
    }
    // The sequences did reach the interesting states.
    assert!(
        made > 1500 && used > 1000,
        "{made} contexts made, {used} used"
    );
}

#[test]
fn long_sequences_keep_the_invariants() {
    for seed in 1000..1010 {
        let (made, _) = run(seed, 20_000);
        assert!(made > 50, "{made} contexts made");
    }
}
