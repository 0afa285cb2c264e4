"""Sends frames with hostile virtio-net headers out of a TAP device's Linux
side, as a local root process can: an AF_PACKET socket with PACKET_VNET_HDR
hands the kernel a header with each frame, and the TAP passes the frame to
its reader (nicdrv) with a header the kernel derives from it. (A merged
"TCP" frame that is UDP is not among them: Linux cuts that one into IP
fragments itself, which reach nicdrv as good frames.)

usage: vnet_inject.py IFACE DST_MAC SRC_IP DST_IP INDEX
Sends frame INDEX (0 to 2); prints 1 if the kernel took it, 0 if not.
"""

import socket
import struct
import sys

SOL_PACKET = 263
PACKET_VNET_HDR = 15
NEEDS_CSUM = 1
GSO_TCPV4 = 1


def ipv4(src, dst, total):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", hdr))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]


def tcp(sport, dport, seq):
    # ACK, data offset 5, window 65535; the checksum field is the
    # sender's to leave partial.
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x10, 65535, 0, 0)


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def main():
    iface, dst_mac, src_ip, dst_ip, index = sys.argv[1:6]
    src_mac = open(f"/sys/class/net/{iface}/address").read().strip()
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    payload = bytes(3000)
    l4 = 14 + 20
    frames = [
        # A merged frame whose IP length says 40 bytes: not the frame.
        vnet(NEEDS_CSUM, GSO_TCPV4, l4 + 20, 1000, l4, 16)
        + eth + ipv4(src_ip, dst_ip, 40) + tcp(40000, 9, 1) + payload,
        # A merged frame cut into 8-byte segments: 375 of them.
        vnet(NEEDS_CSUM, GSO_TCPV4, l4 + 20, 8, l4, 16)
        + eth + ipv4(src_ip, dst_ip, 20 + 20 + len(payload)) + tcp(40000, 9, 1) + payload,
        # A merged frame whose segments would not fit the MTU.
        vnet(NEEDS_CSUM, GSO_TCPV4, l4 + 20, 2000, l4, 16)
        + eth + ipv4(src_ip, dst_ip, 20 + 20 + len(payload)) + tcp(40000, 9, 1) + payload,
    ]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((iface, 0))
    try:
        s.send(frames[int(index)])
        print(1)
    except OSError as e:
        print(f"refused by the kernel: {e}", file=sys.stderr)
        print(0)


if __name__ == "__main__":
    main()
