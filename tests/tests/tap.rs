//! capnet on a TAP device with the Linux kernel's own stack as the peer,
//! inside a network namespace the test makes. Needs root.

use capnet::host::Host;
use capnet_tests::tap_rig::{sh, sha256_file, Namespace};
use capnet_tests::{
    cli_ok, pattern, receive_all, require_root, send_pattern, status_counter, Scratch,
};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::Shutdown;

const OUR_MAC: &str = "02:00:00:00:aa:01";

#[test]
fn linux_peer_over_tap() {
    if !require_root("linux_peer_over_tap") {
        return;
    }
    let scratch = Scratch::new("tap");
    let ns = Namespace::new("t");
    let run = scratch.0.join("host");
    let host = ns.start_host(&run, OUR_MAC, "pcap = \"tap0.pcap\"\n");
    let net = host.net().unwrap();

    // 1. The kernel's ping is answered.
    eprintln!("tap test: The kernel's ping is answered.");
    let out = ns.exec("ping -c 3 -i 0.2 -W 2 10.77.0.2").output().unwrap();
    assert!(
        out.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // 2. curl in the namespace fetches a page from a libclient HTTP server.
    eprintln!("tap test: curl in the namespace fetches a page from a libclient HTTP server.");
    let body: Vec<u8> = {
        let mut b = vec![0u8; 1 << 20];
        pattern(3, 0, &mut b);
        b
    };
    let listener = net.tcp_listen("0.0.0.0:8080".parse().unwrap(), 8).unwrap();
    let served = body.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&buf[..n]);
        }
        assert!(req.starts_with(b"GET /page "));
        write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
            served.len()
        )
        .unwrap();
        s.write_all(&served).unwrap();
    });
    let fetched = scratch.0.join("fetched");
    let out = ns
        .exec(&format!(
            "curl -sS --max-time 30 -o {} http://10.77.0.2:8080/page",
            fetched.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.join().unwrap();
    assert_eq!(std::fs::read(&fetched).unwrap(), body, "curl got the page");

    // 3. A libclient client fetches a file from python's http.server.
    eprintln!("tap test: A libclient client fetches a file from python's http.server.");
    let www = scratch.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let mut file = vec![0u8; 4 << 20];
    pattern(4, 0, &mut file);
    std::fs::write(www.join("blob"), &file).unwrap();
    let _http = ns.spawn(&format!(
        "python3 -m http.server 8000 --bind 10.77.0.1 --directory {}",
        www.display()
    ));
    ns.wait_for_port(8000);
    let mut s = net
        .tcp_connect("10.77.0.1:8000".parse().unwrap(), None)
        .unwrap();
    s.write_all(b"GET /blob HTTP/1.0\r\nHost: 10.77.0.1\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        response.starts_with(b"HTTP/1.0 200"),
        "{:?}",
        String::from_utf8_lossy(&response[..split])
    );
    assert!(
        response[split..] == file[..],
        "file from http.server is byte-exact"
    );

    // 4. 64 MiB each way against socat, byte-exact; with segmentation
    //    offload Linux cut our merged frames and handed up its own.
    eprintln!("tap test: 64 MiB each way against socat, byte-exact.");
    bulk_both_ways(&ns, &net, &scratch, 64 << 20);
    let link = cli_ok(&host, &["link", "tap0"]);
    assert!(link.contains("segmentation on"), "{link}");
    assert!(status_counter(&link, "cut-by-device") > 100, "{link}");
    assert!(status_counter(&link, "merged-by-device") > 100, "{link}");
    assert_eq!(status_counter(&link, "segment-errors"), 0, "{link}");
    drop(net);

    // 5. tshark finds no malformed frame, no bad checksum and no frame over
    //    the MTU in what we sent (merged frames are captured as their
    //    segments).
    eprintln!("tap test: tshark finds no malformed frame and no bad checksum in what we sent.");
    host.stop().unwrap();
    let pcap = run.join("tap0.pcap");
    // One pass, without TCP stream analysis: a 64 MiB capture is big.
    let fields = sh(&format!(
        "tshark -r {} -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE \
         -o tcp.analyze_sequence_numbers:FALSE -o tcp.desegment_tcp_streams:FALSE \
         -T fields -E separator=@ -e eth.src -e _ws.malformed -e _ws.expert.severity \
         -e ip.checksum.status -e tcp.checksum.status -e udp.checksum.status -e icmp.checksum.status -e frame.len",
        pcap.display()
    ));
    let ours: Vec<&str> = fields.lines().filter(|l| l.starts_with(OUR_MAC)).collect();
    assert!(
        ours.len() > 10_000,
        "capture has our frames ({})",
        ours.len()
    );
    // Checksum status 0 is "bad"; severity is a number, error is 8388608.
    let bad: Vec<&&str> = ours
        .iter()
        .filter(|l| {
            let f: Vec<&str> = l.split('@').collect();
            !f[1].is_empty()
                || f[2].split(',').any(|s| s == "8388608")
                || f[3..7].contains(&"0")
                || f[7].parse::<usize>().map_or(true, |len| len > 1514)
        })
        .collect();
    assert!(
        bad.is_empty(),
        "malformed, badly checksummed or oversized frames from capnet: {:?}",
        &bad[..bad.len().min(5)]
    );
}

/// Without segmentation offload the TAP carries plain frames (no
/// virtio-net headers), and the same bulk is byte-exact, also on a
/// persistent tap a driver with segmentation offload used just before
/// (the tap keeps the offloads it was last given: the next driver must
/// clear them, or Linux hands it partial checksums and merged frames it
/// cannot read).
#[test]
fn linux_peer_over_tap_without_segmentation() {
    if !require_root("linux_peer_over_tap_without_segmentation") {
        return;
    }
    let scratch = Scratch::new("tap-noseg");
    let ns = Namespace::new("ts");
    for (extra, on) in [("", true), ("segmentation = false\n", false)] {
        let run = scratch.0.join(if on { "on" } else { "off" });
        let host = ns.start_host(&run, OUR_MAC, extra);
        let net = host.net().unwrap();
        bulk_both_ways(&ns, &net, &scratch, 16 << 20);
        let link = cli_ok(&host, &["link", "tap0"]);
        if on {
            assert!(status_counter(&link, "merged-by-device") > 10, "{link}");
        } else {
            assert!(link.contains("segmentation off"), "{link}");
            assert!(!link.contains("segmentation:"), "nothing cut: {link}");
            assert_eq!(status_counter(&link, "malformed"), 0, "{link}");
        }
        drop(net);
        host.stop().unwrap();
    }
}

/// Linux's side of the TAP is a peer too: a local root process can hand the
/// kernel frames with virtio-net headers of its making (an AF_PACKET socket
/// with PACKET_VNET_HDR), which reach nicdrv as merged frames that do not
/// hold up. Each is counted as malformed, none reaches netsrv, and the
/// port goes on carrying a transfer byte-exact.
#[test]
fn hostile_merged_frames_from_linux_are_counted() {
    if !require_root("hostile_merged_frames_from_linux_are_counted") {
        return;
    }
    let scratch = Scratch::new("tap-vnet-hostile");
    let ns = Namespace::new("tv");
    let host = ns.start_host(&scratch.0.join("host"), OUR_MAC, "");
    let net = host.net().unwrap();
    // Linux learns our MAC (the frames are addressed to it anyway).
    let out = ns.exec("ping -c 1 -W 2 10.77.0.2").output().unwrap();
    assert!(out.status.success());
    let malformed = |h: &Host| status_counter(&cli_ok(h, &["link", "tap0"]), "malformed");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/vnet_inject.py");
    // A merged frame whose IP length is not the frame's, one cut into
    // 8-byte segments, one whose segments would not fit the MTU.
    for frame in 0..3 {
        let before = malformed(&host);
        let sent = ns.sh(&format!(
            "python3 {} ctap0 {OUR_MAC} 10.77.0.1 10.77.0.2 {frame}",
            script.display()
        ));
        assert_eq!(sent.trim(), "1", "frame {frame}: the kernel took it");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while malformed(&host) == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(malformed(&host), before + 1, "frame {frame}: counted once");
    }
    bulk_both_ways(&ns, &net, &scratch, 4 << 20);
    drop(net);
    host.stop().unwrap();
}

/// `bytes` to a socat sink in the namespace and `bytes` from a socat
/// source there, each checked by digest.
fn bulk_both_ways(ns: &Namespace, net: &libclient::Net, scratch: &Scratch, bytes: u64) {
    let sink = scratch.0.join("sink");
    let mut socat_in = ns.spawn(&format!(
        "socat -u TCP-LISTEN:40001,reuseaddr OPEN:{},creat,trunc",
        sink.display()
    ));
    ns.wait_for_port(40001);
    let s = net
        .tcp_connect("10.77.0.1:40001".parse().unwrap(), None)
        .unwrap();
    let sent = send_pattern(&mut &s, 5, bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(socat_in.0.wait().unwrap().success());
    drop(s);
    assert_eq!(sha256_file(&sink), sent, "{bytes} bytes to Linux");

    let source = scratch.0.join("source");
    let mut data = vec![0u8; bytes as usize];
    pattern(6, 0, &mut data);
    std::fs::write(&source, &data).unwrap();
    let expected: [u8; 32] = Sha256::digest(&data).into();
    drop(data);
    let _socat_out = ns.spawn(&format!(
        "socat -u OPEN:{} TCP-LISTEN:40002,reuseaddr",
        source.display()
    ));
    ns.wait_for_port(40002);
    let mut s = net
        .tcp_connect("10.77.0.1:40002".parse().unwrap(), None)
        .unwrap();
    let (n, got) = receive_all(&mut s).unwrap();
    assert_eq!(n, bytes);
    assert_eq!(got, expected, "{bytes} bytes from Linux");
}
