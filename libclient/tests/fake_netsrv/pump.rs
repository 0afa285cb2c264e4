//! netsrv's receive path, played by a thread: what the test feeds goes into
//! the receive ring as plain bytes or, from the RX switch on, as marked
//! chunks; what the application writes is read from the send ring.

use super::Shared;
use capnet_ring::{Doorbell, ServerEnd};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// netsrv's receive path for one connection.
pub struct Pump {
    pub end: ServerEnd,
    /// The doorbell the client rings.
    pub wake_me: Doorbell,
    /// Bytes written into the receive ring (headers included).
    pub written: u64,
    /// Marked chunks from `chunks_from` on.
    pub chunks_from: Option<u64>,
    /// What the peer "sent": runs of bytes with the NIC's mark, or raw
    /// ring bytes (to write malformed chunks).
    pub pending: VecDeque<Feed>,
    /// Headers go into the ring a byte at a time, with pauses.
    pub split_headers: bool,
    /// Bytes read from the send ring.
    pub bytes_up: u64,
    pub up_closed: bool,
}

pub enum Feed {
    Data(Vec<u8>, bool),
    Raw(Vec<u8>),
    End,
}

impl Pump {
    /// One step: moves what fits. True if anything moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let mut buf = [0u8; 1024];
        loop {
            let n = self.end.up.read(&mut buf).unwrap();
            if n == 0 {
                if self.end.up.eof() {
                    self.up_closed = true;
                }
                break;
            }
            self.bytes_up += n as u64;
            moved = true;
        }
        if moved && self.end.up.signal_wanted() {
            self.end.wake_peer.ring();
        }
        let mut delivered = false;
        while let Some(feed) = self.pending.front_mut() {
            let space = self.end.down.space().unwrap();
            match feed {
                Feed::End => {
                    self.end.down.close();
                    self.pending.pop_front();
                    delivered = true;
                    break;
                }
                Feed::Raw(bytes) => {
                    let n = self.end.down.write(bytes).unwrap();
                    self.written += n as u64;
                    bytes.drain(..n);
                    delivered |= n > 0;
                    if !bytes.is_empty() {
                        break;
                    }
                }
                Feed::Data(bytes, decrypted) => {
                    if self.chunks_from.is_none() {
                        let n = self.end.down.write(bytes).unwrap();
                        self.written += n as u64;
                        bytes.drain(..n);
                        delivered |= n > 0;
                        if !bytes.is_empty() {
                            break;
                        }
                    } else {
                        if space <= 4 {
                            break;
                        }
                        let n = bytes.len().min(0xffff).min(space - 4);
                        let mut h = n as u32;
                        if *decrypted {
                            h |= 1 << 31;
                        }
                        let header = h.to_le_bytes();
                        if self.split_headers {
                            for b in header {
                                self.end.down.write(&[b]).unwrap();
                                if self.end.down.signal_wanted() {
                                    self.end.wake_peer.ring();
                                }
                                std::thread::sleep(Duration::from_micros(300));
                            }
                        } else {
                            self.end.down.write(&header).unwrap();
                        }
                        assert_eq!(self.end.down.write(&bytes[..n]).unwrap(), n);
                        self.written += 4 + n as u64;
                        bytes.drain(..n);
                        delivered = true;
                    }
                    if bytes.is_empty() {
                        self.pending.pop_front();
                    }
                    continue;
                }
            }
            self.pending.pop_front();
        }
        if delivered && self.end.down.signal_wanted() {
            self.end.wake_peer.ring();
        }
        moved | delivered
    }
}

pub fn pump_loop(shared: Arc<Shared>) {
    while !shared.pump_stop.load(Ordering::Relaxed) {
        let moved = {
            let mut p = shared.pump.lock().unwrap();
            p.as_mut().map(Pump::step).unwrap_or(false)
        };
        if !moved {
            // Polls as well, so that a missed signal only slows it down.
            let bell = {
                let p = shared.pump.lock().unwrap();
                p.as_ref().map(|p| {
                    p.end.down.request_signal();
                    p.end.up.request_signal();
                    p.wake_me.try_clone().unwrap()
                })
            };
            match bell {
                Some(b) => {
                    let _ = b.wait(Some(Duration::from_millis(5)));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}
