//! Every transition of the holder machine, one scenario at a time, with the
//! actions it emits checked in order.

use capnet_holder::{
    Action, ContextId, CreateError, Egress, Event, Holder, Ignored, Offers, Path, TlsRx, TlsTx,
};

type H = Holder<TlsRx>;
type A = Action<u64>;

const C1: ContextId = ContextId(1);
const C2: ContextId = ContextId(2);
const C3: ContextId = ContextId(3);

fn drain(h: &mut H) -> Vec<A> {
    std::iter::from_fn(|| h.poll_action()).collect()
}

fn on(h: &mut H, ev: Event<u64>) -> Vec<A> {
    h.handle(ev.clone())
        .unwrap_or_else(|e| panic!("{ev:?} in {h:?}: {e}"));
    drain(h)
}

fn egress(port: &str) -> Event<u64> {
    Event::Egress(Egress::port(port, Offers::Unknown))
}

fn created(ctx: ContextId, port: &str) -> Event<u64> {
    Event::Created {
        ctx,
        port: port.into(),
    }
}

/// A holder offloaded on `ctx` at `at`, port p0.
fn offloaded(ctx: ContextId, at: u64) -> H {
    let mut h = H::new(Egress::port("p0", Offers::Unknown));
    assert_eq!(drain(&mut h), [A::PauseSoftware]);
    assert_eq!(
        on(&mut h, Event::SoftwarePaused { at }),
        [A::Create {
            port: Some("p0".into()),
            at
        }]
    );
    assert_eq!(on(&mut h, created(ctx, "p0")), [A::Activate { ctx, at }]);
    assert_eq!(h.path(), Path::Context(ctx));
    h
}

/// Steps 1 to 3 for `ctx`, the software path resuming at `at`; returns
/// what follows the release.
fn revoke(h: &mut H, ctx: ContextId, at: u64) -> Vec<A> {
    assert_eq!(
        on(h, Event::SoftwareResumed { ctx, at }),
        [A::Drain { ctx }]
    );
    assert_eq!(on(h, Event::Drained { ctx }), [A::Release { ctx }]);
    on(h, Event::Released { ctx })
}

#[test]
fn the_first_context_starts_where_software_stopped() {
    let h = offloaded(C1, 40);
    assert_eq!(h.held(), Some(C1));
    assert_eq!(h.phase(), "offloaded");
}

#[test]
fn no_port_or_a_port_without_the_kind_asks_nothing() {
    assert_eq!(drain(&mut H::new(Egress::NoPort)), []);
    assert_eq!(drain(&mut H::new(Egress::port("p1", Offers::No))), []);
    let mut h = H::new(Egress::unknown());
    assert_eq!(drain(&mut h), [A::PauseSoftware]);
    assert_eq!(h.path(), Path::Held);
}

#[test]
fn a_flow_that_cannot_be_offloaded_stays_in_software() {
    let mut h = H::new(Egress::unknown());
    drain(&mut h);
    assert_eq!(on(&mut h, Event::CannotOffload), []);
    assert_eq!(h.path(), Path::Software);
    // New keys are a new chance.
    assert_eq!(on(&mut h, Event::Rekeyed), [A::PauseSoftware]);
}

#[test]
fn an_unsupported_port_is_not_asked_again_until_the_egress_changes() {
    let mut h = H::new(Egress::port("p1", Offers::Unknown));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 5 });
    assert_eq!(
        on(&mut h, Event::CreateFailed(CreateError::Unsupported)),
        [A::ResumeSoftware { at: 5 }]
    );
    assert_eq!(h.egress(), &Egress::port("p1", Offers::No));
    assert_eq!(on(&mut h, Event::Rekeyed), []);
    assert_eq!(on(&mut h, egress("p0")), [A::PauseSoftware]);
}

#[test]
fn a_refused_create_is_tried_again_on_new_keys() {
    let mut h = H::new(Egress::port("p0", Offers::Yes));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 5 });
    assert_eq!(
        on(&mut h, Event::CreateFailed(CreateError::Refused)),
        [A::ResumeSoftware { at: 5 }]
    );
    assert_eq!(h.path(), Path::Software);
    assert_eq!(on(&mut h, Event::Rekeyed), [A::PauseSoftware]);
}

#[test]
fn an_egress_change_moves_the_context_in_four_steps() {
    let mut h = offloaded(C1, 0);
    assert_eq!(on(&mut h, egress("p1")), [A::SwitchToSoftware { ctx: C1 }]);
    assert_eq!(h.path(), Path::Software);
    assert_eq!(h.held(), Some(C1));
    assert_eq!(revoke(&mut h, C1, 300), [A::PauseSoftware]);
    assert_eq!(h.held(), None);
    assert_eq!(
        on(&mut h, Event::SoftwarePaused { at: 300 }),
        [A::Create {
            port: Some("p1".into()),
            at: 300
        }]
    );
    assert_eq!(
        on(&mut h, created(C2, "p1")),
        [A::Activate { ctx: C2, at: 300 }]
    );
}

#[test]
fn an_egress_with_no_port_leaves_the_flow_in_software() {
    let mut h = offloaded(C1, 0);
    assert_eq!(
        on(&mut h, Event::Egress(Egress::NoPort)),
        [A::SwitchToSoftware { ctx: C1 }]
    );
    assert_eq!(revoke(&mut h, C1, 10), []);
    assert_eq!(h.path(), Path::Software);
    assert_eq!(on(&mut h, egress("p1")), [A::PauseSoftware]);
}

#[test]
fn a_revoked_context_is_left_and_not_replaced_until_something_changes() {
    let mut h = offloaded(C1, 0);
    assert_eq!(
        on(&mut h, Event::Revoked { ctx: C1 }),
        [A::SwitchToSoftware { ctx: C1 }]
    );
    // Said twice: it is on its way out already.
    assert_eq!(on(&mut h, Event::Revoked { ctx: C1 }), []);
    assert_eq!(revoke(&mut h, C1, 10), []);
    assert_eq!(h.path(), Path::Software);
    assert_eq!(
        h.handle(Event::Revoked { ctx: C1 }),
        Err(Ignored::OtherContext(C1))
    );
    assert_eq!(on(&mut h, egress("p1")), [A::PauseSoftware]);
}

#[test]
fn an_egress_change_during_a_revocation_reoffloads_after_it() {
    let mut h = offloaded(C1, 0);
    on(&mut h, Event::Revoked { ctx: C1 });
    assert_eq!(on(&mut h, egress("p1")), []);
    assert_eq!(revoke(&mut h, C1, 10), [A::PauseSoftware]);
}

#[test]
fn egress_flapping_makes_one_new_context_on_the_last_port() {
    let mut h = offloaded(C1, 0);
    on(&mut h, egress("p1"));
    for port in ["p0", "p1", "p0"] {
        assert_eq!(on(&mut h, egress(port)), []);
    }
    on(&mut h, Event::SoftwareResumed { ctx: C1, at: 9 });
    assert_eq!(on(&mut h, Event::Egress(Egress::NoPort)), []);
    on(&mut h, Event::Drained { ctx: C1 });
    assert_eq!(on(&mut h, egress("p1")), []);
    assert_eq!(on(&mut h, Event::Released { ctx: C1 }), [A::PauseSoftware]);
    // The egress changes again while pausing and while creating.
    assert_eq!(on(&mut h, egress("p0")), []);
    assert_eq!(
        on(&mut h, Event::SoftwarePaused { at: 9 }),
        [A::Create {
            port: Some("p0".into()),
            at: 9
        }]
    );
    assert_eq!(on(&mut h, egress("p1")), []);
    // Made on p0, which is no longer the egress: never used.
    assert_eq!(
        on(&mut h, created(C2, "p0")),
        [A::ResumeSoftware { at: 9 }, A::Drain { ctx: C2 }]
    );
    assert_eq!(h.path(), Path::Software);
    assert_eq!(
        on(&mut h, Event::Drained { ctx: C2 }),
        [A::Release { ctx: C2 }]
    );
    assert_eq!(on(&mut h, Event::Released { ctx: C2 }), [A::PauseSoftware]);
    on(&mut h, Event::SoftwarePaused { at: 12 });
    assert_eq!(
        on(&mut h, created(C3, "p1")),
        [A::Activate { ctx: C3, at: 12 }]
    );
}

#[test]
fn an_egress_change_during_a_failed_create_pauses_afresh() {
    let mut h = H::new(Egress::port("p1", Offers::Unknown));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 3 });
    on(&mut h, egress("p0"));
    assert_eq!(
        on(&mut h, Event::CreateFailed(CreateError::Unsupported)),
        [A::ResumeSoftware { at: 3 }, A::PauseSoftware]
    );
    // p0 was not the port that refused.
    assert_eq!(h.egress(), &Egress::port("p0", Offers::Unknown));
}

#[test]
fn a_revocation_during_creation_spoils_the_context() {
    let mut h = H::new(Egress::port("p0", Offers::Yes));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 7 });
    // The revocation overtakes the create's answer.
    assert_eq!(on(&mut h, Event::Revoked { ctx: C1 }), []);
    assert_eq!(
        on(&mut h, created(C1, "p0")),
        [A::ResumeSoftware { at: 7 }, A::Drain { ctx: C1 }]
    );
    on(&mut h, Event::Drained { ctx: C1 });
    assert_eq!(on(&mut h, Event::Released { ctx: C1 }), []);
    assert_eq!(h.path(), Path::Software);
}

#[test]
fn a_late_revocation_of_an_old_context_does_not_spoil_a_new_one() {
    let mut h = offloaded(C1, 0);
    on(&mut h, egress("p1"));
    revoke(&mut h, C1, 4);
    on(&mut h, Event::SoftwarePaused { at: 4 });
    assert_eq!(
        h.handle(Event::Revoked { ctx: C1 }),
        Err(Ignored::OtherContext(C1))
    );
    assert_eq!(
        on(&mut h, created(C2, "p1")),
        [A::Activate { ctx: C2, at: 4 }]
    );
}

#[test]
fn a_driver_death_during_creation_spoils_the_context() {
    let mut h = H::new(Egress::port("p0", Offers::Yes));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 1 });
    // Another port's driver: nothing to do with it.
    on(&mut h, Event::DriverDied { port: "p1".into() });
    on(&mut h, Event::DriverDied { port: "p0".into() });
    assert_eq!(
        on(&mut h, created(C1, "p0")),
        [A::ResumeSoftware { at: 1 }, A::Drain { ctx: C1 }]
    );

    // Asked on p0, made on p1 (the egress moved; its report is late), whose
    // driver died meanwhile.
    let mut h = H::new(Egress::port("p0", Offers::Yes));
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 1 });
    on(&mut h, Event::DriverDied { port: "p1".into() });
    assert_eq!(
        on(&mut h, created(C1, "p1")),
        [A::ResumeSoftware { at: 1 }, A::Drain { ctx: C1 }]
    );
}

#[test]
fn a_driver_death_during_the_drain_ends_it() {
    let mut h = offloaded(C1, 0);
    on(&mut h, egress("p1"));
    on(&mut h, Event::SoftwareResumed { ctx: C1, at: 2 });
    assert_eq!(
        on(&mut h, Event::DriverDied { port: "p0".into() }),
        [A::Release { ctx: C1 }]
    );
    // The drain's answer comes late, and is dropped.
    assert_eq!(
        h.handle(Event::Drained { ctx: C1 }),
        Err(Ignored::OtherContext(C1))
    );
    assert_eq!(on(&mut h, Event::Released { ctx: C1 }), [A::PauseSoftware]);
}

#[test]
fn a_driver_death_takes_only_its_own_contexts() {
    let mut h = offloaded(C1, 0);
    assert_eq!(on(&mut h, Event::DriverDied { port: "p1".into() }), []);
    assert_eq!(h.path(), Path::Context(C1));
    assert_eq!(
        on(&mut h, Event::DriverDied { port: "p0".into() }),
        [A::SwitchToSoftware { ctx: C1 }]
    );
    // Still the whole order: a dead driver's context is released too.
    assert_eq!(revoke(&mut h, C1, 3), []);
}

#[test]
fn new_keys_replace_the_context() {
    let mut h = offloaded(C1, 0);
    assert_eq!(
        on(&mut h, Event::Rekeyed),
        [A::SwitchToSoftware { ctx: C1 }]
    );
    assert_eq!(revoke(&mut h, C1, 50), [A::PauseSoftware]);
}

#[test]
fn close_releases_whatever_is_held() {
    let mut h = offloaded(C1, 0);
    assert_eq!(on(&mut h, Event::Close), [A::SwitchToSoftware { ctx: C1 }]);
    // An egress change cannot undo a close.
    on(&mut h, egress("p1"));
    assert_eq!(revoke(&mut h, C1, 8), []);
    assert!(h.is_closed());
    assert_eq!(h.handle(egress("p0")), Err(Ignored::Closed));
    assert_eq!(h.poll_action(), None);
}

#[test]
fn close_while_pausing_resumes_and_closes() {
    let mut h = H::new(Egress::unknown());
    drain(&mut h);
    assert_eq!(on(&mut h, Event::Close), []);
    assert_eq!(
        on(&mut h, Event::SoftwarePaused { at: 2 }),
        [A::ResumeSoftware { at: 2 }]
    );
    assert!(h.is_closed());

    let mut h = H::new(Egress::unknown());
    drain(&mut h);
    on(&mut h, Event::Close);
    assert_eq!(on(&mut h, Event::CannotOffload), []);
    assert!(h.is_closed());
}

#[test]
fn close_while_creating_releases_what_the_create_made() {
    let mut h = H::new(Egress::unknown());
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 2 });
    on(&mut h, Event::Close);
    assert_eq!(
        on(&mut h, created(C1, "p0")),
        [A::ResumeSoftware { at: 2 }, A::Drain { ctx: C1 }]
    );
    on(&mut h, Event::Drained { ctx: C1 });
    assert_eq!(on(&mut h, Event::Released { ctx: C1 }), []);
    assert!(h.is_closed());

    let mut h = H::new(Egress::unknown());
    drain(&mut h);
    on(&mut h, Event::SoftwarePaused { at: 2 });
    on(&mut h, Event::Close);
    assert_eq!(
        on(&mut h, Event::CreateFailed(CreateError::Refused)),
        [A::ResumeSoftware { at: 2 }]
    );
    assert!(h.is_closed());
}

#[test]
fn close_in_software_is_immediate() {
    let mut h = H::new(Egress::NoPort);
    assert_eq!(on(&mut h, Event::Close), []);
    assert!(h.is_closed());
}

#[test]
fn resync_requests_are_answered_only_by_the_context_in_use() {
    let mut h = offloaded(C1, 0);
    assert_eq!(
        on(&mut h, Event::ResyncRequested { ctx: C1, at: 900 }),
        [A::LocateRecord { ctx: C1, at: 900 }]
    );
    assert_eq!(
        on(
            &mut h,
            Event::RecordLocated {
                ctx: C1,
                at: 900,
                record: Some(3)
            }
        ),
        [A::Resync {
            ctx: C1,
            at: 900,
            record: Some(3)
        }]
    );
    assert_eq!(
        h.handle(Event::ResyncRequested { ctx: C2, at: 1 }),
        Err(Ignored::OtherContext(C2))
    );
    // Once the context is being left, its questions go unanswered.
    on(&mut h, egress("p1"));
    assert_eq!(
        h.handle(Event::RecordLocated {
            ctx: C1,
            at: 1000,
            record: None
        }),
        Err(Ignored::OtherContext(C1))
    );
    assert_eq!(
        h.handle(Event::ResyncRequested { ctx: C1, at: 1100 }),
        Err(Ignored::OtherContext(C1))
    );
    assert_eq!(drain(&mut h), []);
}

#[test]
fn a_kind_without_resync_refuses_requests() {
    let mut h = Holder::<TlsTx>::new(Egress::unknown());
    h.poll_action();
    h.handle(Event::SoftwarePaused { at: 0 }).unwrap();
    h.handle(created(C1, "p0")).unwrap();
    while h.poll_action().is_some() {}
    assert_eq!(
        h.handle(Event::ResyncRequested { ctx: C1, at: 5 }),
        Err(Ignored::NoResync)
    );
    assert_eq!(h.poll_action(), None);
}

#[test]
fn no_context_starts_behind_where_software_resumed() {
    let mut h = offloaded(C1, 100);
    on(&mut h, egress("p1"));
    assert_eq!(revoke(&mut h, C1, 250), [A::PauseSoftware]);
    assert_eq!(
        h.handle(Event::SoftwarePaused { at: 200 }),
        Err(Ignored::PositionBehind {
            at: 200,
            resumed_at: 250
        })
    );
    assert_eq!(drain(&mut h), [A::ResumeSoftware { at: 200 }]);
    assert_eq!(h.path(), Path::Software);
    // Where it resumed is fine: that context sealed nothing past it.
    on(&mut h, egress("p0"));
    on(&mut h, Event::SoftwarePaused { at: 250 });
    assert_eq!(
        on(&mut h, created(C2, "p0")),
        [A::Activate { ctx: C2, at: 250 }]
    );
}

#[test]
fn answers_nobody_waits_for_are_dropped() {
    let mut h = offloaded(C2, 0);
    for (ev, why) in [
        (Event::SoftwarePaused { at: 1 }, Ignored::NotAwaited),
        (Event::CannotOffload, Ignored::NotAwaited),
        (
            Event::CreateFailed(CreateError::Refused),
            Ignored::NotAwaited,
        ),
        (created(C3, "p0"), Ignored::NotAwaited),
        (Event::Drained { ctx: C2 }, Ignored::OtherContext(C2)),
        (Event::Released { ctx: C2 }, Ignored::OtherContext(C2)),
        (
            Event::SoftwareResumed { ctx: C2, at: 1 },
            Ignored::OtherContext(C2),
        ),
    ] {
        assert_eq!(h.handle(ev), Err(why));
        assert_eq!(h.path(), Path::Context(C2));
    }
    assert_eq!(drain(&mut h), []);
    // A repeated or late create answer names an old context.
    on(&mut h, egress("p1"));
    revoke(&mut h, C2, 1);
    on(&mut h, Event::SoftwarePaused { at: 1 });
    assert_eq!(h.handle(created(C1, "p1")), Err(Ignored::NotAwaited));
    assert_eq!(h.handle(created(C2, "p1")), Err(Ignored::NotAwaited));
    assert_eq!(h.path(), Path::Held);
    assert_eq!(
        on(&mut h, created(C3, "p1")),
        [A::Activate { ctx: C3, at: 1 }]
    );
    // And a release answered twice.
    on(&mut h, Event::Close);
    revoke(&mut h, C3, 2);
    assert_eq!(h.handle(Event::Released { ctx: C3 }), Err(Ignored::Closed));
}

#[test]
fn the_ignored_reasons_read_as_sentences() {
    let e: Ignored<u64> = Ignored::PositionBehind {
        at: 1,
        resumed_at: 2,
    };
    assert_eq!(
        e.to_string(),
        "the software path stopped at 1, before 2 where it last resumed: no context may start there"
    );
    assert_eq!(
        Ignored::<u64>::OtherContext(C1).to_string(),
        "about context 1, which the flow does not use"
    );
}
