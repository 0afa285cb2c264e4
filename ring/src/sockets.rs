//! Per-socket rings: one region holds a small header, the "up" ring (application to netsrv)
//! and the "down" ring (netsrv to application); two doorbells wake either end. The same
//! layout is a slot of a client's [`crate::arena`], where the arena's doorbells and ready
//! lists wake either end instead.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use crate::arena::SlotLease;
use crate::bytering::{byte_ring_bytes, check_capacity, ByteReader, ByteWriter, ShmBytes};
use crate::error::RingError;
use crate::platform::{Doorbell, End, SharedRegion};
use crate::ready::ReadySender;
use crate::shm::atomic_u32_at;
use crate::sync::{line_up, Ordering, LINE};

const MAGIC: u32 = u32::from_le_bytes(*b"CNSK");
const VERSION: u32 = 1;
const UP: usize = LINE;

fn down(capacity: u32) -> usize {
    UP + line_up(byte_ring_bytes(capacity))
}

/// Bytes of the region behind one socket's rings.
pub fn socket_region_bytes(capacity: u32) -> usize {
    down(capacity) + byte_ring_bytes(capacity)
}

pub struct SocketRings;

/// How one end wakes the other: a doorbell of the socket's own, or the
/// socket's slot on its arena's ready list and the arena's doorbell.
#[derive(Debug)]
pub enum Waker {
    Bell(Doorbell),
    Slot { news: Arc<SlotNews>, slot: u32 },
}

impl Waker {
    /// Wakes the other end; never blocks (see [`Doorbell::ring`]).
    pub fn ring(&self) {
        match self {
            Waker::Bell(d) => d.ring(),
            Waker::Slot { news, slot } => news.tell(*slot),
        }
    }
}

/// One direction of an arena: the ready list this end writes and the
/// doorbell it rings after.
#[derive(Debug)]
pub struct SlotNews {
    list: Mutex<ReadySender>,
    bell: Doorbell,
}

impl SlotNews {
    pub(crate) fn new(list: ReadySender, bell: Doorbell) -> SlotNews {
        SlotNews {
            list: Mutex::new(list),
            bell,
        }
    }

    /// Lists `slot` and rings. A list the peer broke (full: it never takes
    /// its entries) wakes the peer all the same; it only loses the news of
    /// which slot.
    fn tell(&self, slot: u32) {
        let _ = self
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mark(slot);
        self.bell.ring();
    }
}

/// netsrv's end: reads what the application sends, writes what it receives.
/// What wakes it is its owner's: the set's own doorbell
/// ([`SocketRings::create`]), or its arena's.
#[derive(Debug)]
pub struct ServerEnd {
    pub up: ByteReader,
    pub down: ByteWriter,
    pub wake_peer: Waker,
    /// The region behind both rings, for its header ([`Self::reset`]).
    region: Arc<SharedRegion>,
    /// Where the rings start in it.
    base: usize,
    /// An arena slot's hold on it.
    _lease: Option<Arc<SlotLease>>,
}

/// The application's end.
#[derive(Debug)]
pub struct ClientEnd {
    pub up: ByteWriter,
    pub down: ByteReader,
    pub wake_me: Doorbell,
    pub wake_peer: Waker,
    /// The region behind both rings, to take the same set up again.
    pub mapping: SocketMapping,
}

/// A client's mapping of one socket's rings. A client that released its
/// socket can keep it (and the set's doorbells): when netsrv hands the same
/// set to a later socket, [`Self::rings`] starts both rings afresh over it
/// and nothing is mapped again.
#[derive(Debug, Clone)]
pub struct SocketMapping {
    region: Arc<SharedRegion>,
    base: usize,
    capacity: u32,
}

impl SocketMapping {
    pub(crate) fn at(region: Arc<SharedRegion>, base: usize, capacity: u32) -> SocketMapping {
        SocketMapping {
            region,
            base,
            capacity,
        }
    }

    /// The up and down rings of a set netsrv reset ([`ServerEnd::reset`])
    /// for a new socket: the header checked again, this end's positions at
    /// zero. netsrv may already be writing the down ring; nothing here
    /// writes to the region.
    pub fn rings(&self) -> Result<(ByteWriter, ByteReader), RingError> {
        check_header(&self.region, self.base, self.capacity)?;
        let at = |off| ShmBytes::new(self.region.clone(), self.base + off, self.capacity);
        let up = ByteWriter::new(at(UP)?)?;
        let down = ByteReader::new(at(down(self.capacity))?)?;
        Ok((up, down))
    }
}

impl ServerEnd {
    /// The rings at `base` in `region`, header written and both rings
    /// empty and open.
    pub(crate) fn at(
        region: Arc<SharedRegion>,
        base: usize,
        capacity: u32,
        wake_peer: Waker,
    ) -> Result<ServerEnd, RingError> {
        let at = |off| ShmBytes::new(region.clone(), base + off, capacity);
        let mut end = ServerEnd {
            up: ByteReader::new(at(UP)?)?,
            down: ByteWriter::new(at(down(capacity))?)?,
            wake_peer,
            region,
            base,
            _lease: None,
        };
        end.reset()?;
        Ok(end)
    }

    pub(crate) fn leased(mut self, lease: Arc<SlotLease>) -> ServerEnd {
        self._lease = Some(lease);
        self
    }

    /// The rings as [`SocketRings::create`] made them, for another
    /// connection of the client that held them: the region's header
    /// written again, both rings empty and open. Only once that client let
    /// go of them (it closed both rings and released the socket); both
    /// doorbells' wait ends must be drained too. A client that kept using
    /// them anyway reaches only its own next connection.
    pub fn reset(&mut self) -> Result<(), RingError> {
        write_header(&self.region, self.base, self.up.capacity())?;
        self.up.reset();
        self.down.reset();
        Ok(())
    }
}

impl SocketRings {
    /// Creates the rings; returns the server end, the wait end of the server's doorbell and,
    /// for the client, the fds `[region, ring_server, wait_client]` (the ring end of the
    /// server's doorbell, the wait end of the client's).
    pub fn create(capacity: u32) -> io::Result<(ServerEnd, Doorbell, Vec<OwnedFd>)> {
        check_capacity(capacity)?;
        let region = Arc::new(SharedRegion::create(
            "capnet-socket",
            socket_region_bytes(capacity),
        )?);
        let (wait_server, ring_client, fds) = doorbells(&region)?;
        let end = ServerEnd::at(region, 0, capacity, Waker::Bell(ring_client))?;
        Ok((end, wait_server, fds))
    }

    /// Maps the rings from the fds [`SocketRings::create`] handed out; checks size and header.
    pub fn attach(fds: Vec<OwnedFd>, capacity: u32) -> Result<ClientEnd, RingError> {
        check_capacity(capacity)?;
        let [region, ring_server, wait_client] = <[OwnedFd; 3]>::try_from(fds)
            .map_err(|_| RingError::Layout("socket rings need exactly 3 fds"))?;
        let region = Arc::new(SharedRegion::from_fd(
            region,
            socket_region_bytes(capacity),
        )?);
        let mapping = SocketMapping::at(region, 0, capacity);
        let (up, down) = mapping.rings()?;
        Ok(ClientEnd {
            up,
            down,
            wake_me: Doorbell::from_peer_fd(wait_client, End::Wait)?,
            wake_peer: Waker::Bell(Doorbell::from_peer_fd(ring_server, End::Ring)?),
            mapping,
        })
    }
}

/// The doorbells of rings in `region`: the server's wait end, the ring
/// end of the client's, and the client's descriptors `[region,
/// ring_server, wait_client]`. Each end waits on its own doorbell and holds
/// only the ring end of the other's.
pub(crate) fn doorbells(region: &SharedRegion) -> io::Result<(Doorbell, Doorbell, Vec<OwnedFd>)> {
    let (ring_server, wait_server) = Doorbell::pair()?;
    let (ring_client, wait_client) = Doorbell::pair()?;
    let fds = vec![
        region.fd().try_clone_to_owned()?,
        ring_server.into_fd(),
        wait_client.into_fd(),
    ];
    Ok((wait_server, ring_client, fds))
}

fn write_header(region: &SharedRegion, base: usize, capacity: u32) -> Result<(), RingError> {
    atomic_u32_at(region, base)?.store(MAGIC, Ordering::Relaxed);
    atomic_u32_at(region, base + 4)?.store(VERSION, Ordering::Relaxed);
    atomic_u32_at(region, base + 8)?.store(capacity, Ordering::Relaxed);
    Ok(())
}

fn check_header(region: &SharedRegion, base: usize, capacity: u32) -> Result<(), RingError> {
    let word = |off| atomic_u32_at(region, base + off).map(|w| w.load(Ordering::Relaxed));
    if word(0)? != MAGIC || word(4)? != VERSION {
        return Err(RingError::Layout("not a capnet socket ring region"));
    }
    if word(8)? != capacity {
        return Err(RingError::Layout("socket ring capacity mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_rings_move_bytes_both_ways() {
        let (mut server, _wake, fds) = SocketRings::create(4096).unwrap();
        let mut client = SocketRings::attach(fds, 4096).unwrap();
        assert_eq!(client.up.write(b"GET /").unwrap(), 5);
        if client.up.signal_wanted() {
            client.wake_peer.ring();
        }
        let mut buf = [0u8; 16];
        assert_eq!(server.up.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"GET /");
        server.down.request_signal();
        client.down.request_signal();
        assert_eq!(server.down.write(b"200").unwrap(), 3);
        assert!(server.down.signal_wanted());
        server.wake_peer.ring();
        assert!(client
            .wake_me
            .wait(Some(std::time::Duration::from_secs(1)))
            .unwrap());
        assert_eq!(client.down.read(&mut buf).unwrap(), 3);
        client.up.close();
        assert!(server.up.eof());
    }

    #[test]
    fn socket_rings_attach_checks_layout() {
        let (_server, _wake, fds) = SocketRings::create(4096).unwrap();
        let dup = |fds: &Vec<std::os::fd::OwnedFd>| {
            fds.iter()
                .map(|f| f.try_clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert!(
            matches!(SocketRings::attach(dup(&fds), 8192), Err(RingError::Io(_))),
            "size"
        );
        let two: Vec<_> = dup(&fds).into_iter().take(2).collect();
        assert!(matches!(
            SocketRings::attach(two, 4096),
            Err(RingError::Layout(_))
        ));
        assert!(matches!(
            SocketRings::attach(dup(&fds), 100),
            Err(RingError::Layout(_))
        ));
        let (_small, _wake, small_fds) = SocketRings::create(8).unwrap();
        assert!(
            SocketRings::attach(small_fds, 8).is_ok(),
            "small rings stay line aligned"
        );
        // Same size, other capacity field: a tampered header is refused.
        let region = SharedRegion::create("t", socket_region_bytes(4096)).unwrap();
        let mut fake = dup(&fds);
        fake[0] = region.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            SocketRings::attach(fake, 4096),
            Err(RingError::Layout(_))
        ));
        assert!(SocketRings::attach(fds, 4096).is_ok());
    }

    #[test]
    fn a_kept_mapping_takes_up_a_reset_set() {
        let (mut server, _wake, fds) = SocketRings::create(4096).unwrap();
        let mut client = SocketRings::attach(fds, 4096).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(client.up.write(b"first").unwrap(), 5);
        assert_eq!(server.down.write(b"answer").unwrap(), 6);
        assert_eq!(server.up.read(&mut buf).unwrap(), 5);
        client.down.close();
        client.up.close();
        let mapping = client.mapping.clone();
        drop(client);
        // Scribbled on while released: the reset puts the header back.
        server.reset().unwrap();
        // netsrv may write before the client took the set up again.
        assert_eq!(server.down.write(b"next").unwrap(), 4);
        let (mut up, mut down) = mapping.rings().unwrap();
        assert_eq!(down.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"next");
        assert_eq!(up.write(b"again").unwrap(), 5);
        assert_eq!(server.up.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"again");
        assert!(!server.up.eof() && !server.down.reader_closed());
    }

    #[test]
    fn a_kept_mapping_refuses_a_region_without_its_header() {
        let (_server, _wake, fds) = SocketRings::create(4096).unwrap();
        let client = SocketRings::attach(fds, 4096).unwrap();
        let region = &client.mapping.region;
        crate::shm::atomic_u32_at(region, 0)
            .unwrap()
            .store(0, crate::sync::Ordering::Relaxed);
        assert!(matches!(client.mapping.rings(), Err(RingError::Layout(_))));
    }
}
