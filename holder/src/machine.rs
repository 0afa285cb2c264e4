//! The machine: one context slot (one flow, one kind), its states, and the
//! order in which a context comes and goes.
//!
//! ```text
//!                Egress / Rekeyed (the egress may offer the kind)
//!   Software ─────────────────────────────▶ Pausing ──CannotOffload──▶ Software
//!      ▲                                       │ SoftwarePaused{at}
//!      │ CreateFailed (ResumeSoftware)         ▼
//!      └───────────────────────────────── Creating ──Created, spoiled──▶ Draining
//!                                              │ Created (Activate)     (ResumeSoftware)
//!                                              ▼
//!   Egress, Rekeyed, Revoked, DriverDied,  Offloaded ◀── ResyncRequested / RecordLocated
//!   Close (SwitchToSoftware)                   │
//!                                              ▼
//!                                          Leaving ──SoftwareResumed (Drain)──▶ Draining
//!                                                                                  │ Drained or
//!                                                                                  │ DriverDied (Release)
//!                                                                                  ▼
//!   Pausing (Reoffload) / Software (Stay) / Closed (Close) ◀──Released── Releasing
//! ```
//!
//! Each state consumes itself and returns the next; what a revocation will
//! do once it is over (`Then`) travels with it, so that an egress change or
//! a close that arrives half-way is neither lost nor acted on early.

use crate::event::{Action, ContextId, CreateError, Egress, Event, Ignored, Offers, Path};
use crate::kind::Kind;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;

/// What follows once the context in hand is gone. Ordered: a later wish
/// overrides an earlier one only upwards (a close is never undone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Then {
    /// Software keeps the flow until the egress changes or the keys do
    /// (the driver took the context away; asking it again at once could
    /// loop).
    Stay,
    /// Offload again where the egress now allows.
    Reoffload,
    /// The flow is ending.
    Close,
}

impl Then {
    fn and(self, other: Then) -> Then {
        self.max(other)
    }
}

/// Spoiled creations: `None` keeps the context, `Some(then)` discards it.
fn spoil(discard: Option<Then>, why: Then) -> Option<Then> {
    Some(discard.map_or(why, |d| d.and(why)))
}

enum State<P> {
    /// No context; the software path carries the flow.
    Software,
    /// Waiting for the software path to say where it stopped.
    Pausing { then: Then },
    /// Waiting for the create; the flow waits.
    Creating(Creating<P>),
    /// The flow goes through `ctx`.
    Offloaded { ctx: ContextId, port: String },
    /// Step 1 under way: waiting for the software path to take over.
    Leaving {
        ctx: ContextId,
        port: String,
        then: Then,
    },
    /// Step 2 under way.
    Draining {
        ctx: ContextId,
        port: String,
        then: Then,
    },
    /// Step 3 under way.
    Releasing { ctx: ContextId, then: Then },
    /// The flow ended; nothing is held.
    Closed,
}

impl<P> State<P> {
    fn name(&self) -> &'static str {
        match self {
            State::Software => "software",
            State::Pausing { .. } => "pausing",
            State::Creating(_) => "creating",
            State::Offloaded { .. } => "offloaded",
            State::Leaving { .. } => "leaving",
            State::Draining { .. } => "draining",
            State::Releasing { .. } => "releasing",
            State::Closed => "closed",
        }
    }

    /// The wish an egress change, new keys or a close adds to a state on
    /// its way somewhere.
    fn wish(ev: &Event<P>) -> Option<Then> {
        match ev {
            Event::Egress(_) | Event::Rekeyed => Some(Then::Reoffload),
            Event::Close => Some(Then::Close),
            _ => None,
        }
    }
}

/// A create under way.
struct Creating<P> {
    /// The port asked for (`None`: the flow's egress, whichever it is).
    port: Option<String>,
    /// Where the context starts: where the software path stopped.
    at: P,
    /// What came meanwhile spoiled the context (egress, keys, close).
    discard: Option<Then>,
    /// A revocation of a context not known yet: this one, if the answer
    /// comes second.
    revoked: Option<ContextId>,
    /// Ports whose driver died meanwhile.
    died: Vec<String>,
}

/// What the machine keeps besides its state.
struct Cx<P> {
    egress: Egress,
    /// No context may start before this: the furthest a context started at
    /// or the software path resumed at.
    floor: Option<P>,
    /// The last context made: ids only grow, so an answer or a revocation
    /// naming one at or below it is not about the create under way.
    newest: Option<ContextId>,
    actions: VecDeque<Action<P>>,
}

type Step<P> = (State<P>, Result<(), Ignored<P>>);

fn ok<P>(state: State<P>) -> Step<P> {
    (state, Ok(()))
}

fn ignore<P>(state: State<P>, why: Ignored<P>) -> Step<P> {
    (state, Err(why))
}

/// An event a state has no use for: why it is dropped.
fn unused<P>(ev: &Event<P>) -> Ignored<P> {
    match ev {
        Event::Revoked { ctx }
        | Event::ResyncRequested { ctx, .. }
        | Event::SoftwareResumed { ctx, .. }
        | Event::Drained { ctx }
        | Event::Released { ctx }
        | Event::RecordLocated { ctx, .. } => Ignored::OtherContext(*ctx),
        _ => Ignored::NotAwaited,
    }
}

/// The holder's side of one offload context slot: one flow, one kind.
///
/// Feed it events with [`handle`](Self::handle); perform what
/// [`poll_action`](Self::poll_action) returns, in order, and report each
/// action's outcome as the event it names. At most one such answer is
/// awaited at a time (resync lookups aside).
pub struct Holder<K: Kind> {
    state: State<K::Position>,
    cx: Cx<K::Position>,
    kind: PhantomData<K>,
}

impl<K: Kind> Holder<K> {
    /// A flow in software, on `egress`. If a context could be made there,
    /// the first action is [`Action::PauseSoftware`].
    pub fn new(egress: Egress) -> Holder<K> {
        let mut cx = Cx {
            egress,
            floor: None,
            newest: None,
            actions: VecDeque::new(),
        };
        let state = if cx.egress.may_offer() {
            cx.pause(Then::Reoffload)
        } else {
            State::Software
        };
        Holder {
            state,
            cx,
            kind: PhantomData,
        }
    }

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action<K::Position>> {
        self.cx.actions.pop_front()
    }

    /// Takes one event. `Err` says why it changed nothing (it is dropped;
    /// events arrive late and twice).
    pub fn handle(&mut self, ev: Event<K::Position>) -> Result<(), Ignored<K::Position>> {
        if matches!(self.state, State::Closed) {
            return Err(Ignored::Closed);
        }
        if let Event::Egress(e) = &ev {
            self.cx.egress = e.clone();
        }
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, result) = match state {
            State::Software => self.cx.software(ev),
            State::Pausing { then } => self.cx.pausing(then, ev),
            State::Creating(c) => self.cx.creating(c, ev),
            State::Offloaded { ctx, port } => self.cx.offloaded::<K>(ctx, port, ev),
            State::Leaving { ctx, port, then } => self.cx.leaving(ctx, port, then, ev),
            State::Draining { ctx, port, then } => self.cx.draining(ctx, port, then, ev),
            State::Releasing { ctx, then } => self.cx.releasing(ctx, then, ev),
            State::Closed => unreachable!("checked above"),
        };
        self.state = next;
        result
    }

    /// What the flow goes through, as ordered so far.
    pub fn path(&self) -> Path {
        match self.state {
            State::Offloaded { ctx, .. } => Path::Context(ctx),
            State::Pausing { .. } | State::Creating(_) => Path::Held,
            _ => Path::Software,
        }
    }

    /// The context not yet released, if any.
    pub fn held(&self) -> Option<ContextId> {
        match self.state {
            State::Offloaded { ctx, .. }
            | State::Leaving { ctx, .. }
            | State::Draining { ctx, .. }
            | State::Releasing { ctx, .. } => Some(ctx),
            _ => None,
        }
    }

    /// The flow ended and everything it held was released.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The state's name, for logs.
    pub fn phase(&self) -> &'static str {
        self.state.name()
    }

    pub fn egress(&self) -> &Egress {
        &self.cx.egress
    }
}

impl<K: Kind> fmt::Debug for Holder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("kind", &K::NAME)
            .field("state", &self.state.name())
            .field("held", &self.held())
            .field("egress", &self.cx.egress)
            .field("floor", &self.cx.floor)
            .finish()
    }
}

impl<P: Copy + Ord> Cx<P> {
    fn push(&mut self, action: Action<P>) {
        self.actions.push_back(action);
    }

    fn pause(&mut self, then: Then) -> State<P> {
        self.push(Action::PauseSoftware);
        State::Pausing { then }
    }

    fn raise_floor(&mut self, at: P) {
        self.floor = Some(self.floor.map_or(at, |f| f.max(at)));
    }

    /// Step 1 of leaving `ctx`.
    fn leave(&mut self, ctx: ContextId, port: String, then: Then) -> State<P> {
        self.push(Action::SwitchToSoftware { ctx });
        State::Leaving { ctx, port, then }
    }

    /// A context is gone: on to what was wished meanwhile.
    fn after(&mut self, then: Then) -> State<P> {
        match then {
            Then::Close => State::Closed,
            Then::Reoffload if self.egress.may_offer() => self.pause(Then::Reoffload),
            Then::Reoffload | Then::Stay => State::Software,
        }
    }

    fn software(&mut self, ev: Event<P>) -> Step<P> {
        match ev {
            Event::Egress(_) | Event::Rekeyed if self.egress.may_offer() => {
                ok(self.pause(Then::Reoffload))
            }
            Event::Egress(_) | Event::Rekeyed | Event::DriverDied { .. } => ok(State::Software),
            Event::Close => ok(State::Closed),
            ev => ignore(State::Software, unused(&ev)),
        }
    }

    fn pausing(&mut self, then: Then, ev: Event<P>) -> Step<P> {
        if let Some(wish) = State::wish(&ev) {
            return ok(State::Pausing {
                then: then.and(wish),
            });
        }
        match ev {
            Event::SoftwarePaused { at } => {
                if then == Then::Close {
                    self.push(Action::ResumeSoftware { at });
                    return ok(State::Closed);
                }
                if let Some(floor) = self.floor.filter(|&f| at < f) {
                    self.push(Action::ResumeSoftware { at });
                    return ignore(
                        State::Software,
                        Ignored::PositionBehind {
                            at,
                            resumed_at: floor,
                        },
                    );
                }
                if !self.egress.may_offer() {
                    self.push(Action::ResumeSoftware { at });
                    return ok(State::Software);
                }
                let port = self.egress.port_name().map(str::to_owned);
                self.push(Action::Create {
                    port: port.clone(),
                    at,
                });
                ok(State::Creating(Creating {
                    port,
                    at,
                    discard: None,
                    revoked: None,
                    died: Vec::new(),
                }))
            }
            Event::CannotOffload => ok(match then {
                Then::Close => State::Closed,
                _ => State::Software,
            }),
            Event::DriverDied { .. } => ok(State::Pausing { then }),
            ev => ignore(State::Pausing { then }, unused(&ev)),
        }
    }

    fn creating(&mut self, mut c: Creating<P>, ev: Event<P>) -> Step<P> {
        if let Some(wish) = State::wish(&ev) {
            c.discard = spoil(c.discard, wish);
            return ok(State::Creating(c));
        }
        match ev {
            // The create may land on another port than asked (the egress
            // moved and its report is on the way): which one is known only
            // from the answer.
            Event::DriverDied { port } => {
                if !c.died.contains(&port) {
                    c.died.push(port);
                }
                ok(State::Creating(c))
            }
            // Perhaps the context being made: its answer may come second.
            Event::Revoked { ctx } if self.is_new(ctx) => {
                c.revoked = Some(ctx);
                ok(State::Creating(c))
            }
            Event::Created { ctx, port } if self.is_new(ctx) => {
                self.newest = Some(ctx);
                if c.revoked == Some(ctx) || c.died.contains(&port) {
                    c.discard = spoil(c.discard, Then::Stay);
                }
                let at = c.at;
                match c.discard {
                    None => {
                        self.raise_floor(at);
                        self.push(Action::Activate { ctx, at });
                        ok(State::Offloaded { ctx, port })
                    }
                    // Never used: nothing to switch from, but it may be
                    // bound already (the drain unbinds it).
                    Some(then) => {
                        self.push(Action::ResumeSoftware { at });
                        self.push(Action::Drain { ctx });
                        ok(State::Draining { ctx, port, then })
                    }
                }
            }
            Event::CreateFailed(e) => {
                if e == CreateError::Unsupported && c.discard.is_none() {
                    self.refused_by(c.port.as_deref());
                }
                self.push(Action::ResumeSoftware { at: c.at });
                ok(match c.discard {
                    None | Some(Then::Stay) => State::Software,
                    // Pause again: the new egress or keys are read afresh.
                    Some(then) => self.after(then),
                })
            }
            ev => {
                let why = unused(&ev);
                ignore(State::Creating(c), why)
            }
        }
    }

    /// `ctx` is newer than every context made so far.
    fn is_new(&self, ctx: ContextId) -> bool {
        self.newest.is_none_or(|n| ctx > n)
    }

    /// The egress `port` answered that it does not offer the kind.
    fn refused_by(&mut self, port: Option<&str>) {
        if let Egress::Port {
            port: now,
            offers: offers @ (Offers::Unknown | Offers::Yes),
        } = &mut self.egress
        {
            if port.is_none() || now.as_deref() == port {
                *offers = Offers::No;
            }
        }
    }

    fn offloaded<K: Kind<Position = P>>(
        &mut self,
        ctx: ContextId,
        port: String,
        ev: Event<P>,
    ) -> Step<P> {
        if let Some(wish) = State::wish(&ev) {
            return ok(self.leave(ctx, port, wish));
        }
        match ev {
            Event::Revoked { ctx: c } if c == ctx => ok(self.leave(ctx, port, Then::Stay)),
            Event::DriverDied { port: dead } if dead == port => {
                ok(self.leave(ctx, port, Then::Stay))
            }
            Event::DriverDied { .. } => ok(State::Offloaded { ctx, port }),
            Event::ResyncRequested { ctx: c, .. } if c == ctx && !K::RESYNCS => {
                ignore(State::Offloaded { ctx, port }, Ignored::NoResync)
            }
            Event::ResyncRequested { ctx: c, at } if c == ctx => {
                self.push(Action::LocateRecord { ctx, at });
                ok(State::Offloaded { ctx, port })
            }
            Event::RecordLocated { ctx: c, at, record } if c == ctx => {
                self.push(Action::Resync { ctx, at, record });
                ok(State::Offloaded { ctx, port })
            }
            ev => ignore(State::Offloaded { ctx, port }, unused(&ev)),
        }
    }

    /// Step 1: waiting for the software path to take over from `ctx`.
    fn leaving(&mut self, ctx: ContextId, port: String, then: Then, ev: Event<P>) -> Step<P> {
        match ev {
            Event::SoftwareResumed { ctx: c, at } if c == ctx => {
                self.raise_floor(at);
                self.push(Action::Drain { ctx });
                ok(State::Draining { ctx, port, then })
            }
            ev => {
                let (then, result) = on_the_way_out(ctx, then, &ev);
                (State::Leaving { ctx, port, then }, result)
            }
        }
    }

    /// Step 2: waiting until nothing naming `ctx` is in flight.
    fn draining(&mut self, ctx: ContextId, port: String, then: Then, ev: Event<P>) -> Step<P> {
        match ev {
            Event::Drained { ctx: c } if c == ctx => {
                self.push(Action::Release { ctx });
                ok(State::Releasing { ctx, then })
            }
            // A dead driver has nothing in flight: the drain is over.
            Event::DriverDied { port: dead } if dead == port => {
                self.push(Action::Release { ctx });
                ok(State::Releasing { ctx, then })
            }
            ev => {
                let (then, result) = on_the_way_out(ctx, then, &ev);
                (State::Draining { ctx, port, then }, result)
            }
        }
    }

    /// Step 3: waiting for the release.
    fn releasing(&mut self, ctx: ContextId, then: Then, ev: Event<P>) -> Step<P> {
        match ev {
            Event::Released { ctx: c } if c == ctx => ok(self.after(then)),
            ev => {
                let (then, result) = on_the_way_out(ctx, then, &ev);
                (State::Releasing { ctx, then }, result)
            }
        }
    }
}

/// What the leaving states make of anything but their awaited answer:
/// wishes are kept for later; news about `ctx` changes nothing (it is on
/// its way out already).
fn on_the_way_out<P>(ctx: ContextId, then: Then, ev: &Event<P>) -> (Then, Result<(), Ignored<P>>) {
    if let Some(wish) = State::wish(ev) {
        return (then.and(wish), Ok(()));
    }
    match ev {
        Event::Revoked { ctx: c } if *c == ctx => (then, Ok(())),
        Event::DriverDied { .. } => (then, Ok(())),
        ev => (then, Err(unused(ev))),
    }
}
