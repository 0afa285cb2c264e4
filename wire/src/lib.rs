//! The formats capnet's processes share, each with one owner, so that a
//! frame or a header is judged the same way on both sides of a ring. Pure
//! functions over smoltcp's typed `wire` views and plain `Repr`-style
//! structs; builds for Redox.
//!
//! - `csum`: checksum verification (what a NIC's RX offload does, and what
//!   netsrv does in software for frames no driver verified) and filling.
//! - `tcp`: where a frame's TCP payload is and whose it is; [`tcp::Flow`],
//!   a TCP connection as one host sees it; [`tcp::SeqNumber`], a sequence
//!   number whose arithmetic wraps, and [`tcp::StreamBase`], the one
//!   conversion between sequence numbers and 64-bit stream offsets.
//! - `ip`: where an IPv4 or IPv6 packet's upper layer is in a frame.
//! - `ipv6`: the walk over IPv6 extension headers.
//! - `esp`: the ESP header (SPI, sequence number) that names an SA.
//! - `flow`: the flow key a bond's layer3+4 hash covers.
//! - `tls`: the TLS record format and per-record AEAD inputs (nonce, AAD)
//!   that tlsd's software engine and the NIC's TLS engine share.
//! - `chunk`: the marked receive chunk's header, which netsrv writes into a
//!   client's receive ring and libclient reads.
//! - `gso`: TCP segmentation offload, merging segments and cutting them.
//! - `vnet`: the virtio-net header a Linux TAP puts before each frame
//!   (checksum and segmentation offload with Linux).
//! - `mac`: a port's MAC address as text (configuration, nicdrv's command
//!   line, the CLI).

pub mod chunk;
pub mod csum;
pub mod esp;
pub mod flow;
pub mod gso;
pub mod ip;
pub mod ipv6;
pub mod mac;
mod seq;
pub mod tcp;
pub mod tls;
pub mod vnet;
