//! TLS interoperability, seen on the wire: capnet's tlsd on a TAP port
//! talks to openssl s_server and Python's `ssl` in a network namespace
//! while dumpcap captures; tshark decrypts the capture with tlsd's and
//! Python's key logs, and no TCP payload holds the plaintext. Needs root.
//!
//! With `offload` the TAP port gets `tls_offload = true` and capnet's side
//! of each connection must seal on the NIC (`TlsInfo::tx == Device`).

mod linux_tls;

use capnet_tests::{require_root, Scratch};
use libclient::{TlsOptions, TlsVersion};
use linux_tls::transfer::{capnet_client_to_s_server, python_to_capnet_server, Payload};
use linux_tls::{check_info, hex, read_lossy, sh, tap_host, KillOnDrop, Namespace};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The capture test's data is lines that start with this.
const MARKER: &str = "CAPNET-TLS-INTEROP-PLAINTEXT-MARKER";

/// `len` bytes of lines "MARKER/tag 00000000\n", "MARKER/tag 00000001\n", ...
fn marked(tag: &str, len: usize) -> Payload {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("{MARKER}/{tag} {i:08}\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    Payload::Bytes(Arc::new(v))
}

/// dumpcap on the namespace's ctap0, writing `pcap`.
struct Capture {
    child: KillOnDrop,
    /// Taken by `stop`.
    stderr: Option<JoinHandle<String>>,
}

impl Capture {
    fn start(ns: &Namespace, pcap: &Path) -> Capture {
        for tool in ["dumpcap", "tshark"] {
            let found = Command::new("bash")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "{tool} is missing: install tshark (scripts/test.sh does; \
                 `apt-get install tshark`)"
            );
        }
        let mut child = KillOnDrop(
            ns.exec(&format!(
                "exec dumpcap -i ctap0 -B 64 -w {} -q",
                pcap.display()
            ))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
        // dumpcap names its file once the interface is open.
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = BufReader::new(child.0.stderr.take().unwrap());
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in stderr.lines() {
                let line = line.unwrap_or_default();
                if line.starts_with("File:") {
                    let _ = ready_tx.send(());
                }
                all += &line;
                all.push('\n');
            }
            all
        });
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.0.kill();
            panic!("dumpcap did not start:\n{}", stderr.join().unwrap());
        }
        Capture {
            child,
            stderr: Some(stderr),
        }
    }

    /// Stops dumpcap (SIGINT: it writes out what it has); its report.
    fn stop(mut self) -> String {
        let status = self.interrupt();
        let report = self.stderr.take().unwrap().join().unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "dumpcap: {status:?}\n{report}"
        );
        report
    }

    /// None: it did not stop.
    fn interrupt(&mut self) -> Option<ExitStatus> {
        // Packets wait in the capture ring for up to dumpcap's read timeout.
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: kill(2) on our own unreaped child (dumpcap, exec'd).
        unsafe { libc::kill(self.child.0.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Capture {
    /// A failed test leaves a whole capture behind it too.
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.interrupt();
        }
    }
}

/// The decrypted application data in `pcap`, per direction (source port,
/// destination port), in stream order.
fn decrypted(pcap: &Path, keylog: &Path, ports: &[u16]) -> HashMap<(u16, u16), Vec<u8>> {
    let decode: String = ports
        .iter()
        .map(|p| format!(" -d tcp.port=={p},tls"))
        .collect();
    let out = sh(&format!(
        "tshark -r {} -o tls.keylog_file:{}{decode} -Y data -T fields \
         -e tcp.srcport -e tcp.dstport -e data.data",
        pcap.display(),
        keylog.display()
    ));
    let mut flows: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 3, "tshark line {line:?}");
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let flow = flows.entry(key).or_default();
        // Several records in one frame: their data comma-separated.
        for h in f[2].split(',') {
            assert!(h.len() % 2 == 0, "odd hex from tshark: {h:?}");
            flow.extend((0..h.len()).step_by(2).map(|i| {
                u8::from_str_radix(&h[i..i + 2], 16)
                    .unwrap_or_else(|_| panic!("not hex from tshark: {h:?}"))
            }));
        }
    }
    flows
}

/// The plaintext of one direction of the connection to or from `port`,
/// as tshark decrypted it.
fn flow(flows: &HashMap<(u16, u16), Vec<u8>>, port: u16, to_port: bool) -> &[u8] {
    let mut it = flows
        .iter()
        .filter(|((src, dst), _)| if to_port { *dst == port } else { *src == port });
    let found = it.next().map(|(_, v)| &v[..]).unwrap_or_else(|| {
        panic!(
            "tshark decrypted nothing {} port {port}; flows {:?}",
            if to_port { "to" } else { "from" },
            flows.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        )
    });
    assert!(it.next().is_none(), "one connection per port");
    found
}

/// tshark's plaintext of one direction is what was sent.
fn assert_plaintext(got: &[u8], want: &Payload, what: &str, dumpcap: &str) {
    let want = want.to_vec();
    if got != &want[..] {
        let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: tshark decrypted {} bytes, {} were sent; first difference at {at}\n\
             dumpcap: {dumpcap}",
            got.len(),
            want.len()
        );
    }
}

fn tshark_case(offload: bool) {
    if !require_root("tshark_decrypts_and_sees_no_plaintext") {
        return;
    }
    const SMALL: usize = 3 << 20;
    let (p13, p12, ppy) = if offload {
        (4481u16, 4482u16, 4483u16)
    } else {
        (4491u16, 4492u16, 4493u16)
    };
    let tag = if offload { "capo" } else { "cap" };
    let scratch = Scratch::new(&format!("tls-interop-tshark-{tag}"));
    let ns = Namespace::new(tag);
    let tlsd_keylog = scratch.0.join("tlsd-keylog.txt");
    let py_keylog = scratch.0.join("python-keylog.txt");
    let host = tap_host(&scratch, &ns, offload, Some(&tlsd_keylog));
    let pcap = scratch.0.join("f.pcap");
    let capture = Capture::start(&ns, &pcap);

    // capnet's client to s_server, TLS 1.3 and 1.2; Python's client to
    // capnet's server. Each direction of each carries its own marked lines.
    let data = |tag: &str| marked(tag, SMALL);
    let (c13, s13) = (
        data("capnet-to-s_server/tls13"),
        data("s_server-to-capnet/tls13"),
    );
    let (c12, s12) = (
        data("capnet-to-s_server/tls12"),
        data("s_server-to-capnet/tls12"),
    );
    let (cpy, pyc) = (data("capnet-to-python"), data("python-to-capnet"));
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        p13,
        "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256",
        &TlsOptions::default(),
        &c13,
        &s13,
    );
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_128_GCM_SHA256",
        offload,
    );
    let info = capnet_client_to_s_server(
        &scratch,
        &ns,
        &host,
        p12,
        "-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
        &TlsOptions::default(),
        &c12,
        &s12,
    );
    check_info(
        &info,
        TlsVersion::Tls12,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        offload,
    );
    let info = python_to_capnet_server(&scratch, &ns, &host, ppy, &py_keylog, &cpy, &pyc);
    check_info(
        &info,
        TlsVersion::Tls13,
        "TLS13_AES_256_GCM_SHA384",
        offload,
    );
    let report = capture.stop();

    // tlsd's key log opens all three connections (both directions) ...
    let kl = read_lossy(&tlsd_keylog);
    assert!(
        kl.contains("CLIENT_TRAFFIC_SECRET_0") && kl.contains("CLIENT_RANDOM"),
        "tlsd's key log has TLS 1.3 and 1.2 secrets: {kl:?}"
    );
    // (Frames dumpcap lost would show here: its report says how many.)
    let flows = decrypted(&pcap, &tlsd_keylog, &[p13, p12, ppy]);
    let cases = [
        (p13, true, &c13, "capnet -> s_server, TLS 1.3"),
        (p13, false, &s13, "s_server -> capnet, TLS 1.3"),
        (p12, true, &c12, "capnet -> s_server, TLS 1.2"),
        (p12, false, &s12, "s_server -> capnet, TLS 1.2"),
        // tlsd was the server here: its key log has these secrets too.
        (ppy, true, &pyc, "python -> capnet"),
        (ppy, false, &cpy, "capnet -> python"),
    ];
    for (port, to_port, sent, what) in cases {
        assert_plaintext(flow(&flows, port, to_port), sent, what, &report);
    }
    // ... and Python's, on its own, its connection to capnet's server.
    let flows = decrypted(&pcap, &py_keylog, &[p13, p12, ppy]);
    for (port, to_port, sent, what) in &cases[4..] {
        assert_plaintext(flow(&flows, *port, *to_port), sent, what, &report);
    }
    assert!(
        !flows
            .keys()
            .any(|(s, d)| [p13, p12].contains(s) || [p13, p12].contains(d)),
        "python's key log opened another connection"
    );

    // No TCP payload on the wire holds the marker: no cleartext.
    let raw = sh(&format!(
        "tshark -r {} -o tcp.desegment_tcp_streams:FALSE -T fields -e tcp.payload",
        pcap.display()
    ));
    let payload_bytes: usize = raw.lines().map(|l| l.len() / 2).sum();
    assert!(
        payload_bytes >= 6 * SMALL,
        "the capture holds {payload_bytes} TCP payload bytes, {} were sent",
        6 * SMALL
    );
    let marker = hex(MARKER.as_bytes());
    // The same search finds the marker where tshark shows plaintext.
    let shown = sh(&format!(
        "tshark -r {} -o tls.keylog_file:{} -Y data -T fields -e data.data",
        pcap.display(),
        tlsd_keylog.display()
    ));
    assert!(
        shown.lines().filter(|l| l.contains(&marker)).count() > 100,
        "the marker in tshark's hex of the plaintext"
    );
    let leaks = raw.lines().filter(|l| l.contains(&marker)).count();
    assert_eq!(
        leaks, 0,
        "TCP payloads with the plaintext marker on the wire"
    );
}

#[test]
fn tshark_decrypts_with_key_logs_and_no_plaintext_on_the_wire() {
    tshark_case(false);
}

// --- the same with the TAP port's simulated NIC sealing and opening ------

#[test]
fn tshark_decrypts_with_key_logs_and_no_plaintext_on_the_wire_offload() {
    tshark_case(true);
}
