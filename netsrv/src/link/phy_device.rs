//! A link as smoltcp's `phy::Device`: received frames from every live leg,
//! and frames to send on the leg the bond picks (or nowhere, with no leg up).

use super::*;
use smoltcp::phy::DeviceCapabilities;

pub enum LinkRx<'a> {
    Ring(RxToken<'a>),
    /// A frame copied out of a dead driver instance's rings.
    Owned(Vec<u8>),
}

pub enum LinkTx<'a> {
    /// Straight into the buffer of the chosen leg.
    Leg(TxToken<'a>),
    /// balance-xor: built first, then sent on the leg its flow hashes to.
    Hashed {
        legs: &'a mut [Leg],
        live: &'a [usize],
        scratch: &'a mut [u8],
    },
    /// No leg is up: the frame is dropped, as on a pulled cable.
    Drop {
        scratch: &'a mut [u8],
        counter: &'a mut u64,
    },
}

impl phy::RxToken for LinkRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            LinkRx::Ring(t) => t.consume(f),
            LinkRx::Owned(frame) => f(&frame),
        }
    }
}

impl phy::TxToken for LinkTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self {
            LinkTx::Leg(t) => t.consume(len, f),
            LinkTx::Hashed {
                legs,
                live,
                scratch,
            } => {
                let len = len.min(scratch.len());
                let result = f(&mut scratch[..len]);
                let frame = &scratch[..len];
                let leg = live[frame_hash(frame, false) as usize % live.len()];
                if let Some(dev) = legs[leg].device.as_mut() {
                    dev.reply_token()
                        .consume(len, |b| b.copy_from_slice(&frame[..b.len()]));
                }
                result
            }
            LinkTx::Drop { scratch, counter } => {
                *counter += 1;
                let len = len.min(scratch.len());
                f(&mut scratch[..len])
            }
        }
    }
}

impl phy::Device for Link {
    type RxToken<'a> = LinkRx<'a>;
    type TxToken<'a> = LinkTx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(LinkRx<'_>, LinkTx<'_>)> {
        while let Some(i) = self.legs.iter().position(|l| !l.received.is_empty()) {
            let (frame, desc) = self.legs[i].received.pop_front()?;
            if !self.offload.borrow_mut().on_rx(&frame, desc.flags) {
                continue;
            }
            let reply = self.select_for_frame(&frame, true);
            let Link {
                legs,
                scratch,
                counters,
                ..
            } = self;
            let tx = match reply.and_then(|j| legs[j].device.as_mut()) {
                Some(d) => LinkTx::Leg(d.reply_token()),
                None => LinkTx::Drop {
                    scratch,
                    counter: &mut counters.tx_no_leg,
                },
            };
            return Some((LinkRx::Owned(frame), tx));
        }
        let n = self.legs.len();
        for k in 0..n {
            let i = (self.rx_next + k) % n;
            while let Some(buf) = self.legs[i].device.as_mut().and_then(|d| d.next_rx()) {
                let Some(dev) = self.legs[i].device.as_ref() else {
                    break;
                };
                let frame = dev.rx_data(&buf);
                let desc = buf.desc();
                if !self.offload.borrow_mut().on_rx(frame, desc.flags) {
                    continue;
                }
                let group = is_group(frame);
                let reply = self.select_for_frame(frame, true);
                // A switch floods group frames to every leg: take them once.
                if self.mode == Mode::ActiveBackup && self.active != Some(i) && group {
                    self.counters.rx_inactive += 1;
                    continue;
                }
                self.rx_next = (i + 1) % n;
                let Link {
                    legs,
                    scratch,
                    counters,
                    ..
                } = self;
                return match reply {
                    Some(j) if j == i => {
                        let dev = legs[i].device.as_mut()?;
                        let (r, t) = dev.tokens(buf);
                        Some((LinkRx::Ring(r), LinkTx::Leg(t)))
                    }
                    Some(j) => {
                        let (a, b) = two_mut(legs, i, j);
                        let r = a.device.as_mut()?.rx_token(buf);
                        let tx = match b.device.as_mut() {
                            Some(d) => LinkTx::Leg(d.reply_token()),
                            None => LinkTx::Drop {
                                scratch,
                                counter: &mut counters.tx_no_leg,
                            },
                        };
                        Some((LinkRx::Ring(r), tx))
                    }
                    None => {
                        let r = legs[i].device.as_mut()?.rx_token(buf);
                        Some((
                            LinkRx::Ring(r),
                            LinkTx::Drop {
                                scratch,
                                counter: &mut counters.tx_no_leg,
                            },
                        ))
                    }
                };
            }
        }
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<LinkTx<'_>> {
        // With no leg up, smoltcp keeps what it wanted to send (as a full
        // TX queue) and sends it the moment a leg returns, instead of
        // losing it and waiting out a retransmission timeout.
        let Link {
            mode,
            legs,
            active,
            live,
            scratch,
            ..
        } = self;
        match mode {
            Mode::Single | Mode::ActiveBackup => legs[(*active)?]
                .device
                .as_mut()?
                .tx_token()
                .map(LinkTx::Leg),
            Mode::BalanceXor => {
                if live.is_empty() {
                    return None;
                }
                // Every live leg must have a buffer: the frame's leg is
                // known only once it is built.
                for &j in live.iter() {
                    if !legs[j].device.as_mut()?.reserve_tx() {
                        return None;
                    }
                }
                Some(LinkTx::Hashed {
                    legs,
                    live,
                    scratch,
                })
            }
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        crate::device::capabilities(self.mtu, self.checksum_offload)
    }
}
