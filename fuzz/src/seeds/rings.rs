//! Seeds of the ring targets: channels, byte rings, arenas, receive chunks.

use super::*;

pub(super) fn ring_channel() -> Vec<Vec<u8>> {
    // send, flush, recv, release, flush, reclaim, unreturned; then again
    // with a scribbled free-queue slot.
    let mut v = Vec::new();
    for _ in 0..3 {
        v.extend_from_slice(&[1, 40, 1, 0, 0, 0, 2, 3, 4, 5, 6, 7]);
    }
    let mut s = v.clone();
    s.push(0);
    s.extend_from_slice(&64u16.to_le_bytes());
    piece(&mut s, &[0xff; 16]);
    s.extend_from_slice(&[6, 1, 9, 0, 0, 0, 0, 2, 3]);
    vec![v, s]
}

pub(super) fn ring_bytes() -> Vec<Vec<u8>> {
    let op = |end: u8, action: u8| end << 2 | action;
    let mut v = Vec::new();
    piece(&mut v, b""); // the header as netsrv wrote it
    v.push(op(2, 0));
    piece(&mut v, b"from the application");
    v.extend_from_slice(&[op(0, 0), 16, op(0, 1), 255, op(1, 1), 30, op(3, 0), 64]);
    v.extend_from_slice(&[op(2, 2), op(3, 2), op(1, 3), op(3, 0), 8, op(0, 3)]);
    let mut bad = Vec::new();
    piece(&mut bad, b"CNSK\x01\x00\x00\x00\x40\x00\x00\x00");
    bad.push(op(4, 0));
    bad.extend_from_slice(&128u16.to_le_bytes());
    piece(&mut bad, &[0xff; 8]);
    bad.extend_from_slice(&[op(0, 0), 16, op(0, 2)]);
    vec![v, bad]
}

pub(super) fn arena() -> Vec<Vec<u8>> {
    // Two slots handed out, the client takes them up, writes and lists
    // slot 1, netsrv takes the news and answers, the client takes its news.
    let at = |slot: u8, action: u8| slot << 5 | action;
    let mut v = vec![1, 1, at(0, 3), at(1, 3), at(1, 5)];
    piece(&mut v, b"up");
    v.extend_from_slice(&[6, at(1, 4)]);
    piece(&mut v, b"down");
    v.extend_from_slice(&[7, at(0, 2), 1]);
    // The up list scribbled: its first entry names slot 9 of 4, and its
    // tail says one entry is there.
    let mut bad = vec![1, at(0, 3), 0];
    bad.extend_from_slice(&8192u16.to_le_bytes());
    piece(&mut bad, &9u32.to_le_bytes());
    bad.push(0);
    bad.extend_from_slice(&4096u16.to_le_bytes());
    piece(&mut bad, &1u32.to_le_bytes());
    bad.extend_from_slice(&[6, 6, 7]);
    vec![v, bad]
}

pub(super) fn chunks() -> Vec<Vec<u8>> {
    let mut v = vec![0];
    piece(&mut v, b"plain");
    v.extend_from_slice(&[2, 0xc3, 5, 0, 0, 0, 0]);
    let mut marked = (3u32 | 1 << 31).to_le_bytes().to_vec();
    marked.extend_from_slice(b"abc");
    marked.extend_from_slice(&2u32.to_le_bytes());
    marked.extend_from_slice(b"de");
    piece(&mut v, &marked);
    v.extend_from_slice(&[1, 64, 1, 64, 1, 64, 1, 64]);
    vec![v]
}
