//! Cap'n Proto messages as a service socket delivers them: read with the
//! project's `reader_options`, the RPC envelope walked, and a call's
//! parameters read as the service's generated readers type them, through
//! the project's own readers where a service has one (`read_socket_addr`,
//! netsrv's `Target::from_flow`, `parse_cidr` and `parse_route`, tlsd's
//! connect and option readers, nicdrv's `read_faults`). Every field is then
//! walked through the schema (texts checked as UTF-8, lists element by
//! element) so that no pointer a service might follow goes unread.
//!
//! Input: `[service][capnp messages, serialized]`; service 0 is netsrv's
//! `net.sock`, 1 tlsd's `tls.sock`, 2 a nicdrv's `Nic`, 3 the supervisor's
//! `admin.sock` (with `NetAdmin`, reached through it).

use capnet_schema::addr::read_socket_addr;
use capnet_schema::net_capnp::{egress, net, net_admin, tcp_socket, udp_socket};
use capnet_schema::nic_capnp::nic;
use capnet_schema::offload_capnp::offload_context;
use capnet_schema::supervisor_capnp::supervisor;
use capnet_schema::tls_capnp::tls;
use capnet_schema::transport::reader_options;
use capnp::any_pointer;
use capnp::dynamic_value;
use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::message;
use capnp_rpc::rpc_twoparty_capnp::Side;

/// Messages read from one input (a connection sends many).
const MESSAGES: usize = 8;
/// Values the schema walk visits per message: a list of empty structs
/// costs no bytes, so its length alone must not set the work.
const WALK_BUDGET: u32 = 4096;

pub fn capnp(data: &[u8]) {
    let Some((&service, stream)) = data.split_first() else {
        return;
    };
    // Word-aligned, as the segments a service reads off its socket are.
    // The messages are read in place: a segment table may announce up to
    // the traversal limit (512 MiB), which a service allocates before the
    // bytes arrive (issue 10's allocation bomb, not this target's concern)
    // and which would slow every input to a crawl here.
    let mut words = capnp::Word::allocate_zeroed_vec(stream.len().div_ceil(8));
    let aligned = capnp::Word::words_to_bytes_mut(&mut words);
    aligned[..stream.len()].copy_from_slice(stream);
    let mut rest = &aligned[..stream.len()];
    for _ in 0..MESSAGES {
        if rest.is_empty() {
            break;
        }
        let Ok(msg) =
            capnp::serialize::read_message_from_flat_slice(&mut rest, reader_options(Side::Server))
        else {
            break;
        };
        let _ = rpc_message(service % 4, &msg);
    }
}

fn rpc_message<S: capnp::message::ReaderSegments>(
    service: u8,
    msg: &capnp::message::Reader<S>,
) -> capnp::Result<()> {
    let root: message::Reader<'_> = msg.get_root()?;
    walk(root.into(), &mut WALK_BUDGET.clone())?;
    let message::Call(call) = root.which()? else {
        return Ok(());
    };
    let call = call?;
    let payload = call.get_params()?;
    let _ = payload.get_cap_table()?.len();
    let content = payload.get_content();
    let (iid, mid) = (call.get_interface_id(), call.get_method_id());
    match service {
        0 => net_call(iid, mid, content),
        1 => tls_call(iid, mid, content),
        2 => nic_call(iid, mid, content),
        _ => admin_call(iid, mid, content),
    }
}

/// Reads `content` as `T` and walks every field of it.
fn params<'a, T>(content: any_pointer::Reader<'a>) -> capnp::Result<T>
where
    T: capnp::traits::FromPointerReader<'a> + Into<dynamic_value::Reader<'a>> + Copy,
{
    let p: T = content.get_as()?;
    walk(p.into(), &mut WALK_BUDGET.clone())?;
    Ok(p)
}

/// Visits every field, list element, text and union member reachable from
/// `v`, within `budget` values.
fn walk(v: dynamic_value::Reader<'_>, budget: &mut u32) -> capnp::Result<()> {
    if *budget == 0 {
        return Ok(());
    }
    *budget -= 1;
    match v {
        dynamic_value::Reader::Struct(s) => {
            for f in s.get_schema().get_non_union_fields()? {
                if s.has(f)? {
                    walk(s.get(f)?, budget)?;
                }
            }
            // A null pointer reads as the default value, whose union may
            // name the same type again (rpc's `Message.unimplemented`):
            // only what is there is walked.
            if let Some(f) = s.which()?.filter(|f| s.has(*f).unwrap_or(false)) {
                walk(s.get(f)?, budget)?;
            }
        }
        dynamic_value::Reader::List(l) => {
            for i in 0..l.len() {
                if *budget == 0 {
                    break;
                }
                walk(l.get(i)?, budget)?;
            }
        }
        dynamic_value::Reader::Text(t) => {
            let _ = t.to_str();
        }
        dynamic_value::Reader::Enum(e) => {
            let _ = e.get_enumerant()?;
        }
        dynamic_value::Reader::AnyPointer(p) => {
            let _ = p.target_size()?;
        }
        _ => {}
    }
    Ok(())
}

/// netsrv: `Net`, `TcpSocket`, `UdpSocket`, `Egress`.
fn net_call(iid: u64, mid: u16, content: any_pointer::Reader<'_>) -> capnp::Result<()> {
    match (iid, mid) {
        (net::Client::TYPE_ID, 0) => {
            let p: net::tcp_connect_params::Reader<'_> = params(content)?;
            read_socket_addr(p.get_remote()?)?;
        }
        (net::Client::TYPE_ID, 1) => {
            let p: net::tcp_listen_params::Reader<'_> = params(content)?;
            read_socket_addr(p.get_local()?)?;
        }
        (net::Client::TYPE_ID, 2) => {
            let p: net::udp_bind_params::Reader<'_> = params(content)?;
            read_socket_addr(p.get_local()?)?;
        }
        (net::Client::TYPE_ID, 4) => {
            let p: net::egress_params::Reader<'_> = params(content)?;
            let _ = netsrv::egress::Target::from_flow(p.get_flow()?);
        }
        (tcp_socket::Client::TYPE_ID, 0) => {
            let p: tcp_socket::read_params::Reader<'_> = params(content)?;
            let _ = p.get_max();
        }
        (tcp_socket::Client::TYPE_ID, 1) => {
            let p: tcp_socket::write_params::Reader<'_> = params(content)?;
            let _ = p.get_data()?.len();
        }
        (tcp_socket::Client::TYPE_ID, 2) => {
            let p: tcp_socket::shutdown_params::Reader<'_> = params(content)?;
            let _ = p.get_how();
        }
        (tcp_socket::Client::TYPE_ID, 6) => {
            let _ = netsrv::service::read_held(params(content)?);
        }
        (tcp_socket::Client::TYPE_ID, 8) => {
            let p: tcp_socket::offload_params::Reader<'_> = params(content)?;
            let _ = capnet_schema::offload::read_flow(p.get_request()?.get_flow()?);
        }
        (tcp_socket::Client::TYPE_ID, 9) => {
            let _: tcp_socket::offload_stop_params::Reader<'_> = params(content)?;
        }
        (udp_socket::Client::TYPE_ID, 0) => {
            let p: udp_socket::send_to_params::Reader<'_> = params(content)?;
            let _ = p.get_data()?.len();
            read_socket_addr(p.get_to()?)?;
        }
        (udp_socket::Client::TYPE_ID, 1) => {
            let _: udp_socket::recv_from_params::Reader<'_> = params(content)?;
        }
        (egress::Client::TYPE_ID, 1) => {
            let _: egress::subscribe_params::Reader<'_> = params(content)?;
        }
        _ => {}
    }
    Ok(())
}

/// tlsd: `Tls`.
fn tls_call(iid: u64, mid: u16, content: any_pointer::Reader<'_>) -> capnp::Result<()> {
    match (iid, mid) {
        (tls::Client::TYPE_ID, 0) => {
            let p: tls::connect_params::Reader<'_> = params(content)?;
            let _ = tlsd::service::fuzz_api::read_connect(p);
        }
        (tls::Client::TYPE_ID, 1) => {
            let p: tls::listen_params::Reader<'_> = params(content)?;
            let _ = tlsd::service::fuzz_api::read_listen(p);
        }
        _ => {}
    }
    Ok(())
}

/// A nicdrv: `Nic`, `OffloadContext`.
fn nic_call(iid: u64, mid: u16, content: any_pointer::Reader<'_>) -> capnp::Result<()> {
    match (iid, mid) {
        (nic::Client::TYPE_ID, 3) => {
            let p: nic::set_faults_params::Reader<'_> = params(content)?;
            let _ = nicdrv::service::read_faults(p.get_faults()?);
        }
        (nic::Client::TYPE_ID, 4) => {
            let _: nic::set_carrier_params::Reader<'_> = params(content)?;
        }
        (nic::Client::TYPE_ID, 6) => {
            let p: nic::offload_params::Reader<'_> = params(content)?;
            let cfg = nicdrv::offload::control::OffloadConfig {
                port: "fuzz0".into(),
                epoch: 1,
                offered: capnet_schema::offload::KINDS.to_vec(),
            };
            let _ = nicdrv::offload::control::read_request(&cfg, p.get_request()?);
        }
        (offload_context::Client::TYPE_ID, 2) => {
            let _: offload_context::resync_params::Reader<'_> = params(content)?;
        }
        (offload_context::Client::TYPE_ID, 3) => {
            let _: offload_context::resync_reject_params::Reader<'_> = params(content)?;
        }
        _ => {}
    }
    Ok(())
}

/// The supervisor's `Supervisor`, and netsrv's `NetAdmin` behind it.
fn admin_call(iid: u64, mid: u16, content: any_pointer::Reader<'_>) -> capnp::Result<()> {
    match (iid, mid) {
        (supervisor::Client::TYPE_ID, 1) => {
            let p: supervisor::set_faults_params::Reader<'_> = params(content)?;
            let _ = p.get_port()?.to_str();
        }
        (supervisor::Client::TYPE_ID, 2) => {
            let p: supervisor::set_carrier_params::Reader<'_> = params(content)?;
            let _ = p.get_port()?.to_str();
        }
        (supervisor::Client::TYPE_ID, 5) => {
            let p: supervisor::port_counters_params::Reader<'_> = params(content)?;
            let _ = p.get_port()?.to_str();
        }
        (supervisor::Client::TYPE_ID, 6) => {
            let p: supervisor::offload_contexts_params::Reader<'_> = params(content)?;
            let _ = p.get_port()?.to_str();
        }
        (net_admin::Client::TYPE_ID, 2) => {
            let p: net_admin::bond_add_params::Reader<'_> = params(content)?;
            for a in p.get_bond()?.get_addresses()? {
                if let Ok(a) = a?.to_str() {
                    let _ = netsrv::addr::parse_cidr(a);
                }
            }
        }
        (net_admin::Client::TYPE_ID, 3) => {
            let _: net_admin::bond_set_mode_params::Reader<'_> = params(content)?;
        }
        (net_admin::Client::TYPE_ID, 4) => {
            let _: net_admin::bond_set_primary_params::Reader<'_> = params(content)?;
        }
        (net_admin::Client::TYPE_ID, 5 | 6) => {
            // routeAdd and routeRemove take the same parameters.
            let p: net_admin::route_add_params::Reader<'_> = params(content)?;
            if let (Ok(to), Ok(via)) = (p.get_to()?.to_str(), p.get_via()?.to_str()) {
                let _ = netsrv::admin::parse_route(to, via);
            }
        }
        _ => {}
    }
    Ok(())
}
