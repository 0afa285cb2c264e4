use super::*;
use capnet_tcpip::ip::announcement;
use std::net::{IpAddr, Ipv4Addr};

#[test]
fn frames_hash_like_their_flow() {
    let mut buf = vec![0u8; 128];
    let mac = [2, 0, 0, 0, 0, 1];
    let len = announcement(&mut buf, mac, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    // An ARP frame has no flow: it hashes by MAC addresses.
    assert!(flow_key(&buf[..len]).is_none());
    let _ = frame_hash(&buf[..len], false);
    for junk in 0..64 {
        let j: Vec<u8> = (0..junk).map(|i| (i * 31 + 7) as u8).collect();
        let _ = frame_hash(&j, true);
    }
}
