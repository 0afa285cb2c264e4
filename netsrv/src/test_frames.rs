//! Frames for unit tests: Ethernet and IPv4 around a layer-4 packet the
//! caller emits.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr,
};

/// From 02:00:00:00:00:01 to 02:00:00:00:00:02, `src` to `dst`; `emit_l4`
/// writes the `l4_len` bytes of the IPv4 payload (checksums included).
pub fn ipv4_frame(
    src: Ipv4Address,
    dst: Ipv4Address,
    protocol: IpProtocol,
    l4_len: usize,
    emit_l4: impl FnOnce(&mut [u8], &ChecksumCapabilities),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len: l4_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + l4_len];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    emit_l4(packet.payload_mut(), &caps);
    buf
}
