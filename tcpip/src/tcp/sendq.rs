//! The send queue: bytes the application wrote that the peer has not yet
//! acknowledged, from `snd.una` on. Transmission and retransmission read
//! it at an offset; a cumulative ACK drops its front. Memory follows the
//! bytes held: the queue gives its storage back when it drains.

use std::collections::VecDeque;

/// Storage kept while empty; more is returned to the allocator.
const KEEP_WHEN_EMPTY: usize = 4096;

#[derive(Debug, Default)]
pub struct SendQueue {
    bytes: VecDeque<u8>,
    limit: usize,
}

impl SendQueue {
    pub const fn new(limit: usize) -> SendQueue {
        SendQueue {
            bytes: VecDeque::new(),
            limit,
        }
    }

    /// Bytes held (sent or not), from `snd.una`.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Room the application may still write into.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.bytes.len())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the bound; bytes already held stay.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends as much of `data` as there is room for; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.bytes.extend(&data[..n]);
        n
    }

    /// Copies the bytes at `offset` (from `snd.una`) into `dst`, which must
    /// lie within the queue.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        let (a, b) = self.bytes.as_slices();
        let mut at = offset;
        let mut filled = 0;
        for part in [a, b] {
            if filled == dst.len() {
                break;
            }
            if at >= part.len() {
                at -= part.len();
                continue;
            }
            let n = (part.len() - at).min(dst.len() - filled);
            dst[filled..filled + n].copy_from_slice(&part[at..at + n]);
            filled += n;
            at = 0;
        }
        debug_assert_eq!(filled, dst.len(), "read past the send queue");
    }

    /// Writes `bytes` over the held bytes at `offset` (from `snd.una`), as
    /// far as the queue goes; returns how many. Retransmissions send the
    /// new bytes (an offload holder's software-sealed records in place of
    /// the ones framed for a NIC that is gone).
    pub fn overwrite(&mut self, offset: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.bytes.len().saturating_sub(offset));
        if n == 0 {
            return 0;
        }
        for (d, s) in self.bytes.range_mut(offset..offset + n).zip(bytes) {
            *d = *s;
        }
        n
    }

    /// Drops the first `n` bytes (acknowledged).
    pub fn ack(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        self.bytes.drain(..n);
        if self.bytes.is_empty() && self.bytes.capacity() > KEEP_WHEN_EMPTY {
            self.bytes = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_at_offsets_across_the_wrap_and_frees_when_drained() {
        let mut q = SendQueue::new(10);
        assert_eq!(q.write(b"abcdefgh"), 8);
        q.ack(6);
        assert_eq!(q.write(b"ijklmnopq"), 8);
        assert_eq!(q.len(), 10);
        assert_eq!(q.room(), 0);
        let mut out = [0u8; 7];
        q.read(2, &mut out);
        assert_eq!(&out, b"ijklmno");
        assert_eq!(q.overwrite(8, b"XYZ"), 2);
        assert_eq!(q.overwrite(11, b"!"), 0);
        let mut out = [0u8; 4];
        q.read(6, &mut out);
        assert_eq!(&out, b"mnXY");
        q.ack(100);
        assert!(q.is_empty());
        let mut big = SendQueue::new(1 << 20);
        big.write(&vec![1u8; 1 << 20]);
        big.ack(1 << 20);
        assert_eq!(big.bytes.capacity(), 0);
    }
}
