//! Seed inputs for every target: real frames, real records, valid capnp
//! calls built with the generated builders, the example configurations.
//! `tests/corpus.rs` writes them to `fuzz/corpus/TARGET/` (on request) and
//! checks that the checked-in corpus still holds them.

use crate::engine;
use crate::frames::{IV, KEY, LOCAL, REMOTE};
use crate::input::piece;
use crate::records::{keys, SUITES};
use capnet_schema::addr::write_socket_addr;
use capnet_schema::net_capnp::{net, net_admin, tcp_socket, udp_socket};
use capnet_schema::nic_capnp::nic;
use capnet_schema::supervisor_capnp::supervisor;
use capnet_schema::tls_capnp::tls;
use capnet_wire::tls::ContentType;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::message;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
};
use std::net::{IpAddr, SocketAddr};
use tlsd::record::RecordSealer;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a fixed address")
}

fn ethernet(proto: EthernetProtocol, payload_len: usize, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![0u8; ETHERNET_HEADER_LEN + payload_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: proto,
    }
    .emit(&mut frame);
    f(frame.payload_mut());
    buf
}

/// A TCP segment from `src` to `dst` (one family) with right checksums.
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    control: TcpControl,
    payload: &[u8],
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 4096,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            ethernet(
                EthernetProtocol::Ipv4,
                ip.buffer_len() + tcp.buffer_len(),
                |b| {
                    let mut p = Ipv4Packet::new_unchecked(b);
                    ip.emit(&mut p, &caps);
                    let mut t = TcpPacket::new_unchecked(p.payload_mut());
                    tcp.emit(&mut t, &s.into(), &d.into(), &caps);
                },
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            ethernet(
                EthernetProtocol::Ipv6,
                ip.buffer_len() + tcp.buffer_len(),
                |b| {
                    let mut p = Ipv6Packet::new_unchecked(b);
                    ip.emit(&mut p);
                    let mut t = TcpPacket::new_unchecked(p.payload_mut());
                    tcp.emit(&mut t, &s.into(), &d.into(), &caps);
                },
            )
        }
        _ => panic!("a TCP segment needs one address family"),
    }
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let (s, d) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let udp = UdpRepr {
        src_port: 5000,
        dst_port: 53,
    };
    let ip = Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    ethernet(
        EthernetProtocol::Ipv4,
        ip.buffer_len() + ip.payload_len,
        |b| {
            let mut p = Ipv4Packet::new_unchecked(b);
            ip.emit(&mut p, &caps);
            let mut u = UdpPacket::new_unchecked(p.payload_mut());
            udp.emit(
                &mut u,
                &s.into(),
                &d.into(),
                payload.len(),
                |buf| buf.copy_from_slice(payload),
                &caps,
            );
        },
    )
}

/// TLS 1.3 AES-128-GCM records as the peer sends them (`sealed`) and as
/// tlsd frames them for the NIC (`framed`), from record 0 on.
fn records(plain: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut sealer = RecordSealer::new(keys(0), 0).expect("a sealer");
    let mut framer = RecordSealer::new(keys(0), 0).expect("a sealer");
    let mut sealed = Vec::new();
    let mut framed = Vec::new();
    for p in plain {
        let mut out = Vec::new();
        sealer
            .seal(ContentType::ApplicationData, p, &mut out)
            .expect("seal");
        sealed.push(out);
        let mut out = Vec::new();
        framer
            .frame_for_device(ContentType::ApplicationData, p, &mut out)
            .expect("frame");
        framed.push(out);
    }
    (sealed, framed)
}

fn wire_frame() -> Vec<Vec<u8>> {
    let (sealed, _) = records(&[b"hello"]);
    let mut arp = ethernet(EthernetProtocol::Arp, 28, |b| b.fill(0));
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    vec![
        tcp(
            sa(LOCAL),
            sa(REMOTE),
            1000,
            Some(2000),
            TcpControl::Psh,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
        tcp(sa(LOCAL), sa(REMOTE), 1000, None, TcpControl::Syn, b""),
        tcp(
            sa(REMOTE),
            sa(LOCAL),
            7,
            Some(9),
            TcpControl::None,
            &sealed[0],
        ),
        tcp(
            sa("[fd00::2]:443"),
            sa("[fd00::1]:40000"),
            1,
            Some(1),
            TcpControl::Psh,
            b"six",
        ),
        udp4(b"query"),
        arp,
    ]
}

fn nicdrv_frames() -> Vec<Vec<u8>> {
    let (sealed, framed) = records(&[b"first record", b"second", b"third one"]);
    let (rx_seq, tx_seq) = (500u32, 9000u32);
    let mut rx = vec![0u8];
    rx.extend_from_slice(&tx_seq.to_le_bytes());
    rx.extend_from_slice(&rx_seq.to_le_bytes());
    let mut tx = rx.clone();
    let mut seq = rx_seq;
    for r in &sealed {
        rx.push(0);
        piece(
            &mut rx,
            &tcp(sa(REMOTE), sa(LOCAL), seq, Some(tx_seq), TcpControl::Psh, r),
        );
        seq = seq.wrapping_add(r.len() as u32);
    }
    let mut seq = tx_seq;
    for r in &framed {
        tx.push(0x41); // transmit, context 1
        piece(
            &mut tx,
            &tcp(sa(LOCAL), sa(REMOTE), seq, Some(rx_seq), TcpControl::Psh, r),
        );
        seq = seq.wrapping_add(r.len() as u32);
        tx.push(0); // the peer's ACK
        piece(
            &mut tx,
            &tcp(
                sa(REMOTE),
                sa(LOCAL),
                rx_seq,
                Some(seq),
                TcpControl::None,
                b"",
            ),
        );
    }
    // A lost record, then a resync at the next one.
    let mut lossy = rx.clone();
    lossy.truncate(9);
    let at = rx_seq + sealed[0].len() as u32;
    lossy.push(0);
    piece(
        &mut lossy,
        &tcp(sa(REMOTE), sa(LOCAL), at, None, TcpControl::Psh, &sealed[1]),
    );
    lossy.push(0x82 | 1 << 2);
    piece(&mut lossy, &at.to_le_bytes());
    vec![rx, tx, lossy]
}

fn netsrv_frames() -> Vec<Vec<u8>> {
    let (sealed, framed) = records(&[b"a record", b"another"]);
    let decrypted = (capnet_ring::flags::OFFLOADED << 3) as u8;
    let mut v = Vec::new();
    v.push(0); // the SYN
    piece(
        &mut v,
        &tcp(sa(REMOTE), sa(LOCAL), 99, None, TcpControl::Syn, b""),
    );
    v.extend_from_slice(&[3, 0, 0]); // bind RX, confirm at 0
    let mut seq = 100u32;
    for (i, r) in sealed.iter().enumerate() {
        v.push(if i == 0 { decrypted } else { 0 });
        piece(
            &mut v,
            &tcp(sa(REMOTE), sa(LOCAL), seq, Some(1), TcpControl::Psh, r),
        );
        v.extend_from_slice(&(r.len() as u16).to_le_bytes());
        seq = seq.wrapping_add(r.len() as u32);
    }
    v.push(4); // bind TX
    for r in &framed {
        v.push(2);
        piece(
            &mut v,
            &tcp(sa(LOCAL), sa(REMOTE), 1, Some(seq), TcpControl::Psh, r),
        );
    }
    v.extend_from_slice(&[5, 8, 0, 6]);
    piece(&mut v, b"replacement");
    v.push(7);
    vec![v]
}

fn ring_channel() -> Vec<Vec<u8>> {
    // send, flush, recv, release, flush, reclaim, unreturned; then again
    // with a scribbled free-queue slot.
    let mut v = Vec::new();
    for _ in 0..3 {
        v.extend_from_slice(&[1, 40, 1, 0, 0, 0, 2, 3, 4, 5, 6, 7]);
    }
    let mut s = v.clone();
    s.push(0);
    s.extend_from_slice(&64u16.to_le_bytes());
    piece(&mut s, &[0xff; 16]);
    s.extend_from_slice(&[6, 1, 9, 0, 0, 0, 0, 2, 3]);
    vec![v, s]
}

fn ring_bytes() -> Vec<Vec<u8>> {
    let op = |end: u8, action: u8| end << 2 | action;
    let mut v = Vec::new();
    piece(&mut v, b""); // the header as netsrv wrote it
    v.push(op(2, 0));
    piece(&mut v, b"from the application");
    v.extend_from_slice(&[op(0, 0), 16, op(0, 1), 255, op(1, 1), 30, op(3, 0), 64]);
    v.extend_from_slice(&[op(2, 2), op(3, 2), op(1, 3), op(3, 0), 8, op(0, 3)]);
    let mut bad = Vec::new();
    piece(&mut bad, b"CNSK\x01\x00\x00\x00\x40\x00\x00\x00");
    bad.push(op(4, 0));
    bad.extend_from_slice(&128u16.to_le_bytes());
    piece(&mut bad, &[0xff; 8]);
    bad.extend_from_slice(&[op(0, 0), 16, op(0, 2)]);
    vec![v, bad]
}

fn arena() -> Vec<Vec<u8>> {
    // Two slots handed out, the client takes them up, writes and lists
    // slot 1, netsrv takes the news and answers, the client takes its news.
    let at = |slot: u8, action: u8| slot << 5 | action;
    let mut v = vec![1, 1, at(0, 3), at(1, 3), at(1, 5)];
    piece(&mut v, b"up");
    v.extend_from_slice(&[6, at(1, 4)]);
    piece(&mut v, b"down");
    v.extend_from_slice(&[7, at(0, 2), 1]);
    // The up list scribbled: its first entry names slot 9 of 4, and its
    // tail says one entry is there.
    let mut bad = vec![1, at(0, 3), 0];
    bad.extend_from_slice(&8192u16.to_le_bytes());
    piece(&mut bad, &9u32.to_le_bytes());
    bad.push(0);
    bad.extend_from_slice(&4096u16.to_le_bytes());
    piece(&mut bad, &1u32.to_le_bytes());
    bad.extend_from_slice(&[6, 6, 7]);
    vec![v, bad]
}

fn chunks() -> Vec<Vec<u8>> {
    let mut v = vec![0];
    piece(&mut v, b"plain");
    v.extend_from_slice(&[2, 0xc3, 5, 0, 0, 0, 0]);
    let mut marked = (3u32 | 1 << 31).to_le_bytes().to_vec();
    marked.extend_from_slice(b"abc");
    marked.extend_from_slice(&2u32.to_le_bytes());
    marked.extend_from_slice(b"de");
    piece(&mut v, &marked);
    v.extend_from_slice(&[1, 64, 1, 64, 1, 64, 1, 64]);
    vec![v]
}

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

fn capnp() -> Vec<Vec<u8>> {
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

fn tls_record() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for suite in 0..SUITES.len() as u8 {
        let mut sealer = RecordSealer::new(keys(suite), 0).expect("a sealer");
        let mut v = vec![suite];
        for (i, text) in [&b"first"[..], b"", &[0x42; 300]].iter().enumerate() {
            let mut rec = Vec::new();
            sealer
                .seal(ContentType::ApplicationData, text, &mut rec)
                .expect("seal");
            // The first record in two pieces, as TCP may cut it.
            if i == 0 {
                let (a, b) = rec.split_at(3);
                v.push(0);
                piece(&mut v, a);
                v.push(0);
                piece(&mut v, b);
            } else {
                v.push(0);
                piece(&mut v, &rec);
            }
        }
        out.push(v);
    }
    // A record the NIC decrypted: its framing with the plaintext in place.
    let (_, framed) = records(&[b"decrypted by the NIC"]);
    let mut v = vec![0, 1];
    piece(&mut v, &framed[0]);
    out.push(v);
    out
}

fn config() -> Vec<Vec<u8>> {
    let mut v = vec![capnet::config::DEFAULT.as_bytes().to_vec()];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for name in ["capnet.toml", "host-b.toml", "bond-a.toml", "tls-a.toml"] {
        v.push(std::fs::read(format!("{dir}/{name}")).expect("an example configuration"));
    }
    v
}

/// Frames as `engine_frames` reads them: each after an op that lets the
/// application take a turn and moves the clock 10 ms.
fn engine_ops(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in frames {
        v.push(0x81);
        piece(&mut v, f);
    }
    v
}

/// What the peer sends when it does `action` (from the state every
/// `engine_frames` input starts in), our answers delivered to it.
fn engine_recorded(action: impl FnOnce(&mut engine::Engine, &mut engine::Wire)) -> Vec<u8> {
    let (mut e, _) = engine::setup();
    let mut w = engine::Wire::default();
    action(&mut e, &mut w);
    let mut frames = w.frames;
    frames.extend(e.pump(64));
    engine_ops(&frames)
}

/// An IP packet from the peer to the engine under test, in a frame.
fn engine_ip(v6: bool, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = engine::US_MAC.to_vec();
    f.extend_from_slice(&engine::PEER_MAC);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, if proto == 58 { 255 } else { 64 }]);
        f.extend_from_slice(&ENGINE_PEER6.octets());
        f.extend_from_slice(&ENGINE_US6.octets());
    } else {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        Ipv4Packet::new_unchecked(&mut h[..]).fill_checksum();
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&h);
    }
    f.extend_from_slice(l4);
    f
}

const ENGINE_PEER6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const ENGINE_US6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// An ICMP (or, `v6`, ICMPv6) message from the peer, its checksum right.
fn engine_icmp(v6: bool, header: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut m = header.to_vec();
    m.extend_from_slice(body);
    if v6 {
        Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(&ENGINE_PEER6, &ENGINE_US6);
        engine_ip(true, 58, &m)
    } else {
        Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
        engine_ip(false, 1, &m)
    }
}

fn engine_frames() -> Vec<Vec<u8>> {
    let (_, setup) = engine::setup();
    let us4 = sa(&format!("10.0.0.2:{}", engine::TCP_PORT));
    let udp4 = sa(&format!("10.0.0.2:{}", engine::UDP_PORT));
    let udp6 = sa(&format!("[fd00::2]:{}", engine::UDP_PORT));
    let mut v = vec![
        // The handshake, the resolutions, a datagram: replayed.
        engine_ops(&setup),
        // Data on the connection, a little and a lot, then its end.
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| c.write(b"GET / HTTP/1.1\r\n\r\n"));
        }),
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| c.write(&[0x17; 6000]));
        }),
        engine_recorded(|e, _| {
            let (now, id) = (e.now, e.peer_conn);
            let _ = e.peer.tcp(now, id, |c| {
                c.write(b"bye");
                c.shutdown_write();
            });
        }),
        engine_recorded(|e, w| {
            let (now, id) = (e.now, e.peer_conn);
            e.peer.tcp_abort(now, id, w);
        }),
        // New connections, both families.
        engine_recorded(|e, _| {
            let now = e.now;
            let _ = e.peer.tcp_connect(now, None, us4, Default::default());
        }),
        engine_recorded(|e, _| {
            let now = e.now;
            let to = sa(&format!("[fd00::2]:{}", engine::TCP_PORT));
            let _ = e.peer.tcp_connect(now, None, to, Default::default());
        }),
        // A SYN to a closed port (a reset answers).
        engine_recorded(|e, _| {
            let now = e.now;
            let _ = e
                .peer
                .tcp_connect(now, None, sa("10.0.0.2:81"), Default::default());
        }),
    ];
    // Datagrams: small, fragmented, to a closed port; both families.
    for (to, len) in [
        (udp4, 10),
        (udp4, 4000),
        (udp6, 10),
        (udp6, 4000),
        (sa("10.0.0.2:9"), 10),
        (sa("[fd00::2]:9"), 10),
    ] {
        v.push(engine_recorded(|e, w| {
            let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let id = e.peer.udp_bind(sa(local)).expect("a free port");
            let _ = e.peer.udp_send(e.now, id, to, &vec![0x55; len], w);
        }));
    }
    // Crafted: echo requests, an ARP request, neighbour discovery, and a
    // Fragmentation Needed quoting the connection.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&engine::PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&engine::PEER_MAC);
    arp.extend_from_slice(&[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let mut ns = ENGINE_US6.octets().to_vec();
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&engine::PEER_MAC);
    let mut na = ENGINE_PEER6.octets().to_vec();
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&engine::PEER_MAC);
    // About a TCP segment (checked against the send window) and a datagram.
    let ip = |proto: u8| {
        vec![
            0x45, 0, 5, 0xdc, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ]
    };
    let mut tcp_quote = ip(6);
    tcp_quote.extend_from_slice(&engine::TCP_PORT.to_be_bytes());
    tcp_quote.extend_from_slice(&40000u16.to_be_bytes());
    tcp_quote.extend_from_slice(&[0; 4]);
    let mut udp_quote = ip(17);
    udp_quote.extend_from_slice(&engine::UDP_PORT.to_be_bytes());
    udp_quote.extend_from_slice(&[0x14, 0xe9, 0x05, 0xc8, 0, 0]);
    v.push(engine_ops(&[
        engine_icmp(false, [8, 0, 0, 0, 0, 1, 0, 1], b"ping"),
        engine_icmp(true, [128, 0, 0, 0, 0, 1, 0, 1], b"ping"),
        arp,
        engine_icmp(true, [135, 0, 0, 0, 0, 0, 0, 0], &ns),
        engine_icmp(true, [136, 0, 0, 0, 0x60, 0, 0, 0], &na),
        engine_icmp(false, [3, 4, 0, 0, 0, 0, 2, 0x40], &tcp_quote),
        engine_icmp(false, [3, 4, 0, 0, 0, 0, 4, 0], &udp_quote),
        engine_ip(false, 132, &[0; 8]),
    ]));
    v
}

/// A run of full segments (each its own input's first frame is cut; the
/// run coalesces), and a merged frame to cut.
fn segmentation() -> Vec<Vec<u8>> {
    let segs: Vec<Vec<u8>> = (0..4u32)
        .map(|i| {
            let payload = vec![i as u8; 1000];
            tcp(
                sa(LOCAL),
                sa(REMOTE),
                1000 + i * 1000,
                Some(1),
                TcpControl::None,
                &payload,
            )
        })
        .collect();
    let input = |size: u16, frames: &[Vec<u8>]| {
        let mut v = size.to_le_bytes().to_vec();
        for f in frames {
            v.extend_from_slice(&(f.len() as u16).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    };
    let mut buf = vec![0u8; capnet_wire::gso::MAX_FRAME];
    let max = buf.len();
    let mut m =
        capnet_wire::gso::Merge::start(&mut buf, &segs[0], max, capnet_wire::gso::Ident::Any)
            .expect("a full ACK segment leads");
    for s in &segs[1..] {
        assert!(m.push(&mut buf, s));
    }
    let len = m.finish(&mut buf);
    vec![
        input(1000, &segs),
        input(400, &[buf[..len].to_vec()]),
        input(64, &segs[..1]),
    ]
}

/// Linux's frames over a TAP: a merged frame with a partial checksum
/// (GSO), a segment with a partial checksum, one Linux verified, and a
/// plain one.
fn tap_frames() -> Vec<Vec<u8>> {
    use capnet_wire::gso::Segments;
    use capnet_wire::vnet::{Header, F_DATA_VALID, GSO_NONE, LEN};
    let with = |h: Header, frame: &[u8]| {
        let mut v = vec![0u8; LEN];
        h.emit((&mut v[..]).try_into().expect("LEN bytes"));
        v.extend_from_slice(frame);
        v
    };
    let mut merged = tcp(
        sa(LOCAL),
        sa(REMOTE),
        1000,
        Some(1),
        TcpControl::None,
        &[5; 6000],
    );
    let cut = Segments::new(&merged, 1448, 1500)
        .expect("a plain TCP frame cuts")
        .for_device(&mut merged);
    let gso = Header::tso(&cut);
    let mut small = tcp(
        sa(LOCAL),
        sa(REMOTE),
        1,
        Some(1),
        TcpControl::Psh,
        b"partial",
    );
    let small_cut = Segments::new(&small, 1448, 1500)
        .expect("a plain TCP frame cuts")
        .for_device(&mut small);
    let partial = Header {
        gso_type: GSO_NONE,
        gso_size: 0,
        ..Header::tso(&small_cut)
    };
    let plain = tcp(
        sa(LOCAL),
        sa(REMOTE),
        9,
        Some(1),
        TcpControl::None,
        b"plain",
    );
    let valid = Header {
        flags: F_DATA_VALID,
        ..Header::default()
    };
    vec![
        with(gso, &merged),
        with(partial, &small),
        with(valid, &plain),
        with(Header::default(), &plain),
    ]
}

/// The seeds of target `name`.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "wire_frame" => wire_frame(),
        "nicdrv_frames" => nicdrv_frames(),
        "netsrv_frames" => netsrv_frames(),
        "ring_channel" => ring_channel(),
        "ring_bytes" => ring_bytes(),
        "chunks" => chunks(),
        "arena" => arena(),
        "capnp" => capnp(),
        "tls_record" => tls_record(),
        "config" => config(),
        "engine_frames" => engine_frames(),
        "segmentation" => segmentation(),
        "tap_frames" => tap_frames(),
        _ => Vec::new(),
    }
}
