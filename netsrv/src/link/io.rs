//! A link's frames: received from every live leg, and sent on the leg the
//! bond picks (or nowhere, with no leg up).

use super::*;
use capnet_tcpip::tcp::Mark;

pub enum LinkTx<'a> {
    /// Straight into the buffer of the chosen leg.
    Leg(TxToken<'a>),
    /// balance-xor: built first, then sent on the leg its flow hashes to.
    Hashed {
        legs: &'a mut [Leg],
        live: &'a [usize],
        scratch: &'a mut [u8],
    },
}

impl LinkTx<'_> {
    /// Builds a `len`-byte frame with `f` and sends it where the token says.
    pub fn consume<R, F>(self, len: usize, f: F) -> R
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
        }
    }
}

impl Link {
    /// The next received frame from any leg, put into `frame`, and what
    /// the NIC did to its payload (group frames an inactive active-backup
    /// leg hears are skipped). `None` when none waits.
    pub fn receive(&mut self, frame: &mut Vec<u8>) -> Option<Mark> {
        if let Some(i) = self.legs.iter().position(|l| !l.received.is_empty()) {
            let (f, desc) = self.legs[i].received.pop_front()?;
            let mark = self.offload.borrow_mut().on_rx(&f, desc.flags);
            *frame = f;
            return Some(mark);
        }
        let n = self.legs.len();
        for k in 0..n {
            let i = (self.rx_next + k) % n;
            while let Some(buf) = self.legs[i].device.as_mut().and_then(|d| d.next_rx()) {
                let Some(dev) = self.legs[i].device.as_ref() else {
                    break;
                };
                let data = dev.rx_data(&buf);
                // A switch floods group frames to every leg: take them once.
                if self.mode == Mode::ActiveBackup && self.active != Some(i) && is_group(data) {
                    self.counters.rx_inactive += 1;
                    continue;
                }
                let mark = self.offload.borrow_mut().on_rx(data, buf.desc().flags);
                if let Some(dev) = self.legs[i].device.as_mut() {
                    dev.take_rx(buf, frame);
                }
                self.rx_next = (i + 1) % n;
                return Some(mark);
            }
        }
        None
    }

    /// A token to send one frame on the leg the bond picks; `None` when no
    /// leg is up or the leg has no TX buffer free (the engine keeps what
    /// it wanted to send, and sends it once a leg has room again).
    pub fn transmit(&mut self) -> Option<LinkTx<'_>> {
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
}
