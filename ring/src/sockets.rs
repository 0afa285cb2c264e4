//! Per-socket rings: one region holds a small header, the "up" ring (application to netsrv)
//! and the "down" ring (netsrv to application); two doorbells wake either end.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::bytering::{byte_ring_bytes, check_capacity, ByteReader, ByteWriter, ShmBytes};
use crate::error::RingError;
use crate::platform::{Doorbell, End, SharedRegion};
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

/// netsrv's end: reads what the application sends, writes what it receives.
#[derive(Debug)]
pub struct ServerEnd {
    pub up: ByteReader,
    pub down: ByteWriter,
    pub wake_me: Doorbell,
    pub wake_peer: Doorbell,
    /// The region behind both rings, for its header ([`Self::reset`]).
    region: Arc<SharedRegion>,
}

/// The application's end.
#[derive(Debug)]
pub struct ClientEnd {
    pub up: ByteWriter,
    pub down: ByteReader,
    pub wake_me: Doorbell,
    pub wake_peer: Doorbell,
}

impl ServerEnd {
    /// The rings as [`SocketRings::create`] made them, for another
    /// connection of the client that held them: the region's header
    /// written again, both rings empty and open, this end's doorbell
    /// drained. Only once that client let go of them (it closed both rings
    /// and released the socket); the client's wait end must be drained
    /// too. A client that kept using them anyway reaches only its own next
    /// connection.
    pub fn reset(&mut self) -> Result<(), RingError> {
        write_header(&self.region, self.up.capacity())?;
        self.up.reset();
        self.down.reset();
        self.wake_me.drain();
        Ok(())
    }
}

impl SocketRings {
    /// Creates the rings; returns the server end and, for the client, the fds
    /// `[region, ring_server, wait_client]` (the ring end of the server's doorbell, the wait
    /// end of the client's).
    pub fn create(capacity: u32) -> io::Result<(ServerEnd, Vec<OwnedFd>)> {
        check_capacity(capacity)?;
        let region = Arc::new(SharedRegion::create(
            "capnet-socket",
            socket_region_bytes(capacity),
        )?);
        write_header(&region, capacity)?;
        // Each end waits on its own doorbell and holds only the ring end of the other's.
        let (ring_server, wait_server) = Doorbell::pair()?;
        let (ring_client, wait_client) = Doorbell::pair()?;
        let fds = vec![
            region.fd().try_clone_to_owned()?,
            ring_server.into_fd(),
            wait_client.into_fd(),
        ];
        let end = ServerEnd {
            up: ByteReader::new(ShmBytes::new(region.clone(), UP, capacity)?)?,
            down: ByteWriter::new(ShmBytes::new(region.clone(), down(capacity), capacity)?)?,
            wake_me: wait_server,
            wake_peer: ring_client,
            region,
        };
        Ok((end, fds))
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
        check_header(&region, capacity)?;
        Ok(ClientEnd {
            up: ByteWriter::new(ShmBytes::new(region.clone(), UP, capacity)?)?,
            down: ByteReader::new(ShmBytes::new(region, down(capacity), capacity)?)?,
            wake_me: Doorbell::from_peer_fd(wait_client, End::Wait)?,
            wake_peer: Doorbell::from_peer_fd(ring_server, End::Ring)?,
        })
    }
}

fn write_header(region: &SharedRegion, capacity: u32) -> Result<(), RingError> {
    atomic_u32_at(region, 0)?.store(MAGIC, Ordering::Relaxed);
    atomic_u32_at(region, 4)?.store(VERSION, Ordering::Relaxed);
    atomic_u32_at(region, 8)?.store(capacity, Ordering::Relaxed);
    Ok(())
}

fn check_header(region: &SharedRegion, capacity: u32) -> Result<(), RingError> {
    let word = |off| atomic_u32_at(region, off).map(|w| w.load(Ordering::Relaxed));
    if word(0)? != MAGIC || word(4)? != VERSION {
        return Err(RingError::Layout("not a capnet socket ring region"));
    }
    if word(8)? != capacity {
        return Err(RingError::Layout("socket ring capacity mismatch"));
    }
    Ok(())
}
