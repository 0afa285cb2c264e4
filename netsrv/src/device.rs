//! smoltcp's view of a NIC port: a `Device` over the port's shared-memory rings.
//!
//! Frames are written straight into ring buffers (no copy between smoltcp and
//! the NIC driver). Descriptors are published in batches: `flush` runs once per
//! stack poll, so the driver's doorbell rings at most once per batch and only
//! when the driver asked for it.

use capnet_ring::{flags, ChannelReceiver, ChannelSender, Duplex, RingError, RxBuf, TxBuf};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Per-port counters kept by the stack side.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames the driver marked with a bad checksum; dropped here.
    pub rx_bad_checksum: u64,
    /// Frames smoltcp wanted to send while every TX buffer was in flight.
    pub tx_no_buffer: u64,
}

pub struct RingDevice {
    duplex: Duplex,
    /// One TX buffer taken ahead, so that `transmit` can say "no buffer"
    /// before smoltcp builds a frame, without leaking buffers of unused tokens.
    spare: Option<TxBuf>,
    mtu: usize,
    checksum_offload: bool,
    /// The first contract violation seen from the driver; the port is dead
    /// after it.
    fault: Option<RingError>,
    pub counters: DeviceCounters,
    /// Frames moved since the last `take_activity`.
    activity: u64,
}

impl RingDevice {
    /// `mtu` is the IP MTU; Ethernet frames are 14 bytes longer.
    pub fn new(duplex: Duplex, mtu: usize, checksum_offload: bool) -> RingDevice {
        RingDevice {
            duplex,
            spare: None,
            mtu,
            checksum_offload,
            fault: None,
            counters: DeviceCounters::default(),
            activity: 0,
        }
    }

    pub fn fault(&self) -> Option<&RingError> {
        self.fault.as_ref()
    }

    fn record(&mut self, err: RingError) {
        if self.fault.is_none() {
            tracing::error!(%err, "NIC driver broke the ring contract; port disabled");
            self.fault = Some(err);
        }
    }

    /// Publishes staged descriptors and rings the driver if it asked.
    pub fn flush(&mut self) {
        if self.fault.is_some() {
            return;
        }
        let tx = self.duplex.tx.flush();
        let rx = self.duplex.rx.flush();
        match (tx, rx) {
            (Ok(a), Ok(b)) => {
                if a || b {
                    self.duplex.wake_peer.ring();
                }
            }
            (Err(e), _) | (_, Err(e)) => self.record(e),
        }
    }

    /// True if frames moved since the last call.
    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity) > 0
    }

    /// Asks the driver for a doorbell on new RX frames or returned TX
    /// buffers, then re-checks; true if there is work after all.
    pub fn arm(&mut self) -> bool {
        if self.fault.is_some() {
            return false;
        }
        self.duplex.rx.request_signal();
        self.duplex.tx.request_signal();
        if !self.duplex.rx.is_empty() {
            self.duplex.rx.cancel_signal();
            self.duplex.tx.cancel_signal();
            return true;
        }
        false
    }

    pub fn doorbell(&self) -> &capnet_ring::Doorbell {
        &self.duplex.wake_me
    }

    fn take_tx_buffer(&mut self) -> bool {
        if self.spare.is_some() {
            return true;
        }
        match self.duplex.tx.alloc() {
            Ok(Some(buf)) => {
                self.spare = Some(buf);
                true
            }
            Ok(None) => {
                self.counters.tx_no_buffer += 1;
                false
            }
            Err(e) => {
                self.record(e);
                false
            }
        }
    }

    fn tx_flags(&self) -> u32 {
        if self.checksum_offload {
            flags::TX_CSUM
        } else {
            0
        }
    }
}

pub struct RxToken<'a> {
    rx: &'a mut ChannelReceiver,
    buf: RxBuf,
}

pub struct TxToken<'a> {
    tx: &'a mut ChannelSender,
    spare: &'a mut Option<TxBuf>,
    flags: u32,
    sent: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let result = f(self.rx.data(&self.buf));
        self.rx.release(self.buf);
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // `transmit` only hands out a token with a spare buffer in hand.
        let Some(mut buf) = self.spare.take() else {
            let mut scratch = vec![0u8; len];
            return f(&mut scratch);
        };
        let bytes = self.tx.buf_mut(&mut buf);
        let len = len.min(bytes.len());
        let result = f(&mut bytes[..len]);
        self.tx.send(buf, len as u32, self.flags, 0);
        *self.sent += 1;
        result
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if self.fault.is_some() {
            return None;
        }
        let buf = loop {
            match self.duplex.rx.recv() {
                Ok(Some(buf)) if buf.desc().flags & flags::CSUM_BAD != 0 => {
                    self.counters.rx_bad_checksum += 1;
                    self.duplex.rx.release(buf);
                }
                Ok(Some(buf)) => break buf,
                Ok(None) => return None,
                Err(e) => {
                    self.record(e);
                    return None;
                }
            }
        };
        self.counters.rx_frames += 1;
        self.activity += 1;
        // A reply token without a buffer is still valid: smoltcp may not use it.
        self.take_tx_buffer();
        let flags = self.tx_flags();
        let RingDevice {
            duplex,
            spare,
            counters,
            ..
        } = self;
        Some((
            RxToken {
                rx: &mut duplex.rx,
                buf,
            },
            TxToken {
                tx: &mut duplex.tx,
                spare,
                flags,
                sent: &mut counters.tx_frames,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.fault.is_some() || !self.take_tx_buffer() {
            return None;
        }
        self.activity += 1;
        let flags = self.tx_flags();
        Some(TxToken {
            tx: &mut self.duplex.tx,
            spare: &mut self.spare,
            flags,
            sent: &mut self.counters.tx_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(64);
        caps.checksum = if self.checksum_offload {
            // The driver verifies on RX (bad frames never reach smoltcp) and
            // fills on TX.
            let mut c = ChecksumCapabilities::ignored();
            c.ipv4 = Checksum::None;
            c
        } else {
            ChecksumCapabilities::default()
        };
        caps
    }
}
