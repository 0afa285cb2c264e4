//! Shared memory a peer scribbled: a channel's descriptor queues and buffer
//! pool (`capnet_ring::channel`, over `queue`), a socket's byte rings and
//! their region header (`bytering`), a client's socket arena with its ready
//! lists (`arena`, `ready`), and the marked receive chunks libclient reads
//! from the down ring (`libclient::fuzz_api`).
//!
//! The regions are real memfds mapped twice, as two processes map them;
//! the hostile peer's writes go through the fd, anywhere in the region.

use crate::input::Input;
use capnet_ring::arena::{ArenaLayout, ClientArena, ServerArena, SlotHold};
use capnet_ring::bytering::{heap, socket_region_bytes};
use capnet_ring::{ByteReader, ByteWriter, ChannelLayout, ChannelReceiver, ChannelSender};
use capnet_ring::{RxBuf, ServerEnd, SharedRegion, SocketRings};
use libclient::fuzz_api::{Down, SwitchEnd};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A small pool, so that inputs reach every buffer and every wrap.
pub const LAYOUT: ChannelLayout = ChannelLayout {
    buffers: 4,
    buf_size: 64,
};
/// Byte ring capacity of the socket and chunk targets.
pub const CAPACITY: u32 = 64;

/// `[u16 offset][u16 len][bytes]`: the peer writes anywhere in the region.
fn scribble(input: &mut Input<'_>, file: &File, size: usize) {
    let at = input.u16() as usize % size;
    let bytes = input.piece();
    let bytes = &bytes[..bytes.len().min(size - at)];
    file.write_all_at(bytes, at as u64)
        .expect("write to a memfd");
}

/// Ends a side at its first error, as its owner ends that peer's session.
fn live<T, R, E>(side: &mut Option<T>, f: impl FnOnce(&mut T) -> Result<R, E>) -> Option<R> {
    let r = f(side.as_mut()?);
    match r {
        Ok(v) => Some(v),
        Err(_) => {
            *side = None;
            None
        }
    }
}

/// Both ends of one channel over a region the fuzzer also writes into.
///
/// Input: ops of `[op][...]`.
pub fn ring_channel(data: &[u8]) {
    let size = LAYOUT.region_bytes();
    let a = Arc::new(SharedRegion::create("fuzz-channel", size).expect("memfd"));
    let fd = a.fd().try_clone_to_owned().expect("dup");
    let b = Arc::new(SharedRegion::from_fd(fd, size).expect("second mapping"));
    let file = File::from(a.fd().try_clone_to_owned().expect("dup"));
    let mut tx = Some(ChannelSender::attach(a, 0, LAYOUT).expect("sender"));
    let mut rx = Some(ChannelReceiver::attach(b, 0, LAYOUT).expect("receiver"));
    let mut held: Vec<RxBuf> = Vec::new();
    let mut input = Input::new(data);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 8 {
            0 => scribble(&mut input, &file, size),
            1 => {
                let len = u32::from(input.u8()).min(LAYOUT.buf_size);
                let flags = input.u32();
                live(&mut tx, |tx| {
                    if let Some(mut buf) = tx.alloc()? {
                        tx.buf_mut(&mut buf).fill(op);
                        tx.send(buf, len, flags, u32::from(op));
                    }
                    Ok::<_, capnet_ring::RingError>(())
                });
            }
            2 => {
                live(&mut tx, |tx| tx.flush());
            }
            3 => {
                let got = live(&mut rx, |rx| {
                    let b = rx.recv()?;
                    if let Some(b) = &b {
                        let d = b.desc();
                        assert!(d.len <= LAYOUT.buf_size, "accepted an overlong frame");
                        assert_eq!(rx.data(b).len(), d.len as usize);
                    }
                    Ok::<_, capnet_ring::RingError>(b)
                });
                if let (Some(Some(b)), Some(rx)) = (got, rx.as_mut()) {
                    let len = b.desc().len as usize;
                    let mut b = b;
                    rx.data_mut(&mut b)[..len].fill(op);
                    held.push(b);
                }
            }
            4 => {
                if let Some(rx) = rx.as_mut() {
                    if !held.is_empty() {
                        let b = held.remove(usize::from(op >> 3) % held.len());
                        rx.release(b);
                    }
                }
            }
            5 => {
                live(&mut rx, |rx| rx.flush());
            }
            6 => {
                live(&mut tx, |tx| {
                    let _ = tx.has_returns();
                    let _ = tx.in_flight();
                    tx.reclaim_returned()
                });
            }
            _ => {
                if let Some(tx) = tx.as_mut() {
                    let frames = tx.unreturned_frames();
                    assert!(frames.len() <= LAYOUT.buffers as usize);
                    tx.request_signal();
                }
                if let Some(rx) = rx.as_mut() {
                    let _ = rx.is_empty();
                    rx.request_signal();
                }
            }
        }
    }
}

/// One end of a byte ring; the fuzzer drives the four of a socket.
enum End<'a> {
    W(&'a mut Option<ByteWriter>),
    R(&'a mut Option<ByteReader>),
}

fn byte_op(end: End<'_>, op: u8, input: &mut Input<'_>) {
    match end {
        End::W(w) => match op % 4 {
            0 => {
                let bytes = input.piece();
                if let Some(n) = live(w, |w| w.write(bytes)) {
                    assert!(n <= bytes.len());
                }
            }
            1 => {
                let n = usize::from(input.u8());
                live(w, |w| {
                    let room = w.reserve()?;
                    assert!(room.len() <= CAPACITY as usize);
                    room.fill(op);
                    w.commit(n);
                    Ok::<_, capnet_ring::RingError>(())
                });
            }
            2 => {
                if let Some(n) = live(w, |w| w.space()) {
                    assert!(n <= CAPACITY as usize);
                }
                if let Some(w) = w.as_mut() {
                    let _ = (w.reader_closed(), w.signal_wanted());
                    w.request_signal();
                }
            }
            _ => {
                if let Some(w) = w.as_mut() {
                    if op & 0x80 != 0 {
                        w.set_error(u32::from(op));
                    } else {
                        w.close();
                    }
                }
            }
        },
        End::R(r) => match op % 4 {
            0 => {
                let mut buf = vec![0u8; usize::from(input.u8())];
                if let Some(n) = live(r, |r| r.read(&mut buf)) {
                    assert!(n <= buf.len());
                }
            }
            1 => {
                let n = usize::from(input.u8());
                live(r, |r| {
                    let seen = r.peek()?.len();
                    assert!(seen <= CAPACITY as usize);
                    r.consume(n.min(seen));
                    Ok::<_, capnet_ring::RingError>(())
                });
            }
            2 => {
                if let Some(n) = live(r, |r| r.available()) {
                    assert!(n <= CAPACITY as usize);
                }
                if let Some(r) = r.as_mut() {
                    let _ = (r.eof(), r.writer_finished(), r.error(), r.signal_wanted());
                    r.request_signal();
                }
            }
            _ => {
                if let Some(r) = r.as_mut() {
                    r.close();
                }
            }
        },
    }
}

/// A socket's region as netsrv made it, its header and rings scribbled
/// before and while libclient attaches and both ends read and write.
///
/// Input: `[u16 len][bytes written at offset 0 before attaching]`, then
/// ops of `[op][...]`.
pub fn ring_bytes(data: &[u8]) {
    let mut input = Input::new(data);
    let (server, _wake, fds) = SocketRings::create(CAPACITY).expect("socket rings");
    let size = socket_region_bytes(CAPACITY);
    let file = File::from(fds[0].try_clone().expect("dup"));
    let header = input.piece();
    file.write_all_at(&header[..header.len().min(size)], 0)
        .expect("write to a memfd");
    let Ok(client) = SocketRings::attach(fds, CAPACITY) else {
        return;
    };
    let (mut s_up, mut s_down) = (Some(server.up), Some(server.down));
    let (mut c_up, mut c_down) = (Some(client.up), Some(client.down));
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let end = match (op >> 2) % 5 {
            0 => End::R(&mut s_up),
            1 => End::W(&mut s_down),
            2 => End::W(&mut c_up),
            3 => End::R(&mut c_down),
            _ => {
                scribble(&mut input, &file, size);
                continue;
            }
        };
        byte_op(end, op, &mut input);
    }
}

/// Slots of the arena target.
const ARENA_SLOTS: u32 = 4;

/// A client's socket arena as netsrv made it, scribbled anywhere (ready
/// lists, headers, rings) while both sides hand out slots, write and read
/// their rings and take each other's news. A listed slot is always one of
/// the arena's, and no slot is held by two sockets at once.
///
/// Input: ops of `[op][...]`.
pub fn arena(data: &[u8]) {
    let layout = ArenaLayout::new(ARENA_SLOTS, CAPACITY).expect("layout");
    let (mut server, fds) = ServerArena::create(layout).expect("arena");
    let file = File::from(fds[0].try_clone().expect("dup"));
    let size = layout.bytes();
    let Ok(mut client) = ClientArena::attach(fds, layout) else {
        return;
    };
    // netsrv's sockets by slot; the client's view of the same slots.
    // netsrv's ends by slot, with the client's hold on each (dropped apart:
    // a slot is free once both are gone).
    let mut held: HashMap<u32, ServerEnd> = HashMap::new();
    let mut holds: HashMap<u32, SlotHold> = HashMap::new();
    let mut views: HashMap<u32, (Option<ByteWriter>, Option<ByteReader>)> = HashMap::new();
    let (mut server_news, mut client_news) = (true, true);
    let mut input = Input::new(data);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let slot = u32::from(op >> 5) % ARENA_SLOTS;
        match op % 8 {
            0 => scribble(&mut input, &file, size),
            1 => {
                if let Ok(Some((s, end, hold))) = server.take_slot() {
                    assert!(s < ARENA_SLOTS);
                    let busy = held.contains_key(&s) || holds.contains_key(&s);
                    assert!(!busy, "slot {s} handed out while in use");
                    held.insert(s, end);
                    holds.insert(s, hold);
                }
            }
            2 => {
                match op & 0x10 {
                    0 => held.remove(&slot).map(drop),
                    _ => holds.remove(&slot).map(drop),
                };
            }
            3 => {
                // The client takes up a slot netsrv handed out (or not).
                if let Ok((mapping, _)) = client.slot(slot) {
                    let view = mapping.rings().map(|(u, d)| (Some(u), Some(d)));
                    views.insert(slot, view.unwrap_or((None, None)));
                }
            }
            4 => {
                // netsrv's pump: what the client sent, then an answer; a
                // broken ring ends that socket.
                if let Some(end) = held.get_mut(&slot) {
                    let mut buf = [0u8; CAPACITY as usize];
                    let moved = end.up.read(&mut buf).and_then(|n| {
                        assert!(n <= buf.len());
                        end.down.write(input.piece())
                    });
                    match moved {
                        Ok(n) => {
                            assert!(n <= CAPACITY as usize);
                            end.wake_peer.ring();
                        }
                        Err(_) => {
                            held.remove(&slot);
                        }
                    }
                }
            }
            5 => {
                if let Some((up, down)) = views.get_mut(&slot) {
                    match op & 0x10 {
                        0 => byte_op(End::W(up), op >> 3, &mut input),
                        _ => byte_op(End::R(down), op >> 3, &mut input),
                    }
                }
                if let Ok((_, waker)) = client.slot(slot) {
                    waker.ring();
                }
            }
            6 => {
                if server_news {
                    match server.up.take() {
                        Ok(Some(s)) => assert!(s < ARENA_SLOTS, "listed slot {s}"),
                        Ok(None) => {}
                        // netsrv stops hearing a client that broke its list.
                        Err(_) => server_news = false,
                    }
                }
                let _ = server.wake_me.drain();
            }
            _ => {
                if client_news {
                    match client.down.take() {
                        Ok(Some(s)) => assert!(s < ARENA_SLOTS, "listed slot {s}"),
                        Ok(None) => {}
                        Err(_) => client_news = false,
                    }
                }
                let _ = (client.down.is_empty(), server.free_slots());
            }
        }
    }
}

/// libclient's reader of marked receive chunks (TLS RX offload) over what
/// netsrv writes into the down ring, with the switch position netsrv
/// answers.
///
/// Input: ops of `[op][...]`.
pub fn chunks(data: &[u8]) {
    let mut input = Input::new(data);
    let (mut w, r) = heap(CAPACITY).expect("heap ring");
    let mut down = Down::new(r);
    let mut broken = false;
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 4 {
            0 => {
                let _ = w.write(input.piece());
            }
            1 => {
                let mut buf = vec![0u8; 1 + usize::from(input.u8() % 96)];
                match down.read_some(&mut buf) {
                    Ok(Some((n, _))) => {
                        assert!(!broken, "read after the stream broke");
                        assert!(n > 0 && n <= buf.len());
                        assert!(down.data_read() <= down.consumed());
                    }
                    Ok(None) => assert!(!broken),
                    Err(_) => broken = true,
                }
            }
            2 => down.begin_switch(),
            _ => {
                let end = match op >> 6 {
                    0 => SwitchEnd::Unchanged,
                    1 => SwitchEnd::Unknown,
                    _ => SwitchEnd::Chunks(u64::from(input.u32())),
                };
                if down.end_switch(end).is_err() {
                    broken = true;
                }
                let _ = (down.chunks_from(), down.mid_chunk(), down.switching());
            }
        }
    }
}
