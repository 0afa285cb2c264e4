//! A port's MAC address as text: what the configuration, nicdrv's command
//! line and the CLI write and read.

/// Parses `02:00:00:00:00:01` (also with `-`); refuses group addresses
/// and the zero address, which cannot name a port. The error says what is
/// wrong; the caller says where (`--mac "zz": ...`, `port p0: mac "zz": ...`).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err("expected six hex octets like 02:00:00:00:00:01".into());
    }
    let mut mac = [0u8; 6];
    for (o, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(format!("bad octet {p:?}"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("bad octet {p:?}"))?;
    }
    if mac[0] & 1 != 0 {
        return Err("a multicast address cannot name a port".into());
    }
    if mac == [0; 6] {
        return Err("the zero address cannot name a port".into());
    }
    Ok(mac)
}

/// `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_group_addresses_are_refused() {
        let mac = parse_mac("02-00-00-0a-0B-01").unwrap();
        assert_eq!(format_mac(&mac), "02:00:00:0a:0b:01");
        for (bad, why) in [
            ("zz", "six hex octets"),
            ("02:00:00:00:00:zz", "bad octet \"zz\""),
            ("02:00:00:00:00:001", "bad octet"),
            ("01:00:5e:00:00:01", "multicast"),
            ("00:00:00:00:00:00", "zero address"),
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
