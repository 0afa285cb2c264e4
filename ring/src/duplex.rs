//! A duplex link: two channels (A to B, B to A), a carrier word and two doorbells.
//!
//! Both a NIC port (nicdrv is side A, netsrv side B) and the simulated wire (nicdrv to nicdrv)
//! are made of it. Region layout:
//!
//! ```text
//! 0    header: magic "CNDX", version, buffers, buf_size   (written by A before sharing)
//! 64   carrier (1 = up), on its own line; both ends read it, the wire owner writes it
//! 128  channel A->B   (ChannelLayout::region_bytes)
//! ...  channel B->A
//! ```
//!
//! A keeps `[region, ring_a, wait_b]` for B (the ring end of A's doorbell, the wait end of B's:
//! see [`crate::platform::Doorbell::pair`]); B maps the region only if it is a sealed memfd of
//! the exact size and its header matches the layout B expects.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::channel::{ChannelLayout, ChannelReceiver, ChannelSender};
use crate::error::RingError;
use crate::platform::{Doorbell, End, SharedRegion};
use crate::shm::atomic_u32_at;
use crate::sync::{Ordering, LINE};

const MAGIC: u32 = u32::from_le_bytes(*b"CNDX");
const VERSION: u32 = 1;
/// Fixed offsets (others' tests locate queues by them): the header is read-only after create,
/// so header and carrier need not be a full index block apart; channels start 128-aligned.
const CARRIER: usize = 64;
const CHANNELS: usize = 128;
const _: () = assert!(CHANNELS % LINE == 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// One end of a duplex link.
#[derive(Debug)]
pub struct Duplex {
    pub tx: ChannelSender,
    pub rx: ChannelReceiver,
    /// The peer rings this to wake us.
    pub wake_me: Doorbell,
    /// We ring this to wake the peer.
    pub wake_peer: Doorbell,
    region: Arc<SharedRegion>,
    side: Side,
}

impl Duplex {
    /// Creates the link; returns side A and the fds `[region, ring_a, wait_b]` for side B.
    pub fn create(name: &str, layout: ChannelLayout) -> io::Result<(Duplex, Vec<OwnedFd>)> {
        layout.check()?;
        let region = Arc::new(SharedRegion::create(name, Duplex::region_bytes(layout))?);
        write_header(&region, layout)?;
        // Each side waits on its own doorbell and holds only the ring end of the other's.
        let (ring_a, wait_a) = Doorbell::pair()?;
        let (ring_b, wait_b) = Doorbell::pair()?;
        let fds = vec![
            region.fd().try_clone_to_owned()?,
            ring_a.into_fd(),
            wait_b.into_fd(),
        ];
        let (tx_at, rx_at) = channel_offsets(Side::A, layout);
        let end = Duplex {
            tx: ChannelSender::attach(region.clone(), tx_at, layout)?,
            rx: ChannelReceiver::attach(region.clone(), rx_at, layout)?,
            wake_me: wait_a,
            wake_peer: ring_b,
            region,
            side: Side::A,
        };
        Ok((end, fds))
    }

    /// Side B, from the fds [`Duplex::create`] handed out; validates size, seals and header.
    pub fn attach(fds: Vec<OwnedFd>, layout: ChannelLayout) -> Result<Duplex, RingError> {
        layout.check()?;
        let [region, ring_a, wait_b] = <[OwnedFd; 3]>::try_from(fds)
            .map_err(|_| RingError::Layout("duplex needs exactly 3 fds"))?;
        let region = Arc::new(SharedRegion::from_fd(region, Duplex::region_bytes(layout))?);
        check_header(&region, layout)?;
        let (tx_at, rx_at) = channel_offsets(Side::B, layout);
        Ok(Duplex {
            tx: ChannelSender::attach(region.clone(), tx_at, layout)?,
            rx: ChannelReceiver::attach(region.clone(), rx_at, layout)?,
            wake_me: Doorbell::from_peer_fd(wait_b, End::Wait)?,
            wake_peer: Doorbell::from_peer_fd(ring_a, End::Ring)?,
            region,
            side: Side::B,
        })
    }

    /// Bytes of the shared region for `layout`.
    pub fn region_bytes(layout: ChannelLayout) -> usize {
        CHANNELS + 2 * layout.region_bytes()
    }

    /// Link state as the wire owner last set it.
    pub fn carrier(&self) -> bool {
        self.carrier_word().load(Ordering::Acquire) != 0
    }

    pub fn set_carrier(&self, up: bool) {
        self.carrier_word().store(u32::from(up), Ordering::Release);
    }

    pub fn side(&self) -> Side {
        self.side
    }

    fn carrier_word(&self) -> &AtomicU32 {
        atomic_u32_at(&self.region, CARRIER).expect("carrier word lies inside every duplex region")
    }
}

/// Where this side's sending and receiving channels start.
fn channel_offsets(side: Side, layout: ChannelLayout) -> (usize, usize) {
    let a_to_b = CHANNELS;
    let b_to_a = CHANNELS + layout.region_bytes();
    match side {
        Side::A => (a_to_b, b_to_a),
        Side::B => (b_to_a, a_to_b),
    }
}

fn write_header(region: &SharedRegion, layout: ChannelLayout) -> Result<(), RingError> {
    atomic_u32_at(region, 0)?.store(MAGIC, Ordering::Relaxed);
    atomic_u32_at(region, 4)?.store(VERSION, Ordering::Relaxed);
    atomic_u32_at(region, 8)?.store(layout.buffers, Ordering::Relaxed);
    atomic_u32_at(region, 12)?.store(layout.buf_size, Ordering::Relaxed);
    atomic_u32_at(region, CARRIER)?.store(1, Ordering::Release);
    Ok(())
}

fn check_header(region: &SharedRegion, layout: ChannelLayout) -> Result<(), RingError> {
    let word = |off| atomic_u32_at(region, off).map(|w| w.load(Ordering::Relaxed));
    if word(0)? != MAGIC || word(4)? != VERSION {
        return Err(RingError::Layout("not a capnet duplex region"));
    }
    if word(8)? != layout.buffers || word(12)? != layout.buf_size {
        return Err(RingError::Layout("duplex layout mismatch"));
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    const LAYOUT: ChannelLayout = ChannelLayout {
        buffers: 8,
        buf_size: 2048,
    };

    fn dup(fds: &[OwnedFd]) -> Vec<OwnedFd> {
        fds.iter().map(|f| f.try_clone().unwrap()).collect()
    }

    fn send(d: &mut Duplex, payload: &[u8]) {
        let mut b = d.tx.alloc().unwrap().unwrap();
        d.tx.buf_mut(&mut b)[..payload.len()].copy_from_slice(payload);
        d.tx.send(b, payload.len() as u32, 0, 0);
        if d.tx.flush().unwrap() {
            d.wake_peer.ring();
        }
    }

    fn recv(d: &mut Duplex) -> Vec<u8> {
        let f = d.rx.recv().unwrap().expect("a frame");
        let bytes = d.rx.data(&f).to_vec();
        d.rx.release(f);
        if d.rx.flush().unwrap() {
            d.wake_peer.ring();
        }
        bytes
    }

    #[test]
    fn create_attach_and_move_frames_both_ways() {
        let (mut a, fds) = Duplex::create("port0", LAYOUT).unwrap();
        let mut b = Duplex::attach(fds, LAYOUT).unwrap();
        assert_eq!((a.side(), b.side()), (Side::A, Side::B));
        for i in 0..20u8 {
            send(&mut a, &[i; 100]);
            send(&mut b, &[i; 7]);
            assert_eq!(recv(&mut b), vec![i; 100]);
            assert_eq!(recv(&mut a), vec![i; 7]);
        }
    }

    #[test]
    fn doorbells_wake_the_right_side() {
        let (mut a, fds) = Duplex::create("port0", LAYOUT).unwrap();
        let mut b = Duplex::attach(fds, LAYOUT).unwrap();
        b.rx.request_signal();
        assert!(b.rx.is_empty());
        let t = std::thread::spawn(move || {
            assert!(b.wake_me.wait(Some(Duration::from_secs(5))).unwrap());
            recv(&mut b)
        });
        std::thread::sleep(Duration::from_millis(5));
        send(&mut a, b"wake up");
        assert_eq!(t.join().unwrap(), b"wake up");
        assert_eq!(a.wake_me.drain(), 0, "A was not rung: it never asked");
    }

    #[test]
    fn carrier_is_shared() {
        let (a, fds) = Duplex::create("wire", LAYOUT).unwrap();
        let b = Duplex::attach(fds, LAYOUT).unwrap();
        assert!(a.carrier() && b.carrier());
        a.set_carrier(false);
        assert!(!b.carrier());
        b.set_carrier(true);
        assert!(a.carrier());
    }

    #[test]
    fn attach_rejects_wrong_layout_fd_count_and_foreign_regions() {
        let (_a, fds) = Duplex::create("port0", LAYOUT).unwrap();
        let other = ChannelLayout {
            buffers: 8,
            buf_size: 1024,
        };
        assert!(
            matches!(Duplex::attach(dup(&fds), other), Err(RingError::Io(_))),
            "size differs"
        );
        let two: Vec<_> = dup(&fds).into_iter().take(2).collect();
        assert!(matches!(
            Duplex::attach(two, LAYOUT),
            Err(RingError::Layout(_))
        ));
        let bad = ChannelLayout {
            buffers: 6,
            buf_size: 2048,
        };
        assert!(matches!(
            Duplex::attach(dup(&fds), bad),
            Err(RingError::Layout(_))
        ));
        // Right size, but not a duplex: zeroed header.
        let foreign = SharedRegion::create("x", Duplex::region_bytes(LAYOUT)).unwrap();
        let mut fake = dup(&fds);
        fake[0] = foreign.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            Duplex::attach(fake, LAYOUT),
            Err(RingError::Layout(_))
        ));
        // Right size, but its header names another shape.
        let liar = SharedRegion::create("x", Duplex::region_bytes(LAYOUT)).unwrap();
        write_header(
            &liar,
            ChannelLayout {
                buffers: 8,
                buf_size: 1024,
            },
        )
        .unwrap();
        let mut fake = dup(&fds);
        fake[0] = liar.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            Duplex::attach(fake, LAYOUT),
            Err(RingError::Layout(_))
        ));
        // A doorbell that is not a datagram socket.
        let mut fake = dup(&fds);
        fake[1] = std::fs::File::open("/dev/null").unwrap().into();
        assert!(matches!(
            Duplex::attach(fake, LAYOUT),
            Err(RingError::Io(_))
        ));
        assert!(Duplex::attach(fds, LAYOUT).is_ok());
    }

    #[test]
    fn create_rejects_bad_layout() {
        let bad = ChannelLayout {
            buffers: 5,
            buf_size: 2048,
        };
        assert_eq!(
            Duplex::create("x", bad).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
