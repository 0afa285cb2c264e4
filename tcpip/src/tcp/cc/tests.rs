use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MSS: usize = 1000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn check_invariants(cc: &CongestionControl) {
    assert!((1..=MAX_MSS).contains(&cc.mss()), "{cc:?}");
    assert!((cc.mss()..=MAX_CWND).contains(&cc.cwnd()), "{cc:?}");
    let ss = cc.ssthresh();
    assert!(
        ss == SSTHRESH_INFINITE || (2 * cc.mss()..=MAX_CWND).contains(&ss),
        "{cc:?}"
    );
    assert!(!(cc.in_slow_start() && cc.in_recovery()), "{cc:?}");
}

fn cubic_of(cc: &CongestionControl) -> Cubic {
    match cc.window {
        Window::Cubic(c) => c,
        Window::NewReno(_) => panic!("not CUBIC"),
    }
}

/// An ACK of everything up to `ack`, `delivered` of it new.
fn sample(ack: u32, delivered: usize) -> AckSample {
    AckSample {
        delivered,
        rtt: Some(ms(10)),
        ack: SeqNumber(ack),
        snd_nxt: SeqNumber(ack.wrapping_add(100_000)),
        cwnd_limited: true,
    }
}

/// A bulk sender: each round sends a window of full segments at once;
/// they are acknowledged `per_ack` at a time, the ACKs spread evenly
/// over the round. Sequence numbers wrap in the first round.
struct Sim {
    cc: CongestionControl,
    now: Instant,
    una: SeqNumber,
}

impl Sim {
    fn new(algorithm: Algorithm) -> Sim {
        let now = Instant::from_millis(1000);
        Sim {
            cc: CongestionControl::new(algorithm, MSS, now),
            now,
            una: SeqNumber(u32::MAX - 5 * MSS as u32),
        }
    }

    fn segments(&self) -> usize {
        self.cc.cwnd() / MSS
    }

    fn round(&mut self, rtt: Duration, per_ack: usize) {
        self.round_sampled(rtt, per_ack, || rtt);
    }

    /// A round lasting `duration`, each ACK's RTT sample from `rtt`.
    fn round_sampled(
        &mut self,
        duration: Duration,
        per_ack: usize,
        mut rtt: impl FnMut() -> Duration,
    ) {
        let segs = self.segments().max(1);
        let snd_nxt = self.una + segs * MSS;
        let start = self.now;
        let acks = segs.div_ceil(per_ack);
        for i in 0..acks {
            let n = per_ack.min(segs - i * per_ack);
            self.una += n * MSS;
            self.now = start + duration.mul_f64((i + 1) as f64 / acks as f64);
            self.cc.on_ack(
                self.now,
                &AckSample {
                    delivered: n * MSS,
                    rtt: Some(rtt()),
                    ack: self.una,
                    snd_nxt,
                    cwnd_limited: true,
                },
            );
        }
    }

    /// A loss with the window in flight, and a recovery that ends at
    /// once.
    fn loss(&mut self) {
        let flight = self.cc.cwnd();
        self.cc.on_congestion_event(self.now, flight);
        self.cc.on_recovery_end(self.now);
    }
}

#[test]
fn algorithm_names() {
    assert_eq!(Algorithm::default(), Algorithm::Cubic);
    for a in [Algorithm::Cubic, Algorithm::NewReno] {
        assert_eq!(a.to_string().parse::<Algorithm>(), Ok(a));
        assert_eq!(CongestionControl::new(a, MSS, Instant::ZERO).algorithm(), a);
    }
    assert_eq!(Algorithm::NewReno.to_string(), "newreno");
    assert_eq!("CUBIC".parse(), Ok(Algorithm::Cubic));
    assert_eq!("reno".parse(), Ok(Algorithm::NewReno));
    assert_eq!("bbr".parse::<Algorithm>(), Err(UnknownAlgorithm));
    assert_eq!("".parse::<Algorithm>(), Err(UnknownAlgorithm));
    assert!(!UnknownAlgorithm.to_string().is_empty());
}

#[test]
fn initial_window_is_ten_segments_and_mss_is_clamped() {
    let cc = CongestionControl::new(Algorithm::Cubic, 1460, Instant::ZERO);
    assert_eq!((cc.mss(), cc.cwnd()), (1460, 14_600));
    assert_eq!(cc.ssthresh(), SSTHRESH_INFINITE);
    assert!(cc.in_slow_start() && !cc.in_recovery());
    assert_eq!(cc.counters(), CcCounters::default());
    let cc = CongestionControl::new(Algorithm::NewReno, 0, Instant::ZERO);
    assert_eq!((cc.mss(), cc.cwnd()), (1, 10));
    let cc = CongestionControl::new(Algorithm::Cubic, usize::MAX, Instant::ZERO);
    assert_eq!((cc.mss(), cc.cwnd()), (MAX_MSS, 10 * MAX_MSS));
}

#[test]
fn slow_start_doubles_every_round_trip() {
    for (algorithm, per_ack) in [
        (Algorithm::NewReno, 1),
        (Algorithm::NewReno, 2),
        (Algorithm::Cubic, 1),
        (Algorithm::Cubic, 2),
        (Algorithm::Cubic, 8),
    ] {
        let mut sim = Sim::new(algorithm);
        for round in 0..8 {
            assert_eq!(sim.segments(), 10 << round, "{algorithm} {per_ack}");
            sim.round(ms(50), per_ack);
        }
        assert!(sim.cc.in_slow_start());
    }
}

#[test]
fn a_stretch_ack_grows_slow_start_by_at_most_l_segments() {
    for (algorithm, l) in [(Algorithm::NewReno, 2), (Algorithm::Cubic, 8)] {
        let mut cc = CongestionControl::new(algorithm, MSS, Instant::ZERO);
        cc.on_ack(Instant::from_millis(10), &sample(20_000, 20 * MSS));
        assert_eq!(cc.cwnd(), (10 + l) * MSS, "{algorithm}");
    }
}

#[test]
fn no_growth_unless_cwnd_limited_and_snd_una_advances() {
    for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
        let mut cc = CongestionControl::new(algorithm, MSS, Instant::ZERO);
        let t = Instant::from_millis(10);
        // Application-limited.
        let mut s = sample(1000, MSS);
        s.cwnd_limited = false;
        cc.on_ack(t, &s);
        assert_eq!(cc.cwnd(), 10 * MSS);
        // SACKed bytes with the cumulative ACK where it was.
        cc.on_ack(t, &sample(1000, MSS));
        assert_eq!(cc.cwnd(), 10 * MSS);
        // An old ACK.
        cc.on_ack(t, &sample(500, MSS));
        assert_eq!(cc.cwnd(), 10 * MSS);
        cc.on_ack(t, &sample(2000, MSS));
        assert_eq!(cc.cwnd(), 11 * MSS);
        // Nothing delivered.
        cc.on_ack(t, &sample(3000, 0));
        assert_eq!(cc.cwnd(), 11 * MSS);
    }
}

#[test]
fn newreno_avoidance_adds_one_segment_per_round_trip() {
    let mut sim = Sim::new(Algorithm::NewReno);
    for _ in 0..3 {
        sim.round(ms(50), 1);
    }
    sim.loss();
    assert_eq!((sim.segments(), sim.cc.ssthresh()), (40, 40 * MSS));
    for i in 0..20 {
        assert_eq!(sim.segments(), 40 + i);
        sim.round(ms(50), 1);
    }
}

#[test]
fn slow_start_stops_at_ssthresh_and_the_rest_counts_for_avoidance() {
    let mut cc = CongestionControl::new(Algorithm::NewReno, MSS, Instant::ZERO);
    let t = Instant::from_millis(10);
    cc.on_rto(t, 10 * MSS);
    assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 5 * MSS));
    cc.on_ack(t, &sample(1000, MSS));
    cc.on_ack(t, &sample(3000, 2 * MSS));
    assert_eq!(cc.cwnd(), 4 * MSS);
    // One segment of room: the other counts toward the next segment.
    cc.on_ack(t, &sample(5000, 2 * MSS));
    assert_eq!(cc.cwnd(), 5 * MSS);
    assert!(!cc.in_slow_start());
    cc.on_ack(t, &sample(8000, 3 * MSS));
    assert_eq!(cc.cwnd(), 5 * MSS);
    cc.on_ack(t, &sample(9000, MSS));
    assert_eq!(cc.cwnd(), 6 * MSS);
}

/// W_cubic(t) in segments for RFC 9438's equation 1.
fn w_cubic(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
    let k = ((w_max - cwnd_epoch) / 0.4).cbrt();
    w_max + 0.4 * (t - k).powi(3)
}

#[test]
fn cubic_after_a_loss_follows_w_cubic_and_plateaus_at_w_max() {
    let rtt = ms(100);
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(rtt, 1);
    }
    assert_eq!(sim.segments(), 160);
    sim.loss();
    assert_eq!((sim.segments(), sim.cc.ssthresh()), (112, 112 * MSS));
    let k = (48f64 / 0.4).cbrt();
    let t0 = sim.now;
    let mut at_k = None;
    while sim.now.since(t0).as_secs_f64() < 2.0 * k {
        sim.round(rtt, 1);
        let t = sim.now.since(t0).as_secs_f64();
        let cwnd = sim.cc.cwnd() as f64 / MSS as f64;
        let expect = w_cubic(t, 160.0, 112.0);
        assert!(
            (cwnd - expect).abs() <= 1.0,
            "t {t:.2}: cwnd {cwnd:.1}, W_cubic {expect:.1}"
        );
        assert_eq!(cwnd < 160.0, t < k, "concave before K, convex after");
        if at_k.is_none() && t >= k {
            at_k = Some(cwnd);
        }
    }
    let at_k = at_k.unwrap();
    assert!((160.0..=161.0).contains(&at_k), "{at_k}");
    assert!(!sim.cc.in_slow_start());
}

#[test]
fn reno_friendly_region_dominates_at_small_rtt() {
    let rtt = ms(1);
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(rtt, 1);
    }
    sim.loss();
    let t0 = sim.now;
    // RFC 9438 §4.3: W_est grows by α = 9/17 per round trip until it
    // reaches cwnd_prior (160), then by one.
    let mut w_est: f64 = 112.0;
    for round in 0..300 {
        sim.round(rtt, 1);
        w_est += if w_est < 160.0 { 9.0 / 17.0 } else { 1.0 };
        let t = sim.now.since(t0).as_secs_f64();
        let cwnd = sim.cc.cwnd() as f64 / MSS as f64;
        assert!(
            (cwnd - w_est).abs() <= w_est * 0.02,
            "round {round}: cwnd {cwnd:.1}, W_est {w_est:.1}"
        );
        if round > 5 {
            assert!(cwnd > w_cubic(t, 160.0, 112.0) + 1.0);
        }
    }
    assert!(sim.segments() > 350);
}

#[test]
fn fast_convergence_releases_bandwidth_on_a_loss_below_w_max() {
    let rtt = ms(100);
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(rtt, 1);
    }
    sim.loss();
    assert_eq!(cubic_of(&sim.cc).w_max(), Some(160 * MSS));
    for _ in 0..10 {
        sim.round(rtt, 1);
    }
    let cwnd = sim.cc.cwnd();
    assert!(cwnd < 160 * MSS);
    sim.loss();
    assert_eq!(cubic_of(&sim.cc).w_max(), Some(cwnd * 17 / 20));
    assert_eq!(sim.cc.ssthresh(), cwnd * 7 / 10);
    // The next epoch's K is measured to the lowered W_max.
    sim.round(rtt, 1);
    let k = cubic_of(&sim.cc).k().unwrap();
    let expect = ((cwnd * 17 / 20 - cwnd * 7 / 10) as f64 / (0.4 * MSS as f64)).cbrt();
    assert!((k - expect).abs() < 1e-9, "{k} {expect}");
    // A loss at or above W_max remembers the window itself.
    while sim.cc.cwnd() < cwnd * 17 / 20 {
        sim.round(rtt, 1);
    }
    let cwnd = sim.cc.cwnd();
    sim.loss();
    assert_eq!(cubic_of(&sim.cc).w_max(), Some(cwnd));
}

#[test]
fn hystart_leaves_slow_start_when_the_rtt_rises() {
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..3 {
        sim.round(ms(100), 1);
    }
    assert_eq!(sim.segments(), 80);
    // 100 ms / 8 = 12.5 ms: 113 ms is a rise. The eighth sample decides,
    // and the rest of the round grows at a quarter of the rate.
    sim.round(ms(113), 1);
    assert_eq!(sim.cc.counters().hystart_css_entries, 1);
    assert!(sim.cc.in_slow_start());
    assert_eq!(sim.cc.cwnd(), 80 * MSS + 8 * MSS + 72 * MSS / 4);
    // The entry round and four more are CSS.
    for _ in 0..4 {
        let before = sim.cc.cwnd();
        sim.round(ms(113), 1);
        assert_eq!(sim.cc.cwnd(), before + before / MSS * MSS / 4);
        assert!(sim.cc.in_slow_start());
    }
    // The next round's first ACK ends slow start: ssthresh = cwnd.
    let cwnd = sim.cc.cwnd();
    sim.round(ms(113), 1);
    assert_eq!(sim.cc.ssthresh(), cwnd);
    assert!(!sim.cc.in_slow_start());
    assert_eq!(sim.cc.counters().hystart_exits, 1);
    // From there on, congestion avoidance: W_max undefined, K = 0.
    assert_eq!(cubic_of(&sim.cc).w_max(), None);
    assert_eq!(cubic_of(&sim.cc).k(), Some(0.0));
    assert!(sim.cc.cwnd() < cwnd + cwnd / 10);
}

#[test]
fn hystart_ignores_rtt_noise_below_the_threshold() {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut sim = Sim::new(Algorithm::Cubic);
    for round in 0..10 {
        // Every sample in 100..=112 ms: no minimum, of 8 samples or of
        // a round, is 12.5 ms above another.
        sim.round_sampled(ms(100), 1, || ms(rng.gen_range(100..=112)));
        assert_eq!(sim.segments(), 20 << round);
    }
    assert_eq!(sim.cc.counters().hystart_css_entries, 0);
    assert!(sim.cc.in_slow_start());
}

#[test]
fn hystart_resumes_slow_start_when_the_rise_was_spurious() {
    let mut sim = Sim::new(Algorithm::Cubic);
    sim.round(ms(100), 1);
    sim.round(ms(120), 1);
    assert_eq!(sim.cc.counters().hystart_css_entries, 1);
    sim.round(ms(100), 1);
    let before = sim.cc.cwnd();
    sim.round(ms(100), 1);
    assert_eq!(sim.cc.cwnd(), 2 * before);
}

#[test]
fn newreno_runs_plain_slow_start() {
    let mut sim = Sim::new(Algorithm::NewReno);
    sim.round(ms(10), 1);
    for round in 0..5 {
        sim.round(ms(10 + 50 * round), 1);
    }
    assert_eq!(sim.segments(), 640);
    assert_eq!(sim.cc.counters().hystart_css_entries, 0);
}

#[test]
fn prr_spreads_the_reduction_then_ssrb_rebuilds_to_ssthresh() {
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(ms(100), 1);
    }
    let now = sim.now;
    let una = sim.una;
    let cc = &mut sim.cc;
    let flight = cc.cwnd();
    cc.on_congestion_event(now, flight);
    assert!(cc.in_recovery() && !cc.in_slow_start());
    assert_eq!((cc.ssthresh(), cc.cwnd()), (112 * MSS, 160 * MSS));
    // A second event in the same episode changes nothing.
    cc.on_congestion_event(now, flight);
    assert_eq!(cc.ssthresh(), 112 * MSS);
    assert_eq!(cc.counters().congestion_events, 1);

    // One segment lost; each ACK SACKs one more. The flight stays above
    // ssthresh: PRR sends ssthresh/RecoverFS of what is delivered.
    let (mut pipe, mut delivered, mut sent) = (159 * MSS, 0, 0);
    for _ in 0..100 {
        pipe -= MSS;
        delivered += MSS;
        let mut s = sample(una.0, MSS);
        s.rtt = None;
        cc.on_ack(now, &s);
        let q = cc.recovery_quota(&RecoveryAck {
            delivered: MSS,
            in_flight: pipe,
            safe: false,
        });
        cc.on_sent(q);
        pipe += q;
        sent += q;
        assert_eq!(sent, (delivered * 112).div_ceil(160).max(MSS));
        assert_eq!(cc.cwnd(), pipe);
    }
    assert_eq!(sent, 70 * MSS);

    // Heavy losses: the flight falls to 60 segments. PRR-SSRB sends
    // what was delivered and not yet sent, plus a segment per safe ACK,
    // never past ssthresh.
    pipe = 60 * MSS;
    let mut acks = 0;
    while pipe < 112 * MSS {
        pipe -= MSS;
        delivered += MSS;
        let q = cc.recovery_quota(&RecoveryAck {
            delivered: MSS,
            in_flight: pipe,
            safe: true,
        });
        let expect = delivered.saturating_sub(sent).max(MSS) + MSS;
        assert_eq!(q, expect.min(112 * MSS - pipe));
        cc.on_sent(q);
        pipe += q;
        sent += q;
        acks += 1;
        assert!(acks < 60);
    }
    assert_eq!(pipe, 112 * MSS);
    cc.on_recovery_end(now);
    assert!(!cc.in_recovery());
    assert_eq!(cc.cwnd(), 112 * MSS);
    // Outside recovery the quota is what cwnd leaves.
    assert_eq!(
        cc.recovery_quota(&RecoveryAck {
            delivered: MSS,
            in_flight: 100 * MSS,
            safe: true
        }),
        12 * MSS
    );
    cc.on_recovery_end(now);
    assert_eq!(cc.cwnd(), 112 * MSS);
}

#[test]
fn rto_collapses_to_one_segment_and_backoffs_keep_ssthresh() {
    for (algorithm, ssthresh) in [(Algorithm::Cubic, 112), (Algorithm::NewReno, 80)] {
        let mut sim = Sim::new(algorithm);
        for _ in 0..4 {
            sim.round(ms(100), 1);
        }
        sim.cc.on_rto(sim.now, 160 * MSS);
        assert_eq!(sim.cc.cwnd(), MSS);
        assert_eq!(sim.cc.ssthresh(), ssthresh * MSS);
        assert!(sim.cc.in_slow_start());
        // The same segment times out again.
        sim.cc.on_rto(sim.now, MSS);
        assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, ssthresh * MSS));
        assert_eq!(sim.cc.counters().timeouts, 2);
        // snd.una advances: slow start, and a later RTO reduces again.
        sim.round(ms(100), 1);
        assert_eq!(sim.cc.cwnd(), 2 * MSS);
        sim.cc.on_rto(sim.now, 2 * MSS);
        assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, 2 * MSS));
    }
    // CUBIC forgets W_max; an RTO in recovery keeps that episode's
    // ssthresh.
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(ms(100), 1);
    }
    sim.cc.on_congestion_event(sim.now, 160 * MSS);
    assert_eq!(cubic_of(&sim.cc).w_max(), Some(160 * MSS));
    sim.cc.on_rto(sim.now, 100 * MSS);
    assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (MSS, 112 * MSS));
    assert!(!sim.cc.in_recovery());
    assert_eq!(cubic_of(&sim.cc).w_max(), None);
}

#[test]
fn undo_restores_the_state_before_a_spurious_reduction() {
    let rtt = ms(100);
    let mut sim = Sim::new(Algorithm::Cubic);
    for _ in 0..4 {
        sim.round(rtt, 1);
    }
    sim.loss();
    for _ in 0..5 {
        sim.round(rtt, 1);
    }
    let (cwnd, ssthresh, window) = (sim.cc.cwnd(), sim.cc.ssthresh(), sim.cc.window);
    // A spurious fast retransmit (DSACK), undone in recovery.
    sim.cc.on_congestion_event(sim.now, cwnd);
    sim.cc.recovery_quota(&RecoveryAck {
        delivered: MSS,
        in_flight: cwnd - 2 * MSS,
        safe: false,
    });
    assert!(sim.cc.cwnd() < cwnd);
    assert!(sim.cc.undo());
    assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (cwnd, ssthresh));
    assert_eq!(sim.cc.window, window);
    assert!(!sim.cc.in_recovery());
    assert!(!sim.cc.undo());
    assert_eq!(sim.cc.counters().undos, 1);
    // The curve carries on from where it was.
    let mut twin = Sim {
        cc: sim.cc.clone(),
        now: sim.now,
        una: sim.una,
    };
    twin.cc.prior = None;
    twin.cc.counters = sim.cc.counters;
    sim.round(rtt, 1);
    twin.round(rtt, 1);
    assert_eq!(sim.cc.cwnd(), twin.cc.cwnd());

    // A spurious RTO (Eifel), undone after the first ACK.
    let (cwnd, ssthresh) = (sim.cc.cwnd(), sim.cc.ssthresh());
    let w_max = cubic_of(&sim.cc).w_max();
    sim.cc.on_rto(sim.now, cwnd);
    sim.round(rtt, 1);
    assert!(sim.cc.undo());
    assert_eq!((sim.cc.cwnd(), sim.cc.ssthresh()), (cwnd, ssthresh));
    assert_eq!(cubic_of(&sim.cc).w_max(), w_max);

    // A loss in the initial slow start, undone: slow start again, with
    // HyStart++.
    let mut sim = Sim::new(Algorithm::Cubic);
    sim.round(rtt, 1);
    sim.loss();
    assert!(sim.cc.undo());
    assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
    assert!(sim.cc.in_slow_start());
    assert!(sim.cc.hystart.is_some_and(|h| h.active()));

    // Undone late, when cwnd has grown past what it was: it stays, and
    // ssthresh is raised back.
    let mut sim = Sim::new(Algorithm::NewReno);
    sim.round(rtt, 1);
    sim.cc.on_rto(sim.now, 60 * MSS);
    for _ in 0..6 {
        sim.round(rtt, 1);
    }
    let grown = sim.cc.cwnd();
    assert!(grown > 20 * MSS);
    assert!(sim.cc.undo());
    assert_eq!(sim.cc.cwnd(), grown);
    assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
}

#[test]
fn idle_restart_halves_per_rto_down_to_the_initial_window() {
    let rto = ms(1000);
    let mut sim = Sim::new(Algorithm::NewReno);
    for _ in 0..4 {
        sim.round(ms(100), 1);
    }
    let last = sim.now;
    // Idle for no more than an RTO: nothing.
    sim.cc.on_idle_restart(last + rto, rto, last);
    assert_eq!(sim.segments(), 160);
    assert_eq!(sim.cc.counters().idle_restarts, 0);
    // 2.5 RTOs: halved twice.
    sim.cc.on_idle_restart(last + rto.mul_f64(2.5), rto, last);
    assert_eq!(sim.segments(), 40);
    assert_eq!(sim.cc.ssthresh(), SSTHRESH_INFINITE);
    // Long idle: down to the initial window, not below.
    sim.cc.on_idle_restart(last + rto * 100, rto, last);
    assert_eq!(sim.segments(), 10);
    assert_eq!(sim.cc.counters().idle_restarts, 2);
    // A zero RTO ends too.
    sim.cc
        .on_idle_restart(last + rto * 100, Duration::ZERO, last);
    assert_eq!(sim.segments(), 10);

    // ssthresh keeps 3/4 of the window it cuts (tcp_current_ssthresh).
    let mut sim = Sim::new(Algorithm::NewReno);
    sim.cc.on_rto(sim.now, 20 * MSS);
    for _ in 0..9 {
        sim.round(ms(100), 1);
    }
    let cwnd = sim.cc.cwnd();
    assert!(cwnd * 3 / 4 > 10 * MSS, "{cwnd}");
    let last = sim.now;
    sim.cc.on_idle_restart(last + rto.mul_f64(1.5), rto, last);
    assert_eq!(sim.cc.ssthresh(), cwnd * 3 / 4);
    assert_eq!(sim.cc.cwnd(), 10 * MSS);

    // Nothing is idle in fast recovery.
    let mut sim = Sim::new(Algorithm::Cubic);
    sim.cc.on_congestion_event(sim.now, 10 * MSS);
    sim.cc.on_idle_restart(sim.now + rto * 10, rto, sim.now);
    assert_eq!(sim.cc.cwnd(), 10 * MSS);
}

#[test]
fn a_smaller_mss_keeps_the_window_in_segments_a_larger_one_in_bytes() {
    let mut cc = CongestionControl::new(Algorithm::Cubic, 1460, Instant::ZERO);
    cc.set_mss(1460);
    assert_eq!(cc.cwnd(), 14_600);
    cc.set_mss(1000);
    assert_eq!((cc.mss(), cc.cwnd()), (1000, 10_000));
    cc.set_mss(9000);
    assert_eq!((cc.mss(), cc.cwnd()), (9000, 10_000));
    cc.set_mss(0);
    assert_eq!((cc.mss(), cc.cwnd()), (1, 1));
    let mut cc = CongestionControl::new(Algorithm::NewReno, 1000, Instant::ZERO);
    cc.on_rto(Instant::ZERO, 100_000);
    cc.set_mss(500);
    assert_eq!((cc.cwnd(), cc.ssthresh()), (500, 25_000));
    // ssthresh stays at least two segments of the larger size.
    cc.set_mss(20_000);
    assert_eq!((cc.cwnd(), cc.ssthresh()), (20_000, 40_000));
    check_invariants(&cc);
}

#[test]
fn extreme_inputs_neither_panic_nor_overflow() {
    let far = Instant::from_micros(u64::MAX);
    for algorithm in [Algorithm::Cubic, Algorithm::NewReno] {
        for mss in [0, 1, usize::MAX] {
            let mut cc = CongestionControl::new(algorithm, mss, far);
            for i in 0..100u32 {
                cc.on_ack(
                    far,
                    &AckSample {
                        delivered: usize::MAX,
                        rtt: Some(if i % 2 == 0 {
                            Duration::MAX
                        } else {
                            Duration::ZERO
                        }),
                        ack: SeqNumber(i.wrapping_mul(1 << 30)),
                        snd_nxt: SeqNumber(i.wrapping_mul(1 << 29)),
                        cwnd_limited: true,
                    },
                );
                check_invariants(&cc);
            }
            let huge = RecoveryAck {
                delivered: usize::MAX,
                in_flight: usize::MAX,
                safe: true,
            };
            cc.on_congestion_event(far, usize::MAX);
            check_invariants(&cc);
            assert!(cc.recovery_quota(&huge) <= MAX_CWND);
            cc.on_sent(usize::MAX);
            cc.on_sent(usize::MAX);
            cc.recovery_quota(&RecoveryAck {
                in_flight: 0,
                ..huge
            });
            check_invariants(&cc);
            cc.on_recovery_end(far);
            cc.on_rto(far, usize::MAX);
            check_invariants(&cc);
            cc.undo();
            cc.on_idle_restart(far, Duration::MAX, Instant::ZERO);
            cc.on_idle_restart(far, Duration::ZERO, Instant::ZERO);
            check_invariants(&cc);
            cc.set_mss(usize::MAX);
            check_invariants(&cc);
            cc.set_mss(0);
            check_invariants(&cc);
        }
    }
}

/// Random calls in any order, with random and extreme arguments: the
/// invariants hold throughout.
#[test]
fn random_call_sequences_keep_the_invariants() {
    for seed in 0..40 {
        let mut rng = SmallRng::seed_from_u64(seed);
        for algorithm in [Algorithm::Cubic, Algorithm::NewReno] {
            let mss = rng.gen_range(0..70_000);
            let mut now = Instant::from_micros(rng.gen());
            let mut cc = CongestionControl::new(algorithm, mss, now);
            let mut una = SeqNumber(rng.gen());
            for _ in 0..2000 {
                let bytes = |rng: &mut SmallRng| match rng.gen_range(0..20) {
                    0 => 0,
                    1 => usize::MAX,
                    _ => rng.gen_range(0..20 * 65_535),
                };
                match rng.gen_range(0..100) {
                    0..=59 => {
                        let delivered = bytes(&mut rng);
                        if rng.gen_bool(0.8) {
                            una += delivered.min(1 << 20);
                        }
                        let rtt = match rng.gen_range(0..10) {
                            0 => None,
                            1 => Some(Duration::ZERO),
                            2 => Some(Duration::MAX),
                            _ => Some(ms(rng.gen_range(1..500))),
                        };
                        cc.on_ack(
                            now,
                            &AckSample {
                                delivered,
                                rtt,
                                ack: una,
                                snd_nxt: una + rng.gen_range(0..(1usize << 24)),
                                cwnd_limited: rng.gen_bool(0.8),
                            },
                        );
                    }
                    60..=64 => cc.on_congestion_event(now, bytes(&mut rng)),
                    65..=79 => {
                        let a = RecoveryAck {
                            delivered: bytes(&mut rng),
                            in_flight: bytes(&mut rng),
                            safe: rng.gen(),
                        };
                        let q = cc.recovery_quota(&a);
                        cc.on_sent(rng.gen_range(0..=q));
                    }
                    80..=84 => cc.on_recovery_end(now),
                    85..=87 => cc.on_rto(now, bytes(&mut rng)),
                    88..=90 => {
                        cc.undo();
                    }
                    91..=94 => {
                        let idle = ms(rng.gen_range(0..10_000));
                        let rto = ms(rng.gen_range(0..3_000));
                        cc.on_idle_restart(now, rto, now - idle);
                    }
                    95..=96 => cc.set_mss(rng.gen_range(0..70_000)),
                    _ => now += ms(rng.gen_range(0..100_000)),
                }
                now += Duration::from_micros(rng.gen_range(0..50_000));
                check_invariants(&cc);
            }
        }
    }
}

/// Linux's packet-counted Reno (tcp_reno_cong_avoid, tcp_slow_start,
/// tcp_cong_avoid_ai), with NewReno's ssthresh of half the flight.
struct LinuxReno {
    cwnd: usize,
    ssthresh: usize,
    cnt: usize,
    in_recovery: bool,
    /// An RTO and no ACK since: another keeps ssthresh (RFC 5681 §3.1).
    timed_out: bool,
}

impl LinuxReno {
    fn ack(&mut self, mut acked: usize) {
        self.timed_out = false;
        if self.in_recovery {
            return;
        }
        if self.cwnd < self.ssthresh {
            let cwnd = (self.cwnd + acked).min(self.ssthresh);
            acked -= cwnd - self.cwnd;
            self.cwnd = cwnd;
            if acked == 0 {
                return;
            }
        }
        let w = self.cwnd;
        if self.cnt >= w {
            self.cnt = 0;
            self.cwnd += 1;
        }
        self.cnt += acked;
        if self.cnt >= w {
            let delta = self.cnt / w;
            self.cnt -= delta * w;
            self.cwnd += delta;
        }
    }
}

/// Byte counting with whole-segment ACKs of one or two segments (L = 2
/// never binds) matches Linux's packet counting exactly.
#[test]
fn newreno_matches_linux_packet_counted_reno() {
    for seed in 0..20 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mss = rng.gen_range(500..=9000);
        let mut now = Instant::ZERO;
        let mut cc = CongestionControl::new(Algorithm::NewReno, mss, now);
        let mut model = LinuxReno {
            cwnd: 10,
            ssthresh: usize::MAX,
            cnt: 0,
            in_recovery: false,
            timed_out: false,
        };
        let mut una = SeqNumber(rng.gen());
        for _ in 0..5000 {
            now += ms(1);
            match rng.gen_range(0..1000) {
                // Even flights: half of one is whole segments.
                0..=4 if !model.in_recovery => {
                    let flight = 2 * rng.gen_range(1..=model.cwnd.div_ceil(2));
                    cc.on_congestion_event(now, flight * mss);
                    model.ssthresh = (flight / 2).max(2);
                    model.cnt = 0;
                    model.in_recovery = true;
                }
                5..=30 if model.in_recovery => {
                    cc.on_recovery_end(now);
                    model.cwnd = model.ssthresh;
                    model.in_recovery = false;
                }
                31..=33 if !model.in_recovery => {
                    let flight = 2 * rng.gen_range(1..=model.cwnd.div_ceil(2));
                    cc.on_rto(now, flight * mss);
                    if !model.timed_out {
                        model.ssthresh = (flight / 2).max(2);
                    }
                    model.timed_out = true;
                    model.cwnd = 1;
                    model.cnt = 0;
                }
                _ => {
                    let segs = rng.gen_range(1..=2);
                    una += segs * mss;
                    cc.on_ack(now, &sample(una.0, segs * mss));
                    model.ack(segs);
                }
            }
            assert_eq!(cc.cwnd(), model.cwnd * mss, "seed {seed}");
            let ss = if model.ssthresh == usize::MAX {
                SSTHRESH_INFINITE
            } else {
                model.ssthresh * mss
            };
            assert_eq!(cc.ssthresh(), ss, "seed {seed}");
        }
    }
}
