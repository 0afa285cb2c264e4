//! Egress subscriptions fire exactly once per real change, in a scripted
//! sequence of link, route, bond and driver events, and never for an
//! unchanged egress.

use capnet::host::Host;
use capnet_tests::{cli_ok, Scratch};
use libclient::{EgressInfo, EgressReason, EgressSubscription, Flow, Protocol};
use std::time::Duration;

/// Host `n`: p0 (10.0.0.n/24) and p1 (10.1.0.n/24) plain,
/// p2 and p3 in active-backup bond0 (10.2.0.n/24); each port on its own
/// sim wire.
fn config(n: u8) -> String {
    let mut c = String::new();
    for p in 0..4 {
        c += &format!(
            "[[port]]\nname = \"p{p}\"\nbackend = \"sim\"\nwire = \"wire{p}.sock\"\n\
             mac = \"02:00:00:00:0{n}:0{p}\"\n"
        );
        if p < 2 {
            c += &format!("addresses = [\"10.{p}.0.{n}/24\"]\n");
        }
    }
    c + &format!(
        "[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nlegs = [\"p2\", \"p3\"]\n\
         addresses = [\"10.2.0.{n}/24\"]\n"
    )
}

/// The next change, which must come within a few seconds.
fn next(sub: &EgressSubscription, what: &str) -> EgressInfo {
    sub.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no egress change after {what}"))
}

/// No change may come: the egress did not change.
fn quiet(subs: &[&EgressSubscription], what: &str) {
    std::thread::sleep(Duration::from_millis(300));
    for s in subs {
        if let Some(e) = s.try_recv() {
            panic!("an egress change after {what}, which changed nothing: {e:?}");
        }
    }
}

fn expect(e: &EgressInfo, port: Option<&str>, reason: EgressReason, what: &str) {
    assert_eq!(
        (e.port.as_deref(), e.reason),
        (port, reason),
        "after {what}: {e:?}"
    );
}

fn run(host: &Host, args: &[&str]) {
    cli_ok(host, args);
}

#[test]
fn subscriptions_fire_once_per_real_change() {
    let s = Scratch::new("egress");
    let a_dir = s.0.join("a");
    let b_dir = s.0.join("b");
    let a = Host::start(&config(1), &a_dir, &a_dir).expect("host a");
    let _b = Host::start(&config(2), &b_dir, &a_dir).expect("host b");
    let net = a.net().unwrap();
    let flow = |remote: &str| Flow {
        protocol: Protocol::Tcp,
        local: None,
        remote: remote.parse().unwrap(),
    };
    // f1 is routed (no route yet: no egress); f2 goes over the bond.
    let e1 = net.egress(flow("10.9.0.5:80")).unwrap();
    let e2 = net.egress(flow("10.2.0.2:80")).unwrap();
    assert_eq!(e1.current().unwrap().port, None);
    // The bond's legs come up as the peers join; it uses whichever came
    // first (no primary yet). Wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ["p2", "p3"]
        .iter()
        .any(|p| capnet_tests::snapshot(&a).port(p).state != "up")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "bond0's legs never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let active = e2.current().unwrap().port.expect("bond0 has an active leg");
    let (x, y): (&str, &str) = if active == "p2" {
        ("p2", "p3")
    } else {
        ("p3", "p2")
    };
    let (s1, s2) = (e1.subscribe().unwrap(), e2.subscribe().unwrap());
    let both = [&s1, &s2];

    run(&a, &["route", "add", "10.9.0.0/16", "via", "10.0.0.2"]);
    expect(
        &next(&s1, "route add"),
        Some("p0"),
        EgressReason::RouteChange,
        "route add",
    );
    quiet(&both, "route add");

    run(&a, &["link", "p1", "down"]);
    run(&a, &["link", "p1", "up"]);
    quiet(&both, "a flap of an unrelated port");

    run(&a, &["link", "p0", "down"]);
    expect(
        &next(&s1, "p0 down"),
        None,
        EgressReason::LinkDown,
        "p0 down",
    );
    quiet(&both, "p0 down");
    run(&a, &["link", "p0", "up"]);
    expect(
        &next(&s1, "p0 up"),
        Some("p0"),
        EgressReason::LinkUp,
        "p0 up",
    );
    quiet(&both, "p0 up");

    run(&a, &["route", "add", "10.8.0.0/16", "via", "10.0.0.2"]);
    quiet(&both, "a route for another prefix");

    run(&a, &["route", "del", "10.9.0.0/16", "via", "10.0.0.2"]);
    expect(
        &next(&s1, "route del"),
        None,
        EgressReason::RouteChange,
        "route del",
    );
    run(&a, &["route", "add", "10.9.0.0/16", "via", "10.1.0.2"]);
    expect(
        &next(&s1, "route via p1"),
        Some("p1"),
        EgressReason::RouteChange,
        "route via p1",
    );
    quiet(&both, "the route moved");

    run(&a, &["link", x, "down"]);
    expect(
        &next(&s2, "active down"),
        Some(y),
        EgressReason::Failover,
        "active down",
    );
    quiet(&both, "failover");
    run(&a, &["link", x, "up"]);
    // No primary: the bond stays where it is.
    quiet(&both, "the old leg up again without a primary");
    run(&a, &["bond", "primary", "bond0", x]);
    expect(
        &next(&s2, "primary"),
        Some(x),
        EgressReason::BondChange,
        "primary",
    );
    quiet(&both, "primary");

    // A driver restart: the port goes away, then returns as a new instance.
    a.kill("nicdrv p1", libc::SIGKILL).unwrap();
    expect(
        &next(&s1, "kill p1"),
        None,
        EgressReason::LinkDown,
        "kill p1",
    );
    let back = next(&s1, "p1 restart");
    expect(&back, Some("p1"), EgressReason::DriverRestart, "p1 restart");
    assert_eq!(back.driver_epoch, 1);
    quiet(&both, "p1 restart");

    // The bond's active leg restarts: fail over, then back to the primary.
    a.kill(&format!("nicdrv {x}"), libc::SIGKILL).unwrap();
    expect(
        &next(&s2, "kill the active leg's driver"),
        Some(y),
        EgressReason::Failover,
        "kill",
    );
    let back = next(&s2, "the primary's restart");
    assert_eq!(
        (back.port.as_deref(), back.driver_epoch),
        (Some(x), 1),
        "{back:?}"
    );
    quiet(&both, "the primary's restart");

    // Generations count the changes each subscriber saw.
    assert_eq!(back.generation, 4);
    drop((s1, s2));
}
