//! TLS interoperability: capnet's tlsd on a TAP port talks to Linux-side
//! TLS stacks in a network namespace the test makes (openssl s_server and
//! s_client, Python's `ssl`), 64 MiB each way, byte-exact. Needs root.
//! The capture that tshark decrypts is `tls_interop_capture.rs`.
//!
//! Every case takes `offload`: with it the TAP port gets `tls_offload =
//! true` and capnet's side of each connection must seal on the NIC
//! (`TlsInfo::tx == Device`).

mod linux_tls;

use capnet_tests::{require_root, Scratch};
use libclient::{TlsOptions, TlsVersion};
use linux_tls::transfer::{
    capnet_client_to_s_server, python_to_capnet_server, s_client_to_capnet_server, Payload,
};
use linux_tls::{addr, check_info, tap_host, Namespace, BULK, LINUX_IP};

// --- 1. capnet client, openssl s_server --------------------------------

fn s_server_case(
    tag: &str,
    port: u16,
    offload: bool,
    args: &str,
    version: TlsVersion,
    suite: &str,
) {
    if !require_root(tag) {
        return;
    }
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        port,
        args,
        &TlsOptions::default(),
        &Payload::Pattern(1, BULK),
        &Payload::Pattern(2, BULK),
    );
    check_info(&info, version, suite, offload);
    assert_eq!(info.peer, addr(LINUX_IP, port));
    let stat = host.tls().unwrap().stat().unwrap();
    assert_eq!(stat.decrypt_error, 0, "{stat:?}");
    assert!(
        stat.bytes_sealed >= BULK && stat.bytes_opened >= BULK,
        "{stat:?}"
    );
}

#[test]
fn s_server_tls12_ecdhe_rsa_aes128_gcm() {
    s_server_case(
        "ss12",
        4431,
        false,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes128_gcm() {
    s_server_case(
        "ss13a",
        4432,
        false,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes256_gcm() {
    s_server_case(
        "ss13b",
        4433,
        false,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

// --- 2. openssl s_client, capnet server --------------------------------

fn s_client_case(
    tag: &str,
    port: u16,
    offload: bool,
    args: &str,
    version: TlsVersion,
    suite: &str,
) {
    if !require_root(tag) {
        return;
    }
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let info = s_client_to_capnet_server(
        &scratch,
        &ns,
        &host,
        port,
        args,
        &TlsOptions::default(),
        &Payload::Pattern(3, BULK),
        &Payload::Pattern(4, BULK),
    );
    check_info(&info, version, suite, offload);
    let stat = host.tls().unwrap().stat().unwrap();
    assert_eq!(stat.decrypt_error, 0, "{stat:?}");
}

#[test]
fn s_client_tls12_ecdhe_rsa_aes128_gcm() {
    s_client_case(
        "sc12",
        4441,
        false,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_client_tls13_aes256_gcm() {
    s_client_case(
        "sc13",
        4442,
        false,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

// --- 3. Python ssl client, capnet server -------------------------------

fn python_case(offload: bool) {
    if !require_root("python_ssl_client") {
        return;
    }
    let tag = if offload { "pyo" } else { "py" };
    let scratch = Scratch::new(&format!("tls-interop-{tag}"));
    let ns = Namespace::new(tag);
    let host = tap_host(&scratch, &ns, offload, None);
    let keylog = scratch.0.join("python-keylog.txt");
    let info = python_to_capnet_server(
        &scratch,
        &ns,
        &host,
        4451,
        &keylog,
        &Payload::Pattern(5, BULK),
        &Payload::Pattern(6, BULK),
    );
    // Python offers TLS 1.3 and its suites in OpenSSL's order.
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
        offload,
    );
}

#[test]
fn python_ssl_client() {
    python_case(false);
}

// --- the same with the TAP port's simulated NIC sealing and opening ------

#[test]
fn s_server_tls12_ecdhe_rsa_aes128_gcm_offload() {
    s_server_case(
        "ss12o",
        4461,
        true,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes128_gcm_offload() {
    s_server_case(
        "ss13ao",
        4462,
        true,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_server_tls13_aes256_gcm_offload() {
    s_server_case(
        "ss13bo",
        4463,
        true,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

#[test]
fn s_client_tls12_ecdhe_rsa_aes128_gcm_offload() {
    s_client_case(
        "sc12o",
        4471,
        true,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
}

#[test]
fn s_client_tls13_aes256_gcm_offload() {
    s_client_case(
        "sc13o",
        4472,
        true,
        "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384",
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
    );
}

#[test]
fn python_ssl_client_offload() {
    python_case(true);
}
