//! `--json`: capnp answers as JSON, field for field. Keys are the schema's
//! field names in snake_case, enumerants in kebab-case (as the tables print
//! them), so a counter added to the schema shows up without a change here.

use capnet_schema::common_capnp::socket_addr;
use capnp::dynamic_value;
use capnp::traits::HasTypeId;
use serde_json::{Map, Value};

/// `rxBadChecksum` -> `rx_bad_checksum`.
pub fn snake_case(name: &str) -> String {
    separated(name, '_')
}

fn separated(name: &str, sep: char) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push(sep);
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Any capnp value (a typed reader converts with `.into()`).
pub fn value(v: dynamic_value::Reader<'_>) -> capnp::Result<Value> {
    use dynamic_value::Reader as R;
    Ok(match v {
        R::Void | R::AnyPointer(_) | R::Capability(_) => Value::Null,
        R::Bool(b) => b.into(),
        R::Int8(n) => n.into(),
        R::Int16(n) => n.into(),
        R::Int32(n) => n.into(),
        R::Int64(n) => n.into(),
        R::UInt8(n) => n.into(),
        R::UInt16(n) => n.into(),
        R::UInt32(n) => n.into(),
        R::UInt64(n) => n.into(),
        R::Float32(n) => f64::from(n).into(),
        R::Float64(n) => n.into(),
        R::Enum(e) => match e.get_enumerant()? {
            Some(en) => separated(en.get_proto().get_name()?.to_str()?, '-').into(),
            // From a newer peer: the number is all we know.
            None => e.get_value().into(),
        },
        R::Text(t) => String::from_utf8_lossy(t.as_bytes()).into_owned().into(),
        // The listings' Data are a port's MAC (6 bytes) and an SA's
        // addresses (4 or 16).
        R::Data(d) => match capnet_schema::addr::read_ip(d) {
            Ok(ip) => ip.to_string().into(),
            Err(_) => capnet_wire::mac::format_mac(d).into(),
        },
        R::List(l) => Value::Array(l.iter().map(|v| value(v?)).collect::<capnp::Result<_>>()?),
        R::Struct(s) => {
            let schema = s.get_schema();
            // An endpoint reads as "10.0.0.1:443", not as bytes and a number.
            if schema.get_proto().get_id() == <socket_addr::Reader<'_> as HasTypeId>::TYPE_ID {
                let addr =
                    capnet_schema::addr::read_socket_addr(s.downcast::<socket_addr::Owned>())?;
                return Ok(addr.to_string().into());
            }
            let mut obj = Map::new();
            for field in schema.get_non_union_fields()? {
                let name = snake_case(field.get_proto().get_name()?.to_str()?);
                obj.insert(name, value(s.get(field)?)?);
            }
            if let Some(field) = s.which()? {
                let name = snake_case(field.get_proto().get_name()?.to_str()?);
                obj.insert(name, value(s.get(field)?)?);
            }
            Value::Object(obj)
        }
    })
}

/// A struct's fields as a JSON object.
pub fn object<'a>(v: impl Into<dynamic_value::Reader<'a>>) -> capnp::Result<Map<String, Value>> {
    match value(v.into())? {
        Value::Object(m) => Ok(m),
        _ => Err(capnp::Error::failed("expected a struct".into())),
    }
}

/// The document with a newline, as the listings print it.
pub fn document(v: &Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use capnet_schema::net_capnp::bond_status;

    #[test]
    fn names_follow_the_tables() {
        assert_eq!(snake_case("rxBadChecksum"), "rx_bad_checksum");
        assert_eq!(snake_case("name"), "name");
    }

    #[test]
    fn a_struct_reads_field_for_field() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b = msg.init_root::<bond_status::Builder>();
        b.set_name("bond0");
        b.set_mode(capnet_schema::net_capnp::BondMode::ActiveBackup);
        b.set_failovers(3);
        let mut legs = b.reborrow().init_legs(2);
        legs.set(0, "p0");
        legs.set(1, "p1");
        let v = Value::Object(object(b.into_reader()).unwrap());
        assert_eq!(v["name"], "bond0");
        assert_eq!(v["mode"], "active-backup");
        assert_eq!(v["failovers"], 3);
        assert_eq!(v["tx_no_leg"], 0);
        assert_eq!(v["legs"], serde_json::json!(["p0", "p1"]));
    }

    #[test]
    fn sa_addresses_read_as_text() {
        let mut msg = capnp::message::Builder::new_default();
        let mut f = msg.init_root::<capnet_schema::offload_capnp::offload_flow::Builder>();
        let mut sa = f.reborrow().init_esp();
        sa.set_local(&[10, 0, 0, 1]);
        sa.set_remote(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        sa.set_spi(7);
        let v = Value::Object(object(f.into_reader()).unwrap());
        assert_eq!(v["esp"]["local"], "10.0.0.1", "{v}");
        assert_eq!(v["esp"]["remote"], "fd00::2", "{v}");
    }

    #[test]
    fn endpoints_read_as_text() {
        let mut msg = capnp::message::Builder::new_default();
        let mut a = msg.init_root::<socket_addr::Builder>();
        capnet_schema::addr::write_socket_addr(a.reborrow(), "10.0.0.1:443".parse().unwrap());
        assert_eq!(value(a.into_reader().into()).unwrap(), "10.0.0.1:443");
    }
}
