//! Segmentation offload end to end: two hosts on a lossy, reordering sim
//! wire move the same byte streams with segmentation offload on (the
//! default) and off, and a capture of the wire with it on holds only frames
//! within the MTU with right checksums, by tshark's reading.

use capnet_tests::{cli_ok, status_counter, transfer_both_ways, two_hosts, Scratch};

const BYTES: u64 = 16 << 20;

/// `BYTES` each way on one connection under 1% loss and 1% reordering;
/// returns the digests each side received (a->b, b->a), checked against
/// what the other sent.
fn both_ways(extra: &str, scratch: &Scratch) -> ([u8; 32], [u8; 32], String) {
    let (a, b) = two_hosts(scratch, extra);
    for h in [&a, &b] {
        cli_ok(h, &["faults", "sim0", "--loss", "1", "--reorder", "1"]);
    }
    let (na, nb) = (a.net().unwrap(), b.net().unwrap());
    let (ab, ba) = transfer_both_ways(&na, &nb, 5001, BYTES);
    let link = cli_ok(&a, &["link", "sim0"]);
    a.stop().unwrap();
    b.stop().unwrap();
    (ab, ba, link)
}

#[test]
fn on_and_off_give_byte_identical_streams_and_the_wire_holds_only_mtu_frames() {
    let on = Scratch::new("seg-on");
    let (on_ab, on_ba, link) = both_ways("pcap = \"sim0.pcap\"", &on);
    // It really segmented and coalesced.
    assert!(link.contains("segmentation on"), "{link}");
    assert!(status_counter(&link, "cut") > 100, "{link}");
    assert!(
        status_counter(&link, "into") > 20 * status_counter(&link, "cut") / 10,
        "{link}"
    );
    assert!(status_counter(&link, "coalesced") > 100, "{link}");
    assert_eq!(status_counter(&link, "segment-errors"), 0, "{link}");

    let off = Scratch::new("seg-off");
    let (off_ab, off_ba, link) = both_ways("segmentation = false", &off);
    assert!(link.contains("segmentation off"), "{link}");
    assert!(
        !link.contains("segmentation:"),
        "nothing cut or coalesced: {link}"
    );
    assert_eq!((on_ab, on_ba), (off_ab, off_ba), "the same streams");

    // The capture of host a's wire side with segmentation on.
    let pcap = on.0.join("a/sim0.pcap");
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "tcp.analyze_sequence_numbers:FALSE",
            "-o",
            "tcp.desegment_tcp_streams:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=@",
            "-e",
            "frame.len",
            "-e",
            "_ws.malformed",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "tcp.len",
        ])
        .output()
        .expect("tshark (scripts/test.sh installs it: apt-get install tshark)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (mut frames, mut full) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split('@').collect();
        let len: usize = f[0].parse().unwrap();
        assert!(
            len <= 1514,
            "a frame of {len} bytes on a 1500-byte wire: {line}"
        );
        assert!(f[1].is_empty(), "malformed: {line}");
        assert!(f[2] != "0" && f[3] != "0", "bad checksum: {line}");
        if !f[4].is_empty() {
            // Verified, not merely unchecked.
            assert_eq!(
                (f[2], f[3]),
                ("1", "1"),
                "TCP checksums not verified: {line}"
            );
        }
        frames += 1;
        full += usize::from(f[4].parse::<usize>().is_ok_and(|n| n >= 1400));
    }
    assert!(full > 10_000, "{frames} frames, {full} full segments");
}
