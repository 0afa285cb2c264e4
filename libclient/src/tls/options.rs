//! What a TLS connection is asked for (versions, suites, ALPN, offload)
//! and what it reports (the agreed parameters, where records are
//! processed, tlsd's counters).

use super::error::{read_addr, tls_err};
use capnet_schema::tls_capnp::{self as wire, tls_info, tls_options, tls_stat};
use std::io;
use std::net::SocketAddr;

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn to_wire(v: Option<TlsVersion>) -> wire::TlsVersion {
        match v {
            None => wire::TlsVersion::Unset,
            Some(TlsVersion::Tls12) => wire::TlsVersion::Tls12,
            Some(TlsVersion::Tls13) => wire::TlsVersion::Tls13,
        }
    }

    fn from_wire(v: Result<wire::TlsVersion, capnp::NotInSchema>) -> io::Result<TlsVersion> {
        match v {
            Ok(wire::TlsVersion::Tls12) => Ok(TlsVersion::Tls12),
            Ok(wire::TlsVersion::Tls13) => Ok(TlsVersion::Tls13),
            Ok(wire::TlsVersion::Unset) => Err(bad_info("no TLS version")),
            Err(capnp::NotInSchema(n)) => Err(bad_info(&format!("unknown TLS version {n}"))),
        }
    }
}

/// Whether tlsd may put a connection's records on the NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OffloadPolicy {
    /// Use the egress port's TLS offload where it offers one.
    #[default]
    Auto,
    /// Always seal and open records in software.
    Off,
}

/// Where one direction's records are sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordMode {
    /// In tlsd, in software.
    Software,
    /// On the NIC (an offload context).
    Device,
}

impl RecordMode {
    fn from_wire(m: Result<wire::RecordMode, capnp::NotInSchema>) -> io::Result<RecordMode> {
        match m {
            Ok(wire::RecordMode::Software) => Ok(RecordMode::Software),
            Ok(wire::RecordMode::Device) => Ok(RecordMode::Device),
            Err(capnp::NotInSchema(n)) => Err(bad_info(&format!("unknown record mode {n}"))),
        }
    }
}

fn bad_info(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("tlsd: {what}"))
}

/// Options for a TLS connection or listener. The default offers no ALPN,
/// allows TLS 1.2 and 1.3 with every suite tlsd has, and lets tlsd offload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// ALPN protocols offered (client) or accepted (server), in order of
    /// preference, e.g. `b"h2".to_vec()`.
    pub alpn: Vec<Vec<u8>>,
    /// `None`: TLS 1.2.
    pub min_version: Option<TlsVersion>,
    /// `None`: TLS 1.3.
    pub max_version: Option<TlsVersion>,
    /// IANA names, e.g. `TLS_AES_256_GCM_SHA384` or
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`; empty: every suite tlsd has.
    pub cipher_suites: Vec<String>,
    pub offload: OffloadPolicy,
}

impl TlsOptions {
    pub(super) fn write(&self, mut b: tls_options::Builder<'_>) {
        let mut alpn = b.reborrow().init_alpn(self.alpn.len() as u32);
        for (i, p) in self.alpn.iter().enumerate() {
            alpn.set(i as u32, capnp::text::Reader::from(&p[..]));
        }
        b.set_min_version(TlsVersion::to_wire(self.min_version));
        b.set_max_version(TlsVersion::to_wire(self.max_version));
        let mut suites = b
            .reborrow()
            .init_cipher_suites(self.cipher_suites.len() as u32);
        for (i, s) in self.cipher_suites.iter().enumerate() {
            suites.set(i as u32, s.as_str());
        }
        b.set_offload(match self.offload {
            OffloadPolicy::Auto => wire::OffloadPolicy::Auto,
            OffloadPolicy::Off => wire::OffloadPolicy::Off,
        });
    }
}

/// What a TLS connection agreed on, and where its records are processed
/// now (tlsd may move them between the NIC and software, e.g. after the
/// egress port changed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsInfo {
    pub version: TlsVersion,
    /// The IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The SNI the client sent, if any.
    pub server_name: Option<String>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Where records this side sends are sealed.
    pub tx: RecordMode,
    /// Where records this side receives are opened.
    pub rx: RecordMode,
}

impl TlsInfo {
    pub(super) fn read(r: tls_info::Reader<'_>) -> io::Result<TlsInfo> {
        let alpn = r.get_alpn().map_err(tls_err)?.as_bytes().to_vec();
        let server_name = r
            .get_server_name()
            .map_err(tls_err)?
            .to_string()
            .map_err(|_| bad_info("server name is not UTF-8"))?;
        Ok(TlsInfo {
            version: TlsVersion::from_wire(r.get_version())?,
            cipher_suite: r
                .get_cipher_suite()
                .map_err(tls_err)?
                .to_string()
                .map_err(|_| bad_info("cipher suite is not UTF-8"))?,
            alpn: (!alpn.is_empty()).then_some(alpn),
            server_name: (!server_name.is_empty()).then_some(server_name),
            local: read_addr(r.get_local().map_err(tls_err)?)?,
            peer: read_addr(r.get_remote().map_err(tls_err)?)?,
            tx: RecordMode::from_wire(r.get_tx())?,
            rx: RecordMode::from_wire(r.get_rx())?,
        })
    }
}

/// `TlsStat` with every counter of the schema's `TlsStat`, read field by
/// field.
macro_rules! tls_stat {
    ($($(#[$doc:meta])* $field:ident: $get:ident,)*) => {
        /// tlsd's counters: those of Linux's `/proc/net/tls_stat`, plus
        /// capnet's own. `curr_*` are connections open now; the rest count
        /// since tlsd started.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct TlsStat {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl TlsStat {
            pub(super) fn read(r: tls_stat::Reader<'_>) -> TlsStat {
                TlsStat { $($field: r.$get(),)* }
            }
        }
    };
}

tls_stat! {
    /// Connections whose sending side is in software.
    curr_tx_sw: get_curr_tx_sw,
    /// Connections whose receiving side is in software.
    curr_rx_sw: get_curr_rx_sw,
    /// Connections whose sending side is on the NIC.
    curr_tx_device: get_curr_tx_device,
    /// Connections whose receiving side is on the NIC.
    curr_rx_device: get_curr_rx_device,
    tx_sw: get_tx_sw,
    rx_sw: get_rx_sw,
    tx_device: get_tx_device,
    rx_device: get_rx_device,
    /// Records that failed to authenticate.
    decrypt_error: get_decrypt_error,
    /// Resync requests from a NIC answered.
    rx_device_resync: get_rx_device_resync,
    /// Records the NIC decrypted in part.
    decrypt_retry: get_decrypt_retry,
    tx_rekey_ok: get_tx_rekey_ok,
    rx_rekey_ok: get_rx_rekey_ok,
    rx_rekey_received: get_rx_rekey_received,
    /// Offload contexts created again after an egress change.
    reoffloads: get_reoffloads,
    handshakes: get_handshakes,
    handshake_failures: get_handshake_failures,
    alerts_sent: get_alerts_sent,
    alerts_received: get_alerts_received,
    records_sealed: get_records_sealed,
    records_opened: get_records_opened,
    /// Plaintext bytes.
    bytes_sealed: get_bytes_sealed,
    /// Plaintext bytes.
    bytes_opened: get_bytes_opened,
    /// NewSessionTicket messages received.
    session_tickets: get_session_tickets,
    /// Connections closed because their handshake passed its deadline.
    handshake_timeouts: get_handshake_timeouts,
    /// Handshakes in progress now.
    curr_handshakes: get_curr_handshakes,
    /// TLS sockets tlsd holds now (connections and listeners).
    curr_sockets: get_curr_sockets,
    /// Sockets and incoming connections refused for a limit.
    limit_refused: get_limit_refused,
    /// Failed accepts tlsd survived (e.g. out of file descriptors).
    accept_errors: get_accept_errors,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_on_the_wire() {
        let options = TlsOptions {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            min_version: Some(TlsVersion::Tls13),
            max_version: None,
            cipher_suites: vec!["TLS_AES_256_GCM_SHA384".into()],
            offload: OffloadPolicy::Off,
        };
        let mut msg = capnp::message::Builder::new_default();
        options.write(msg.init_root());
        let r = msg.get_root_as_reader::<tls_options::Reader>().unwrap();
        let alpn: Vec<&[u8]> = r
            .get_alpn()
            .unwrap()
            .iter()
            .map(|t| t.unwrap().as_bytes())
            .collect();
        assert_eq!(alpn, [&b"h2"[..], b"http/1.1"]);
        assert_eq!(r.get_min_version().unwrap(), wire::TlsVersion::Tls13);
        assert_eq!(r.get_max_version().unwrap(), wire::TlsVersion::Unset);
        let suites = r.get_cipher_suites().unwrap();
        assert_eq!(suites.len(), 1);
        assert_eq!(
            suites.get(0).unwrap().to_str().unwrap(),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(r.get_offload().unwrap(), wire::OffloadPolicy::Off);

        let mut msg = capnp::message::Builder::new_default();
        TlsOptions::default().write(msg.init_root());
        let r = msg.get_root_as_reader::<tls_options::Reader>().unwrap();
        assert_eq!(r.get_alpn().unwrap().len(), 0);
        assert_eq!(r.get_min_version().unwrap(), wire::TlsVersion::Unset);
        assert_eq!(r.get_offload().unwrap(), wire::OffloadPolicy::Auto);
    }

    fn info_message(
        fill: impl FnOnce(tls_info::Builder<'_>),
    ) -> capnp::message::Builder<capnp::message::HeapAllocator> {
        let mut msg = capnp::message::Builder::new_default();
        fill(msg.init_root());
        msg
    }

    fn full_info(mut b: tls_info::Builder<'_>) {
        b.set_version(wire::TlsVersion::Tls13);
        b.set_cipher_suite("TLS13_AES_128_GCM_SHA256");
        b.set_alpn("h2");
        b.set_server_name("example.test");
        crate::udp::write_addr(b.reborrow().init_local(), "10.0.0.1:40000".parse().unwrap());
        crate::udp::write_addr(b.reborrow().init_remote(), "10.0.0.2:443".parse().unwrap());
        b.set_tx(wire::RecordMode::Device);
        b.set_rx(wire::RecordMode::Software);
    }

    #[test]
    fn info_read() {
        let msg = info_message(full_info);
        let info = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(
            info,
            TlsInfo {
                version: TlsVersion::Tls13,
                cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
                alpn: Some(b"h2".to_vec()),
                server_name: Some("example.test".into()),
                local: "10.0.0.1:40000".parse().unwrap(),
                peer: "10.0.0.2:443".parse().unwrap(),
                tx: RecordMode::Device,
                rx: RecordMode::Software,
            }
        );
    }

    #[test]
    fn info_without_alpn_or_sni_and_with_an_unset_version() {
        let msg = info_message(|mut b| {
            full_info(b.reborrow());
            b.set_alpn("");
            b.set_server_name("");
        });
        let info = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!((info.alpn, info.server_name), (None, None));

        let msg = info_message(|mut b| {
            full_info(b.reborrow());
            b.set_version(wire::TlsVersion::Unset);
        });
        let e = TlsInfo::read(msg.get_root_as_reader().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn stat_reads_every_counter() {
        let mut msg = capnp::message::Builder::new_default();
        let mut b = msg.init_root::<tls_stat::Builder>();
        // Every field a different value: a counter read from the wrong
        // field shows.
        b.set_curr_tx_sw(1);
        b.set_curr_rx_sw(2);
        b.set_curr_tx_device(3);
        b.set_curr_rx_device(4);
        b.set_tx_sw(5);
        b.set_rx_sw(6);
        b.set_tx_device(7);
        b.set_rx_device(8);
        b.set_decrypt_error(9);
        b.set_rx_device_resync(10);
        b.set_decrypt_retry(11);
        b.set_tx_rekey_ok(12);
        b.set_rx_rekey_ok(13);
        b.set_rx_rekey_received(14);
        b.set_reoffloads(15);
        b.set_handshakes(16);
        b.set_handshake_failures(17);
        b.set_alerts_sent(18);
        b.set_alerts_received(19);
        b.set_records_sealed(20);
        b.set_records_opened(21);
        b.set_bytes_sealed(22);
        b.set_bytes_opened(23);
        b.set_session_tickets(24);
        b.set_handshake_timeouts(25);
        b.set_curr_handshakes(26);
        b.set_curr_sockets(27);
        b.set_limit_refused(28);
        b.set_accept_errors(29);
        let stat = TlsStat::read(msg.get_root_as_reader().unwrap());
        assert_eq!(
            stat,
            TlsStat {
                curr_tx_sw: 1,
                curr_rx_sw: 2,
                curr_tx_device: 3,
                curr_rx_device: 4,
                tx_sw: 5,
                rx_sw: 6,
                tx_device: 7,
                rx_device: 8,
                decrypt_error: 9,
                rx_device_resync: 10,
                decrypt_retry: 11,
                tx_rekey_ok: 12,
                rx_rekey_ok: 13,
                rx_rekey_received: 14,
                reoffloads: 15,
                handshakes: 16,
                handshake_failures: 17,
                alerts_sent: 18,
                alerts_received: 19,
                records_sealed: 20,
                records_opened: 21,
                bytes_sealed: 22,
                bytes_opened: 23,
                session_tickets: 24,
                handshake_timeouts: 25,
                curr_handshakes: 26,
                curr_sockets: 27,
                limit_refused: 28,
                accept_errors: 29,
            }
        );
    }
}
