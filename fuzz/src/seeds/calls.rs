//! Seeds of the `capnp` target: calls built with the generated builders.

use super::*;

/// One RPC call message carrying `fill`'s parameters.
fn call(iid: u64, mid: u16, fill: impl FnOnce(capnp::any_pointer::Builder<'_>)) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    let mut c = m.init_root::<message::Builder<'_>>().init_call();
    c.set_question_id(1);
    c.set_interface_id(iid);
    c.set_method_id(mid);
    c.reborrow().init_target().set_imported_cap(0);
    fill(c.init_params().init_content());
    capnp::serialize::write_message_to_words(&m)
}

pub(super) fn capnp() -> Vec<Vec<u8>> {
    let remote = sa("10.0.0.2:443");
    let mut bootstrap = capnp::message::Builder::new_default();
    bootstrap
        .init_root::<message::Builder<'_>>()
        .init_bootstrap()
        .set_question_id(0);
    let bootstrap = capnp::serialize::write_message_to_words(&bootstrap);
    let with = |service: u8, msgs: Vec<Vec<u8>>| {
        let mut v = vec![service];
        v.extend_from_slice(&bootstrap);
        msgs.iter().for_each(|m| v.extend_from_slice(m));
        v
    };
    vec![
        with(
            0,
            vec![
                call(net::Client::TYPE_ID, 0, |c| {
                    let mut p = c.init_as::<net::tcp_connect_params::Builder<'_>>();
                    write_socket_addr(p.reborrow().init_remote(), remote);
                    p.init_options();
                }),
                call(net::Client::TYPE_ID, 2, |c| {
                    let p = c.init_as::<net::udp_bind_params::Builder<'_>>();
                    write_socket_addr(p.init_local(), sa("[::]:53"));
                }),
                call(net::Client::TYPE_ID, 4, |c| {
                    let p = c.init_as::<net::egress_params::Builder<'_>>();
                    write_socket_addr(p.init_flow().init_remote(), remote);
                }),
            ],
        ),
        with(
            0,
            vec![
                call(tcp_socket::Client::TYPE_ID, 1, |c| {
                    let mut p = c.init_as::<tcp_socket::write_params::Builder<'_>>();
                    p.set_data(b"bytes to send");
                }),
                call(tcp_socket::Client::TYPE_ID, 0, |c| {
                    let mut p = c.init_as::<tcp_socket::read_params::Builder<'_>>();
                    p.set_max(4096);
                }),
                call(tcp_socket::Client::TYPE_ID, 6, |c| {
                    let p = c.init_as::<tcp_socket::open_rings_params::Builder<'_>>();
                    let mut held = p.init_held(3);
                    for (i, id) in [1, 2, u64::MAX].into_iter().enumerate() {
                        held.set(i as u32, id);
                    }
                }),
                call(udp_socket::Client::TYPE_ID, 0, |c| {
                    let mut p = c.init_as::<udp_socket::send_to_params::Builder<'_>>();
                    p.set_data(b"datagram");
                    write_socket_addr(p.init_to(), remote);
                }),
            ],
        ),
        with(
            1,
            vec![call(tls::Client::TYPE_ID, 0, |c| {
                let mut p = c.init_as::<tls::connect_params::Builder<'_>>();
                write_socket_addr(p.reborrow().init_remote(), remote);
                p.set_server_name("example.test");
                let mut o = p.init_options();
                o.reborrow().init_alpn(2).set(0, "h2");
                o.init_cipher_suites(1).set(0, "TLS13_AES_128_GCM_SHA256");
            })],
        ),
        with(
            2,
            vec![
                call(nic::Client::TYPE_ID, 3, |c| {
                    let p = c.init_as::<nic::set_faults_params::Builder<'_>>();
                    let mut f = p.init_faults();
                    f.set_loss_ppm(20_000);
                    f.set_carrier_up(true);
                }),
                call(nic::Client::TYPE_ID, 6, |c| {
                    let p = c.init_as::<nic::offload_params::Builder<'_>>();
                    let mut q = p.init_request();
                    q.set_kind(capnet_schema::offload_capnp::OffloadKind::TlsRx);
                    capnet_schema::offload::write_tcp_flow(
                        q.reborrow().init_flow().init_tcp(),
                        sa(LOCAL),
                        sa(REMOTE),
                        0,
                    );
                    let mut t = q.get_params().init_tls();
                    t.set_version(0x0304);
                    t.set_key(&KEY[..16]);
                    t.set_iv(&IV);
                }),
            ],
        ),
        with(
            3,
            vec![
                call(supervisor::Client::TYPE_ID, 2, |c| {
                    let mut p = c.init_as::<supervisor::set_carrier_params::Builder<'_>>();
                    p.set_port("sim0");
                    p.set_up(false);
                }),
                call(net_admin::Client::TYPE_ID, 5, |c| {
                    let mut p = c.init_as::<net_admin::route_add_params::Builder<'_>>();
                    p.set_to("10.9.0.0/16");
                    p.set_via("10.0.0.254");
                }),
                call(net_admin::Client::TYPE_ID, 2, |c| {
                    let p = c.init_as::<net_admin::bond_add_params::Builder<'_>>();
                    let mut b = p.init_bond();
                    b.set_name("bond0");
                    b.init_addresses(1).set(0, "10.1.0.1/24");
                }),
            ],
        ),
    ]
}
