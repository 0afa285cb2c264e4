//! The holder's side of NIC offload in a connection: where a context must
//! start, framing records for the NIC, the log of framed records a
//! revocation seals again in software, and the receive side's switch and
//! resync answers. The order in which contexts come and go is
//! `capnet_holder`'s (driven by [`crate::holder`]).

use super::*;

/// The NIC seals this connection's records. What revoking it safely needs:
/// the context's keys and every framed record the peer may not have
/// acknowledged, to send their software-sealed form instead.
///
/// The records' bytes are not copied for that: they stay where they were
/// framed, in the connection's outgoing buffer, and a buffer that still
/// holds some when it has been sent whole is kept here as a chunk (moved,
/// not copied) while a fresh one takes its place.
pub(super) struct DeviceTx {
    pub(super) keys: TrafficKeys,
    /// The framed records the peer may not have acknowledged, oldest first.
    pub(super) log: VecDeque<FramedRecord>,
    /// Sent outgoing buffers holding logged records, oldest first; the
    /// newest records may still be in the outgoing buffer itself.
    chunks: VecDeque<Chunk>,
    /// Buffers dropped chunks left, for the next outgoing buffers: freeing
    /// them would hand their pages back and fault fresh ones in for the
    /// next (a quarter of tlsd's time once, in the page-fault path).
    spares: Vec<Vec<u8>>,
    /// New records are framed for the NIC (false once keys changed: the
    /// context must be stopped).
    pub(super) active: bool,
}

pub(super) struct FramedRecord {
    pub(super) offset: u64,
    pub(super) rec_seq: u64,
    pub(super) len: usize,
}

/// At most this much buffer capacity is kept spare per connection (about
/// what the log holds between two prunes).
const SPARE_BYTES: usize = 2 << 20;

/// An outgoing buffer sent whole; `base` is the stream offset of its first
/// byte.
struct Chunk {
    base: u64,
    bytes: Vec<u8>,
}

impl DeviceTx {
    /// Whether a logged record lies at or after `offset`.
    pub(super) fn logs_from(&self, offset: u64) -> bool {
        self.log
            .back()
            .is_some_and(|r| r.offset + r.len as u64 > offset)
    }

    /// Keeps `out`, sent whole and starting at stream offset `base`, for
    /// the records it holds; answers the buffer to frame into next.
    pub(super) fn keep(&mut self, base: u64, out: Vec<u8>) -> Vec<u8> {
        self.chunks.push_back(Chunk { base, bytes: out });
        self.spares.pop().unwrap_or_default()
    }

    /// Forgets records that end at or before `unacked`, and the chunks
    /// nothing logged lies in any more.
    fn forget_before(&mut self, unacked: u64) {
        while self
            .log
            .front()
            .is_some_and(|r| r.offset + r.len as u64 <= unacked)
        {
            self.log.pop_front();
        }
        let needed = self.log.front().map_or(u64::MAX, |r| r.offset);
        while self
            .chunks
            .front()
            .is_some_and(|c| c.base + c.bytes.len() as u64 <= needed)
        {
            let mut c = self.chunks.pop_front().expect("checked");
            let kept: usize = self.spares.iter().map(Vec::capacity).sum();
            if kept + c.bytes.capacity() <= SPARE_BYTES {
                c.bytes.clear();
                self.spares.push(c.bytes);
            }
        }
    }

    /// The bytes of logged records from the first on, copied out of the
    /// chunks and of `out` (which starts at stream offset `out_base`);
    /// `None` if one is in neither (never: every logged record's buffer is
    /// kept until it is forgotten).
    fn logged_bytes(&self, out: &[u8], out_base: u64) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(self.log.iter().map(|r| r.len).sum());
        for r in &self.log {
            let end = r.offset + r.len as u64;
            let (base, buf) = self
                .chunks
                .iter()
                .find(|c| c.base <= r.offset && end <= c.base + c.bytes.len() as u64)
                .map_or((out_base, out), |c| (c.base, &c.bytes[..]));
            let at = usize::try_from(r.offset.checked_sub(base)?).ok()?;
            bytes.extend_from_slice(buf.get(at..at.checked_add(r.len)?)?);
        }
        Some(bytes)
    }
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
            chunks: VecDeque::new(),
            spares: Vec::new(),
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
            d.forget_before(unacked);
        }
    }

    /// Framed bytes kept for a revocation.
    pub fn device_tx_logged(&self) -> usize {
        self.device_tx
            .as_ref()
            .map_or(0, |d| d.log.iter().map(|r| r.len).sum())
    }

    /// Bytes held for the log besides the outgoing buffer (the chunks).
    pub fn device_tx_chunk_bytes(&self) -> usize {
        self.device_tx
            .as_ref()
            .map_or(0, |d| d.chunks.iter().map(|c| c.bytes.len()).sum())
    }

    /// Step 1 of a revocation: records are sealed here from now on. Returns
    /// the software-sealed form of every framed record from the one holding
    /// `unacked` on — (its stream offset, the bytes) — for netsrv to send
    /// instead. The same engine code as the NIC's seals them, so the bytes
    /// are those the NIC would have sent.
    pub fn end_device_tx(&mut self, unacked: u64) -> (u64, Vec<u8>) {
        let Some(mut d) = self.device_tx.take() else {
            return (self.tx_next, Vec::new());
        };
        Stats::dec(&self.stats.curr_tx_device);
        Stats::inc(&self.stats.curr_tx_sw);
        d.forget_before(unacked);
        let Some(first) = d.log.front() else {
            return (self.tx_next, Vec::new());
        };
        let (start, rec_seq) = (first.offset, first.rec_seq);
        let out_base = self.tx_next - self.out.len() as u64;
        let sealed = match (
            d.logged_bytes(&self.out, out_base),
            capnet_offload::gcm::GcmKey::new(&d.keys.key),
        ) {
            (None, _) => Err("a logged record's bytes are gone".to_string()),
            (_, Err(_)) => Err("bad key".to_string()),
            (Some(mut bytes), Ok(key)) => {
                let mut engine =
                    capnet_offload::tls::TlsTxEngine::new(capnet_offload::tls::TlsParams {
                        version: d.keys.version,
                        key,
                        iv: d.keys.iv,
                        tcp_seq: start as u32,
                        rec_seq,
                    });
                engine
                    .process(start as u32, &mut bytes)
                    .map(|_| bytes)
                    .map_err(|e| e.to_string())
            }
        };
        match sealed {
            Ok(bytes) => (start, bytes),
            // Our own log does not seal: nothing framed may leave. Fail the
            // connection rather than send cleartext.
            Err(why) => {
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
