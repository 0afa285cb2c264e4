//! What goes into the holder machine and what comes out of it.

use std::fmt;

/// A context, named by the service that holds it: unique per holder and
/// growing (the driver's own ids may repeat across driver restarts), so
/// that a late or repeated answer about an old context is told apart from
/// the one under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub u64);

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "context {}", self.0)
    }
}

/// Whether a port offers the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offers {
    Yes,
    No,
    /// Not known: asking finds out (a port without it answers
    /// `unsupported`).
    Unknown,
}

/// Where the flow leaves the host, as the network service last said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Egress {
    /// No port carries the flow (no route, every leg of its bond down).
    NoPort,
    /// `port` carries it (`None`: not told by name yet; a create goes to
    /// wherever the flow leaves).
    Port {
        port: Option<String>,
        offers: Offers,
    },
}

impl Egress {
    /// Before the first report: worth asking.
    pub fn unknown() -> Egress {
        Egress::Port {
            port: None,
            offers: Offers::Unknown,
        }
    }

    /// A port by name, offering the kind or not (or not known).
    pub fn port(name: impl Into<String>, offers: Offers) -> Egress {
        Egress::Port {
            port: Some(name.into()),
            offers,
        }
    }

    /// A context could be made here.
    pub(crate) fn may_offer(&self) -> bool {
        matches!(self, Egress::Port { offers, .. } if *offers != Offers::No)
    }

    pub(crate) fn port_name(&self) -> Option<&str> {
        match self {
            Egress::Port { port, .. } => port.as_deref(),
            Egress::NoPort => None,
        }
    }
}

/// Why a create failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The port does not offer the kind: not asked again until the egress
    /// changes.
    Unsupported,
    /// Anything else (no egress now, no room in the NIC, bad parameters):
    /// asked again at the next egress change or rekey.
    Refused,
}

/// An input: something the service, the network service or the NIC said,
/// or the outcome of an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// The flow's egress changed. Every report moves a held context: the
    /// network service reports only real changes (another port, or another
    /// instance of its driver).
    Egress(Egress),
    /// The flow's keys changed: a held context has the old ones. Replace
    /// it; in software, try offloading again.
    Rekeyed,
    /// The flow is ending: let go of everything.
    Close,
    /// The driver revoked `ctx` (its port is going away, or it gave up on
    /// it). It must not be used again, but it is still released.
    Revoked { ctx: ContextId },
    /// The driver of `port` died: its contexts are gone, and nothing of
    /// theirs is in flight any more.
    DriverDied { port: String },
    /// The NIC lost its place and asks whether a record or PDU starts at
    /// `at` (kinds that resync).
    ResyncRequested { ctx: ContextId, at: P },

    /// [`Action::PauseSoftware`] done: the software path stopped at `at`.
    SoftwarePaused { at: P },
    /// [`Action::PauseSoftware`] refused: the flow cannot be offloaded now
    /// (its cipher, or it is closing).
    CannotOffload,
    /// [`Action::Create`] done: `ctx` exists on `port`.
    Created { ctx: ContextId, port: String },
    /// [`Action::Create`] failed: nothing was made.
    CreateFailed(CreateError),
    /// [`Action::SwitchToSoftware`] done: the software path carries the
    /// flow from `at`, where `ctx` stopped.
    SoftwareResumed { ctx: ContextId, at: P },
    /// [`Action::Drain`] done: nothing naming `ctx` is in flight.
    Drained { ctx: ContextId },
    /// [`Action::Release`] done (also when the call failed because the
    /// context was gone already: the holder's handle is dropped).
    Released { ctx: ContextId },
    /// [`Action::LocateRecord`] answered: record `record` starts at `at`,
    /// or (`None`) no record starts there.
    RecordLocated {
        ctx: ContextId,
        at: P,
        record: Option<u64>,
    },
}

/// An output: something the service must do. Those that say so answer with
/// an event, exactly once (answers that name a context may come late and be
/// dropped); the machine waits for it before the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Stop handing the flow to the software path and say where it stopped
    /// ([`Event::SoftwarePaused`] or [`Event::CannotOffload`]). Until the
    /// flow is activated on a context or resumed, it waits.
    PauseSoftware,
    /// Create a context on `port` (`None`: the flow's current egress) that
    /// starts at `at` ([`Event::Created`] or [`Event::CreateFailed`]).
    Create { port: Option<String>, at: P },
    /// The flow goes through `ctx` from `at` on (no answer).
    Activate { ctx: ContextId, at: P },
    /// No context after all: the software path goes on from `at`, where it
    /// paused (no answer).
    ResumeSoftware { at: P },
    /// Step 1: take the flow off `ctx`; the software path carries it from
    /// where `ctx` stopped ([`Event::SoftwareResumed`]).
    SwitchToSoftware { ctx: ContextId },
    /// Step 2: wait until nothing naming `ctx` is in flight
    /// ([`Event::Drained`]).
    Drain { ctx: ContextId },
    /// Step 3: delete `ctx` in the NIC and drop the handle
    /// ([`Event::Released`]). Emitted exactly once per context.
    Release { ctx: ContextId },
    /// Find out whether a record starts at `at` (a resync request of `ctx`;
    /// [`Event::RecordLocated`], whenever the flow gets there).
    LocateRecord { ctx: ContextId, at: P },
    /// Answer `ctx`'s resync request at `at` (no answer).
    Resync {
        ctx: ContextId,
        at: P,
        record: Option<u64>,
    },
}

/// What the flow goes through now, as the machine has ordered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The service's software path.
    Software,
    /// Neither: the flow waits while a context is made.
    Held,
    /// The context.
    Context(ContextId),
}

/// Why an event changed nothing. Not a failure of the machine: events
/// arrive late, twice, or about contexts long gone, and are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored<P> {
    /// An answer to a request the machine is not waiting for (a duplicate,
    /// or late after it moved on).
    NotAwaited,
    /// About a context the flow does not go through now.
    OtherContext(ContextId),
    /// A resync request for a kind that has none.
    NoResync,
    /// The flow is closed.
    Closed,
    /// The software path said it stopped at `at`, before `resumed_at` where
    /// it last took over from a context: a context starting there would
    /// reuse sequence numbers. The software path resumes; no context is
    /// made.
    PositionBehind { at: P, resumed_at: P },
}

impl<P: fmt::Debug> fmt::Display for Ignored<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotAwaited => write!(f, "an answer nothing waits for"),
            Ignored::OtherContext(ctx) => write!(f, "about {ctx}, which the flow does not use"),
            Ignored::NoResync => write!(f, "a resync request for a kind without resync"),
            Ignored::Closed => write!(f, "the flow is closed"),
            Ignored::PositionBehind { at, resumed_at } => write!(
                f,
                "the software path stopped at {at:?}, before {resumed_at:?} where it last \
                 resumed: no context may start there"
            ),
        }
    }
}

impl<P: fmt::Debug> std::error::Error for Ignored<P> {}
