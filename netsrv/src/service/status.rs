//! `NetAdmin.status`'s body: the stack's state and every driver's own
//! counters.

use super::*;

type NicCounters = capnp::capability::Response<nic::counters_results::Owned>;

/// The whole status, with every driver's own counters.
pub async fn fill_status(shared: &Rc<Shared>, mut status: net_status::Builder<'_>) {
    let counters = driver_counters(shared).await;
    write_status(&shared.stack.borrow(), &counters, status.reborrow());
    status.set_confinement(capnet_confine::current_text());
    if let Ok(c) = status.get_counters() {
        crate::limits::write_counters(&shared.accounts, &shared.transport, c.init_limits());
    }
}

/// How long a status waits for one driver's counters.
const STATUS_DRIVER_DEADLINE: Duration = Duration::from_secs(1);

/// Every attached driver's own counters. Asked before the stack is
/// borrowed: no borrow may live across an await.
async fn driver_counters(shared: &Rc<Shared>) -> HashMap<String, NicCounters> {
    let asks = shared.nics().into_iter().map(|(name, nic)| async move {
        let call = nic.counters_request().send().promise;
        // A driver that does not answer leaves its counters out of the
        // status; it does not hold the status up.
        match tokio::time::timeout(STATUS_DRIVER_DEADLINE, call).await {
            Ok(Ok(r)) => Some((name, r)),
            _ => None,
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn mac_text(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn set_texts(mut list: capnp::text_list::Builder<'_>, items: &[String]) {
    for (i, a) in items.iter().enumerate() {
        list.set(i as u32, a);
    }
}

fn write_status(
    stack: &Stack,
    nic_counters: &HashMap<String, NicCounters>,
    mut status: net_status::Builder<'_>,
) {
    let all = stack.ports();
    let mut ports = status.reborrow().init_ports(all.len() as u32);
    for (i, (leg, iface)) in all.iter().enumerate() {
        let mut b = ports.reborrow().get(i as u32);
        b.set_name(&leg.meta.name);
        b.set_backend(&leg.meta.backend);
        b.set_mac(mac_text(leg.meta.mac));
        b.set_mtu(leg.meta.mtu as u32);
        b.set_link_up(leg.usable());
        b.set_interface(iface);
        b.set_state(leg.state());
        b.set_driver_epoch(leg.epoch);
        let c = leg.counters();
        b.set_tx_frames(c.tx_frames);
        b.set_rx_frames(c.rx_frames);
        if let Some(resp) = nic_counters.get(&leg.meta.name) {
            if let Ok(c) = resp.get().and_then(|r| r.get_counters()) {
                let _ = b.set_counters(c);
            }
        }
    }
    let addrs: Vec<String> = stack
        .ifaces
        .iter()
        .flat_map(|p| {
            p.addrs
                .iter()
                .map(move |a| format!("{a} on {}", p.link.name))
        })
        .collect();
    set_texts(status.reborrow().init_addresses(addrs.len() as u32), &addrs);
    let routes = stack.route_texts();
    set_texts(status.reborrow().init_routes(routes.len() as u32), &routes);
    let sockets = stack.sockets();
    let mut list = status.reborrow().init_sockets(sockets.len() as u32);
    for (i, s) in sockets.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_kind(s.kind);
        b.set_local(&s.local);
        b.set_remote(&s.remote);
        b.set_state(&s.state);
        b.set_rx_bytes(s.rx_bytes);
        b.set_tx_bytes(s.tx_bytes);
        b.set_ring_mode(s.ring_mode);
    }
    let bonds: Vec<&crate::link::Link> = stack
        .ifaces
        .iter()
        .map(|i| &i.link)
        .filter(|l| l.is_bond())
        .collect();
    let mut list = status.reborrow().init_bonds(bonds.len() as u32);
    for (i, link) in bonds.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_name(&link.name);
        b.set_mode(match link.mode {
            crate::link::Mode::BalanceXor => BondMode::BalanceXor,
            _ => BondMode::ActiveBackup,
        });
        let legs: Vec<String> = link.legs.iter().map(|l| l.meta.name.clone()).collect();
        set_texts(b.reborrow().init_legs(legs.len() as u32), &legs);
        if let Some(a) = link.active() {
            b.set_active(&link.legs[a].meta.name);
        }
        if let Some(p) = link.primary {
            b.set_primary(&link.legs[p].meta.name);
        }
        let c = link.counters;
        b.set_failovers(c.failovers);
        b.set_announcements(c.announcements);
        b.set_tx_no_leg(c.tx_no_leg);
        let d = link.device_counters();
        b.set_tx_frames(d.tx_frames);
        b.set_rx_frames(d.rx_frames);
    }
    let c = stack.counters;
    let d = stack.device_counters();
    let (attaches, detaches, mapped) = stack.driver_counters();
    let mut b = status.init_counters();
    b.set_sessions(c.sessions);
    b.set_sessions_killed(c.sessions_killed);
    b.set_sessions_refused(c.sessions_refused);
    b.set_drivers_refused(c.drivers_refused);
    b.set_bad_ring_indices(c.bad_ring_indices);
    b.set_tcp_connects(c.tcp_connects);
    b.set_tcp_accepts(c.tcp_accepts);
    b.set_tcp_closed_unread(c.tcp_closed_unread);
    b.set_ring_sets_made(c.ring_sets_made);
    b.set_ring_sets_reused(c.ring_sets_reused);
    b.set_ring_sets_still_mapped(c.ring_sets_still_mapped);
    b.set_ring_arena_slots(c.ring_arena_slots);
    b.set_tcp_resets(c.tcp_resets);
    b.set_udp_sent(c.udp_sent);
    b.set_udp_received(c.udp_received);
    b.set_port_bad_descriptors(all.iter().filter(|p| p.0.state() == "failed").count() as u64);
    b.set_rx_bad_checksum(d.rx_bad_checksum);
    b.set_tx_no_buffer(d.tx_no_buffer);
    b.set_driver_attaches(attaches);
    b.set_driver_detaches(detaches);
    b.set_rings_mapped(mapped);
    let tcp = &stack.engine().tcp;
    let totals = tcp.conn_totals();
    b.set_tcp_retransmits(totals.retransmits);
    b.set_tcp_timeouts(totals.timeouts);
    write_tcp_counters(&tcp.counters, &totals, b.reborrow().init_tcp());
    let (resent, dropped) = stack.ifaces.iter().fold((0, 0), |(r, d), i| {
        (
            r + i.link.counters.salvage_resent,
            d + i.link.counters.salvage_dropped,
        )
    });
    b.set_salvage_resent(resent);
    b.set_salvage_dropped(dropped);
    b.set_egress_watchers(c.egress_watchers);
    b.set_egress_events(c.egress_events);
    let o = stack.offload_counters();
    let mut ob = b.init_offload();
    ob.set_tx_tagged(o.tx_tagged);
    ob.set_tx_replaced(o.tx_replaced);
    ob.set_tx_held(o.tx_held);
    ob.set_tx_held_sent(o.tx_held_sent);
    ob.set_tx_held_dropped(o.tx_held_dropped);
    ob.set_rx_decrypted(o.rx_decrypted);
    ob.set_rx_out_of_order(o.rx_out_of_order);
    ob.set_rx_out_of_order_decrypted(o.rx_out_of_order_decrypted);
}

fn write_tcp_counters(
    t: &capnet_tcpip::tcp::TcpCounters,
    c: &capnet_tcpip::tcp::ConnCounters,
    mut b: capnet_schema::net_capnp::tcp_counters::Builder<'_>,
) {
    b.set_active_opens(t.active_opens);
    b.set_passive_opens(t.passive_opens);
    b.set_resets_sent(t.resets_sent);
    b.set_resets_received(t.resets_received);
    b.set_no_socket(t.no_socket);
    b.set_syn_cookies_sent(t.syn_cookies_sent);
    b.set_syn_cookies_accepted(t.syn_cookies_accepted);
    b.set_syn_cookies_rejected(t.syn_cookies_rejected);
    b.set_listen_overflows(t.listen_overflows);
    b.set_time_wait_skipped(t.time_wait_skipped);
    b.set_time_wait_reopened(t.time_wait_reopened);
    b.set_segments_in(c.segs_in);
    b.set_segments_out(c.segs_out);
    b.set_retransmits(c.retransmits);
    b.set_fast_recoveries(c.fast_recoveries);
    b.set_timeouts(c.timeouts);
    b.set_tail_loss_probes(c.tail_loss_probes);
    b.set_dsacks(c.dsacks);
    b.set_challenge_acks(c.challenge_acks);
    b.set_paws_drops(c.paws_drops);
    b.set_out_of_window(c.out_of_window);
    b.set_out_of_order(c.out_of_order);
    b.set_out_of_order_dropped(c.ooo_dropped);
    b.set_zero_window_probes(c.zero_window_probes);
}
