//! A duplex between two real processes: the test binary re-executes itself as the peer.
//!
//! The parent creates the duplex, offers its fds in a handoff table and gives the child a Unix
//! socket (as stdin) and the token; the child redeems the token, attaches side B and echoes
//! every frame back with its bytes reversed, sleeping on its doorbell between frames.
#![cfg(not(loom))]

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use capnet_ring::handoff::read_token;
use capnet_ring::{redeem, ChannelLayout, Duplex, HandoffTable, RingError, RxBuf, Token};

const LAYOUT: ChannelLayout = ChannelLayout {
    buffers: 16,
    buf_size: 2048,
};
const FRAMES: u32 = 300;
const TOKEN_ENV: &str = "CAPNET_RING_TEST_TOKEN";
const PATIENCE: Duration = Duration::from_secs(10);

fn hex(t: &Token) -> String {
    t.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Token {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    Token::from_slice(&bytes).unwrap()
}

/// Next frame, sleeping on the doorbell with the suppression protocol.
fn recv(d: &mut Duplex) -> RxBuf {
    loop {
        if let Some(f) = d.rx.recv().unwrap() {
            return f;
        }
        d.rx.request_signal();
        if d.rx.is_empty() {
            assert!(d.wake_me.wait(Some(PATIENCE)).unwrap(), "peer went quiet");
        }
        d.rx.cancel_signal();
    }
}

/// Sends one frame, sleeping for a returned buffer if all are lent out.
fn send(d: &mut Duplex, payload: &[u8]) -> Result<(), RingError> {
    let mut b = loop {
        if let Some(b) = d.tx.alloc()? {
            break b;
        }
        d.tx.request_signal();
        if !d.tx.has_returns() {
            assert!(
                d.wake_me.wait(Some(PATIENCE)).unwrap(),
                "no buffers came back"
            );
        }
        d.tx.cancel_signal();
    };
    d.tx.buf_mut(&mut b)[..payload.len()].copy_from_slice(payload);
    d.tx.send(b, payload.len() as u32, 0, 0);
    if d.tx.flush()? {
        d.wake_peer.ring();
    }
    Ok(())
}

fn release(d: &mut Duplex, f: RxBuf) {
    d.rx.release(f);
    if d.rx.flush().unwrap() {
        d.wake_peer.ring();
    }
}

/// The peer process: only runs when re-executed by `duplex_between_two_processes`.
#[test]
#[ignore = "runs as the child of duplex_between_two_processes"]
fn child_echo() {
    let Ok(token) = std::env::var(TOKEN_ENV) else {
        return;
    };
    let sock = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let fds = redeem(sock.as_fd(), &unhex(&token), 3).unwrap();
    let mut d = Duplex::attach(fds, LAYOUT).unwrap();
    loop {
        let f = recv(&mut d);
        let mut data = d.rx.data(&f).to_vec();
        release(&mut d, f);
        if data.is_empty() {
            return; // end marker
        }
        data.reverse();
        send(&mut d, &data).unwrap();
    }
}

#[test]
fn duplex_between_two_processes() {
    let (mut a, fds) = Duplex::create("xproc", LAYOUT).unwrap();
    let table = HandoffTable::new();
    let token = table.offer(fds);
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_echo",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TOKEN_ENV, hex(&token))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let got = read_token(ours.as_fd()).unwrap().unwrap();
    assert!(
        table.answer(ours.as_fd(), &got).unwrap(),
        "child redeemed our token"
    );

    for i in 0..FRAMES {
        let payload: Vec<u8> = (0..(i % 1500 + 1)).map(|k| (k ^ i) as u8).collect();
        send(&mut a, &payload).unwrap();
        let f = recv(&mut a);
        let mut back = a.rx.data(&f).to_vec();
        release(&mut a, f);
        back.reverse();
        assert_eq!(back, payload, "frame {i}");
    }
    send(&mut a, &[]).unwrap();

    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "child failed: {out}");
    assert!(out.contains("1 passed"), "the child really ran: {out}");
}
