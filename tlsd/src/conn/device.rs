//! The holder's side of NIC offload in a connection: where a context must
//! start, framing records for the NIC, the log of framed records a
//! revocation seals again in software, and the receive side's switch and
//! resync answers. The order in which contexts come and go is
//! `capnet_holder`'s (driven by [`crate::holder`]).

use super::*;

/// The NIC seals this connection's records. What revoking it safely needs:
/// the context's keys and every framed record the peer may not have
/// acknowledged, to send their software-sealed form instead.
pub(super) struct DeviceTx {
    pub(super) keys: TrafficKeys,
    pub(super) log: VecDeque<FramedRecord>,
    /// New records are framed for the NIC (false once keys changed: the
    /// context must be stopped).
    pub(super) active: bool,
}

pub(super) struct FramedRecord {
    pub(super) offset: u64,
    pub(super) rec_seq: u64,
    pub(super) bytes: Vec<u8>,
}

/// Where a NIC context must start, and with what.
#[derive(Debug)]
pub struct DeviceStart {
    pub stream_offset: u64,
    pub rec_seq: u64,
    pub keys: TrafficKeys,
}

impl TlsConn {
    /// Stream offset of the next record sealed or framed: where the
    /// software path stands on transmit.
    pub fn tx_offset(&self) -> u64 {
        self.tx_next
    }

    /// Stream offset of the first record not yet opened: where the software
    /// path stands on receive.
    pub fn rx_offset(&self) -> u64 {
        self.rx_next_record
    }

    /// Where and with what a TX context must start for records from now on;
    /// `None` if this connection cannot be offloaded (cipher, state).
    pub fn device_tx_start(&self) -> Option<DeviceStart> {
        if self.tx != TxState::Open
            || self.failed.is_some()
            || self.device_tx.is_some()
            || !self.tx_keys.cipher.offloadable()
        {
            return None;
        }
        Some(DeviceStart {
            stream_offset: self.tx_next,
            rec_seq: self.sealer.seq(),
            keys: self.tx_keys.clone(),
        })
    }

    /// A TX context from `device_tx_start` exists: frame records for it.
    pub fn begin_device_tx(&mut self) {
        self.device_tx = Some(DeviceTx {
            keys: self.tx_keys.clone(),
            log: VecDeque::new(),
            active: true,
        });
        Stats::dec(&self.stats.curr_tx_sw);
        Stats::inc(&self.stats.curr_tx_device);
        Stats::inc(&self.stats.tx_device);
    }

    /// True while records are framed for a NIC.
    pub fn device_tx_active(&self) -> bool {
        self.device_tx.as_ref().is_some_and(|d| d.active)
    }

    /// True if a TX context exists that can no longer be used (the keys
    /// changed): stop it.
    pub fn device_tx_stale(&self) -> bool {
        self.device_tx.as_ref().is_some_and(|d| !d.active)
    }

    /// The peer acknowledged every byte before `unacked`: framed records
    /// before it will never be sent again.
    pub fn device_tx_acked(&mut self, unacked: u64) {
        if let Some(d) = &mut self.device_tx {
            while d
                .log
                .front()
                .is_some_and(|r| r.offset + r.bytes.len() as u64 <= unacked)
            {
                d.log.pop_front();
            }
        }
    }

    /// Framed bytes kept for a revocation.
    pub fn device_tx_logged(&self) -> usize {
        self.device_tx
            .as_ref()
            .map_or(0, |d| d.log.iter().map(|r| r.bytes.len()).sum())
    }

    /// Step 1 of a revocation: records are sealed here from now on. Returns
    /// the software-sealed form of every framed record from the one holding
    /// `unacked` on — (its stream offset, the bytes) — for netsrv to send
    /// instead. The same engine code as the NIC's seals them, so the bytes
    /// are those the NIC would have sent.
    pub fn end_device_tx(&mut self, unacked: u64) -> (u64, Vec<u8>) {
        let Some(d) = self.device_tx.take() else {
            return (self.tx_next, Vec::new());
        };
        Stats::dec(&self.stats.curr_tx_device);
        Stats::inc(&self.stats.curr_tx_sw);
        let mut log = d.log;
        while log
            .front()
            .is_some_and(|r| r.offset + r.bytes.len() as u64 <= unacked)
        {
            log.pop_front();
        }
        let Some(first) = log.front() else {
            return (self.tx_next, Vec::new());
        };
        let (start, rec_seq) = (first.offset, first.rec_seq);
        let mut bytes: Vec<u8> = log.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let sealed = capnet_offload::gcm::GcmKey::new(&d.keys.key)
            .ok()
            .map(|key| {
                let mut engine =
                    capnet_offload::tls::TlsTxEngine::new(capnet_offload::tls::TlsParams {
                        version: d.keys.version,
                        key,
                        iv: d.keys.iv,
                        tcp_seq: start as u32,
                        rec_seq,
                    });
                engine.process(start as u32, &mut bytes)
            });
        match sealed {
            Some(Ok(_)) => (start, bytes),
            // Our own log does not seal: nothing framed may leave. Fail the
            // connection rather than send cleartext.
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "bad key".into(),
                };
                self.fail_local(
                    AlertDescription::InternalError,
                    format!("sealing the framed records for revocation: {why}"),
                );
                (start, Vec::new())
            }
        }
    }

    /// Where and with what an RX context must start: the first record not
    /// yet taken (it may be partly received: the NIC then resyncs).
    pub fn device_rx_start(&self) -> Option<DeviceStart> {
        if self.rx != RxState::Open || self.failed.is_some() || !self.rx_keys.cipher.offloadable() {
            return None;
        }
        Some(DeviceStart {
            stream_offset: self.rx_next_record,
            rec_seq: self.opener.seq(),
            keys: self.rx_keys.clone(),
        })
    }

    pub fn set_device_rx(&mut self, on: bool) {
        if on == self.device_rx {
            return;
        }
        self.device_rx = on;
        self.rx_rekeyed_on_device = false;
        if on {
            Stats::dec(&self.stats.curr_rx_sw);
            Stats::inc(&self.stats.curr_rx_device);
            Stats::inc(&self.stats.rx_device);
        } else {
            Stats::dec(&self.stats.curr_rx_device);
            Stats::inc(&self.stats.curr_rx_sw);
            // Questions and answers of a context that is gone: the next
            // one asks its own, in its own sequence numbers.
            self.resync_watch.clear();
            self.resync_answers.clear();
        }
    }

    pub fn device_rx(&self) -> bool {
        self.device_rx
    }

    /// The RX context has the old receive key.
    pub fn device_rx_stale(&self) -> bool {
        self.rx_rekeyed_on_device
    }

    /// A NIC asks whether a record starts at stream offset `offset`; the
    /// answer comes from `resync_answers` once the records get there.
    pub fn watch_record_start(&mut self, offset: u64) {
        if offset < self.rx_next_record {
            self.resync_answers.push((offset, None));
        } else if !self.resync_watch.contains(&offset) {
            self.resync_watch.push(offset);
        }
    }

    /// (offset, record number if a record starts there).
    pub fn take_resync_answers(&mut self) -> Vec<(u64, Option<u64>)> {
        std::mem::take(&mut self.resync_answers)
    }
}
