//! The holder's side of a NIC offload context, as a sans-IO state machine.
//!
//! A service that owns a flow's state (tlsd for TLS; later ipsecd for ESP
//! and nvmeddp for NVMe/TCP) holds the offload contexts a NIC driver mints
//! for it. Whatever takes a context away — the flow's egress moving to
//! another port, the driver revoking it, the driver dying, new keys — it
//! must leave in one order (docs/offload.md, "Revoking, in this order"):
//!
//! 1. the flow switches to the service's software path;
//! 2. drain: no descriptor naming the context is in flight on the old port;
//! 3. the context is released (deleted in the NIC);
//! 4. where the egress offers the kind, a new context is created there,
//!    starting where the software path stopped.
//!
//! [`Holder`] decides that order for one context slot (one flow, one kind).
//! It does no I/O: the service feeds it [`Event`]s and performs the
//! [`Action`]s it emits, reporting each outcome as another event. It knows
//! nothing of capnp, threads or the protocol; a [`Kind`] gives the few
//! parameters that differ.
//!
//! ```
//! use capnet_holder::{Action, ContextId, Egress, Event, Holder, TlsTx};
//!
//! let mut h = Holder::<TlsTx>::new(Egress::unknown());
//! assert_eq!(h.poll_action(), Some(Action::PauseSoftware));
//! h.handle(Event::SoftwarePaused { at: 0 }).unwrap();
//! assert_eq!(h.poll_action(), Some(Action::Create { port: None, at: 0 }));
//! h.handle(Event::Created { ctx: ContextId(1), port: "sim0".into() }).unwrap();
//! assert_eq!(h.poll_action(), Some(Action::Activate { ctx: ContextId(1), at: 0 }));
//! ```

mod event;
mod kind;
mod machine;

pub use event::{Action, ContextId, CreateError, Egress, Event, Ignored, Offers, Path};
pub use kind::{Kind, TlsRx, TlsTx};
pub use machine::Holder;
