//! TLS offload contexts on real `nicdrv --backend sim` processes: this test
//! is the stack of both ports (capnp on `--listen`, frames through the port
//! rings) and the holder of the contexts (it implements `OffloadEvents`).
//!
//! What leaves a TX context's port is checked against records sealed whole
//! by an independent AES-GCM (the aes-gcm crate, nonce and AAD written out
//! here per RFC 5288/8446); what an RX context's port hands up is checked
//! against the plaintext. No assertion depends on timing: "was not sent" is
//! shown by a marker frame sent after it arriving alone (the wire keeps
//! order without faults).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use capnet_ring::{flags, ChannelLayout, Duplex, CONNECT_HANDOFF, CONNECT_RPC};
use capnet_schema::nic_capnp::nic;
use capnet_schema::offload_capnp::{offload_context, offload_events, OffloadKind, TlsCipher};
use capnp::capability::Rc as CapRc;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use nicdrv::counters::Snapshot;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

const WAIT: Duration = Duration::from_secs(15);
/// In every plaintext record: must never be seen on the wire or in a capture.
const SECRET: &[u8] = b"SECRET-PLAINTEXT";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nicdrv-off-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A nicdrv child; SIGTERM and wait on drop.
struct Proc {
    child: Child,
    listen: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, wire: &Path, extra: &[&str]) -> Proc {
        let listen = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&listen);
        let child = Command::new(env!("CARGO_BIN_EXE_nicdrv"))
            .args(["--name", name, "--backend", "sim", "--wire"])
            .arg(wire)
            .arg("--listen")
            .arg(&listen)
            .args(extra)
            .env(
                "CAPNET_LOG",
                std::env::var("CAPNET_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nicdrv");
        let deadline = Instant::now() + WAIT;
        while !listen.exists() {
            assert!(Instant::now() < deadline, "{name} did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Proc { child, listen }
    }

    fn sigterm(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "nicdrv did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            let _ = self.terminate();
        }
    }
}

fn is_word(e: &capnp::Error, word: &str) -> bool {
    let d = e
        .extra
        .strip_prefix("remote exception: ")
        .unwrap_or(&e.extra);
    capnet_schema::errors::SocketError::from_description(d).map(|w| w.word()) == Some(word)
}

#[track_caller]
fn assert_word<T>(r: Result<T, capnp::Error>, word: &str) -> capnp::Error {
    match r {
        Ok(_) => panic!("expected `{word}`, the call succeeded"),
        Err(e) => {
            assert!(is_word(&e, word), "expected `{word}`: {e}");
            e
        }
    }
}

/// What the holder's `OffloadEvents` was told.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Told {
    ResyncRequest(u32),
    Revoked(String),
}

type Heard = Rc<RefCell<Vec<Told>>>;

struct Holder(Heard);

impl offload_events::Server for Holder {
    fn resync_request(
        self: CapRc<Self>,
        params: offload_events::ResyncRequestParams,
        _: offload_events::ResyncRequestResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let r = params.get().map(|p| {
            self.0
                .borrow_mut()
                .push(Told::ResyncRequest(p.get_tcp_seq()))
        });
        std::future::ready(r)
    }

    fn revoked(
        self: CapRc<Self>,
        params: offload_events::RevokedParams,
        _: offload_events::RevokedResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let r = (|| {
            let why = params.get()?.get_reason()?.to_string().unwrap_or_default();
            self.0.borrow_mut().push(Told::Revoked(why));
            Ok(())
        })();
        std::future::ready(r)
    }
}

async fn wait_heard(heard: &Heard, what: impl Fn(&Told) -> bool) -> Told {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = heard.borrow().iter().find(|t| what(t)) {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the holder was not told; it heard {:?}",
            heard.borrow()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The parameters of one context.
#[derive(Clone)]
struct Tls {
    version: u16,
    cipher: TlsCipher,
    key: Vec<u8>,
    /// 12 bytes (other lengths to test refusals).
    iv: Vec<u8>,
    tcp_seq: u32,
    rec_seq: u64,
}

/// One record three ways: framed for the NIC (plaintext, room for the
/// tag), sealed (what the wire carries), opened (what an RX context hands
/// up: plaintext where the ciphertext was, the tag as received).
struct Rec {
    framed: Vec<u8>,
    sealed: Vec<u8>,
    opened: Vec<u8>,
}

impl Tls {
    fn new(version: u16, key_len: usize, tcp_seq: u32, rec_seq: u64) -> Tls {
        Tls {
            version,
            cipher: match key_len {
                16 => TlsCipher::Aes128Gcm,
                _ => TlsCipher::Aes256Gcm,
            },
            key: (0..key_len as u8)
                .map(|i| i.wrapping_mul(37) ^ 0x5a)
                .collect(),
            iv: (0xa0..0xac).collect(),
            tcp_seq,
            rec_seq,
        }
    }

    /// Record number `n` (absolute) of content type `ty` holding `plain`.
    fn record(&self, n: u64, ty: u8, plain: &[u8]) -> Rec {
        let tls12 = self.version == 0x0303;
        let seq = n.to_be_bytes();
        // RFC 8446 5.3 (1.3) and RFC 5288 3 with the explicit nonce as
        // rustls derives it (1.2): both are iv XOR (0^4 || seq).
        let mut nonce: [u8; 12] = self.iv.clone().try_into().unwrap();
        for (b, s) in nonce[4..].iter_mut().zip(seq) {
            *b ^= s;
        }
        let (outer, inner) = if tls12 {
            (ty, plain.to_vec())
        } else {
            let mut v = plain.to_vec();
            v.push(ty);
            (23, v)
        };
        let explicit = if tls12 { 8 } else { 0 };
        let body_len = explicit + inner.len() + 16;
        let mut framed = vec![outer, 3, 3];
        framed.extend_from_slice(&(body_len as u16).to_be_bytes());
        if tls12 {
            framed.extend_from_slice(&nonce[4..]);
        }
        framed.extend_from_slice(&inner);
        framed.extend_from_slice(&[0u8; 16]);
        let aad: Vec<u8> = if tls12 {
            let mut a = seq.to_vec();
            a.extend_from_slice(&[ty, 3, 3]);
            a.extend_from_slice(&(inner.len() as u16).to_be_bytes());
            a
        } else {
            framed[..5].to_vec()
        };
        let ct = 5 + explicit;
        let mut body = inner.clone();
        let tag = match self.key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
            _ => aes_gcm::Aes256Gcm::new_from_slice(&self.key)
                .unwrap()
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut body),
        }
        .unwrap();
        let mut sealed = framed.clone();
        sealed[ct..ct + body.len()].copy_from_slice(&body);
        let end = sealed.len();
        sealed[end - 16..].copy_from_slice(&tag);
        let mut opened = framed.clone();
        opened[end - 16..].copy_from_slice(&tag);
        Rec {
            framed,
            sealed,
            opened,
        }
    }

    /// Plaintext of `len` bytes with the secret in it.
    fn plain(i: usize, len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = format!("record {i} ")
            .into_bytes()
            .into_iter()
            .chain(SECRET.iter().copied())
            .cycle()
            .take(len.max(SECRET.len() + 10))
            .collect();
        p.truncate(len.max(SECRET.len() + 10));
        p
    }
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// Ethernet + IPv4 + TCP. Checksums: filled when `csum`, else left zero.
fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload: &[u8],
    csum: bool,
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let tcp_len = 20 + payload.len();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&s.ip().octets());
    ip[16..20].copy_from_slice(&d.ip().octets());
    f.extend_from_slice(&ip);
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = tcp_flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&t);
    f.extend_from_slice(payload);
    if csum {
        capnet_wire::csum::fill_tx(&mut f).unwrap();
    }
    f
}

/// The TCP payload of a frame built by [`tcp_frame`] (no options).
fn payload(f: &[u8]) -> &[u8] {
    &f[14 + 20 + 20..]
}

fn tcp_seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14 + 20 + 4..14 + 20 + 8].try_into().unwrap())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One capnp connection to a port.
struct Conn {
    nic: nic::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    fn open(p: &Proc) -> Conn {
        let mut s = UnixStream::connect(&p.listen).unwrap();
        s.write_all(&[CONNECT_RPC]).unwrap();
        s.set_nonblocking(true).unwrap();
        let (r, w) = tokio::net::UnixStream::from_std(s).unwrap().into_split();
        let net = twoparty::VatNetwork::new(
            r.compat(),
            w.compat_write(),
            Side::Client,
            Default::default(),
        );
        let mut sys = RpcSystem::new(Box::new(net), None);
        let nic: nic::Client = sys.bootstrap(Side::Server);
        let task = tokio::task::spawn_local(async move {
            let _ = sys.await;
        });
        Conn { nic, task }
    }

    fn close(self) {
        self.task.abort();
    }

    async fn counters(&self) -> Snapshot {
        let r = self.nic.counters_request().send().promise.await.unwrap();
        nicdrv::service::read_counters(r.get().unwrap().get_counters().unwrap())
    }

    async fn wait_link(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.nic.info_request().send().promise.await.unwrap();
            if r.get().unwrap().get_info().unwrap().get_link_up() {
                return;
            }
            assert!(Instant::now() < deadline, "link never came up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The kinds `info` lists (`PortInfo.offloads`).
    async fn offered(&self) -> Vec<OffloadKind> {
        let r = self.nic.info_request().send().promise.await.unwrap();
        let i = r.get().unwrap().get_info().unwrap();
        i.get_offloads()
            .unwrap()
            .iter()
            .map(|k| k.unwrap())
            .collect()
    }

    async fn try_open_rings(&self, p: &Proc) -> Result<(Duplex, OwnedFd), capnp::Error> {
        let r = self.nic.open_rings_request().send().promise.await?;
        let g = r.get()?.get_grant()?;
        let token = capnet_ring::Token::from_slice(g.get_token()?).expect("16-byte token");
        let layout = ChannelLayout {
            buffers: g.get_buffer_count(),
            buf_size: g.get_buffer_size(),
        };
        let mut h = UnixStream::connect(&p.listen).unwrap();
        h.write_all(&[CONNECT_HANDOFF]).unwrap();
        let fds = capnet_ring::redeem(h.as_fd(), &token, 3).expect("redeem");
        let region = fds[0].try_clone().unwrap();
        Ok((Duplex::attach(fds, layout).expect("attach"), region))
    }

    async fn open_rings(&self, p: &Proc) -> Duplex {
        self.try_open_rings(p).await.expect("openRings").0
    }

    /// `offload` of a TLS kind; the context and its info's id.
    async fn offload(
        &self,
        kind: OffloadKind,
        local: &str,
        remote: &str,
        tls: &Tls,
        heard: &Heard,
    ) -> Result<(offload_context::Client, u32), capnp::Error> {
        let mut req = self.nic.offload_request();
        {
            let mut p = req.get();
            let mut q = p.reborrow().init_request();
            q.set_kind(kind);
            capnet_schema::offload::write_tcp_flow(
                q.reborrow().init_flow().init_tcp(),
                sa(local),
                sa(remote),
                0,
            );
            let mut t = q.get_params().init_tls();
            t.set_version(tls.version);
            t.set_cipher(tls.cipher);
            t.set_key(&tls.key);
            t.set_iv(&tls.iv);
            t.set_tcp_seq(tls.tcp_seq);
            t.set_record_seq(tls.rec_seq);
            p.set_events(capnp_rpc::new_client(Holder(heard.clone())));
        }
        let r = req.send().promise.await?;
        let r = r.get()?;
        let info = r.get_info()?;
        Ok((r.get_context()?, info.get_id()))
    }

    /// `offloadContexts`: (id, state) of each.
    async fn contexts(&self) -> Vec<(u32, String)> {
        let r = self
            .nic
            .offload_contexts_request()
            .send()
            .promise
            .await
            .unwrap();
        r.get()
            .unwrap()
            .get_contexts()
            .unwrap()
            .iter()
            .map(|c| (c.get_id(), c.get_state().unwrap().to_string().unwrap()))
            .collect()
    }
}

/// (records, bytes, resyncRequests, resyncs, authFailures, dropped) of `info`.
async fn ctx_info(c: &offload_context::Client) -> Result<[u64; 6], capnp::Error> {
    let r = c.info_request().send().promise.await?;
    let i = r.get()?.get_info()?;
    assert_eq!(i.get_state()?.to_str().unwrap(), "active");
    Ok([
        i.get_records(),
        i.get_bytes(),
        i.get_resync_requests(),
        i.get_resyncs(),
        i.get_auth_failures(),
        i.get_dropped(),
    ])
}

/// Sends frames from the stack side: (frame, flags, context).
async fn send(d: &mut Duplex, frames: &[(Vec<u8>, u32, u32)]) {
    for (f, fl, ctx) in frames {
        let deadline = Instant::now() + WAIT;
        let mut b = loop {
            if let Some(b) = d.tx.alloc().unwrap() {
                break b;
            }
            assert!(Instant::now() < deadline, "no TX buffer came back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        d.tx.buf_mut(&mut b)[..f.len()].copy_from_slice(f);
        d.tx.send(b, f.len() as u32, *fl, *ctx);
        if d.tx.flush().unwrap() {
            d.wake_peer.ring();
        }
    }
}

/// A received frame with its descriptor's flags and context.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    frame: Vec<u8>,
    flags: u32,
    context: u32,
}

/// Receives exactly `n` frames (panics after [`WAIT`]).
async fn recv(d: &mut Duplex, n: usize) -> Vec<Got> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} frames came: {out:?}",
            out.len()
        );
        while let Some(b) = d.rx.recv().unwrap() {
            let desc = b.desc();
            out.push(Got {
                frame: d.rx.data(&b).to_vec(),
                flags: desc.flags,
                context: desc.context,
            });
            d.rx.release(b);
        }
        if d.rx.flush().unwrap() {
            d.wake_peer.ring();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

/// A frame of an unrelated flow; when it arrives, every frame sent before
/// it has arrived or was dropped.
fn marker(n: u32) -> (Vec<u8>, u32, u32) {
    (
        tcp_frame(
            sa("10.0.0.1:7"),
            sa("10.0.0.2:7"),
            n,
            0,
            ACK | PSH,
            format!("marker {n}").as_bytes(),
            true,
        ),
        0,
        0,
    )
}

/// Sends `frames`, then a marker, and checks that only the marker arrives.
async fn assert_dropped(
    from: &mut Duplex,
    to: &mut Duplex,
    frames: &[(Vec<u8>, u32, u32)],
    n: u32,
) {
    let mut all = frames.to_vec();
    all.push(marker(n));
    send(from, &all).await;
    let got = recv(to, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].frame, marker(n).0, "a dropped frame arrived");
}

fn local_test(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

#[test]
fn offload_refused_without_the_feature_or_with_bad_parameters() {
    let dir = tmpdir("refused");
    let wire = dir.join("wire.sock");
    let a = Proc::spawn(&dir, "a", &wire, &["--tls-offload"]);
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    local_test(async {
        let (ca, cb) = (Conn::open(&a), Conn::open(&b));
        assert_eq!(ca.offered().await, [OffloadKind::TlsTx, OffloadKind::TlsRx]);
        assert_eq!(cb.offered().await, []);
        let heard = Heard::default();
        let good = Tls::new(0x0304, 16, 1000, 0);
        let (l, r) = ("10.0.0.1:40000", "10.0.0.2:443");
        let tx = OffloadKind::TlsTx;

        // A port without the feature says so for either kind, and a port
        // with TLS for every kind it does not list.
        let _rb = cb.open_rings(&b).await;
        for kind in [OffloadKind::TlsTx, OffloadKind::TlsRx] {
            assert_word(cb.offload(kind, l, r, &good, &heard).await, "unsupported");
        }
        for kind in capnet_schema::offload::KINDS {
            if !matches!(kind, OffloadKind::TlsTx | OffloadKind::TlsRx) {
                let e = assert_word(ca.offload(kind, l, r, &good, &heard).await, "unsupported");
                let name = capnet_schema::offload::kind_name(kind);
                assert!(
                    e.extra.contains(&format!("offers no {name} offload")),
                    "{e}"
                );
            }
        }
        // A context lives in a ring session.
        assert_word(ca.offload(tx, l, r, &good, &heard).await, "busy");
        let _ra = ca.open_rings(&a).await;

        let bad_key = Tls {
            key: vec![1; 15],
            ..good.clone()
        };
        let e = assert_word(ca.offload(tx, l, r, &bad_key, &heard).await, "invalid");
        assert!(e.extra.contains("15 bytes"), "{e}");
        let key_of_other_cipher = Tls {
            key: vec![1; 32],
            ..good.clone()
        };
        assert_word(
            ca.offload(tx, l, r, &key_of_other_cipher, &heard).await,
            "invalid",
        );
        let short_iv = Tls {
            iv: vec![0; 11],
            ..good.clone()
        };
        assert_word(ca.offload(tx, l, r, &short_iv, &heard).await, "invalid");
        let old = Tls {
            version: 0x0302,
            ..good.clone()
        };
        assert_word(ca.offload(tx, l, r, &old, &heard).await, "unsupported");
        assert_word(
            ca.offload(tx, l, "[fd00::2]:443", &good, &heard).await,
            "invalid",
        );
        assert_word(
            ca.offload(tx, "10.0.0.1:0", r, &good, &heard).await,
            "invalid",
        );

        // One context per flow and kind.
        let (_c1, id1) = ca.offload(tx, l, r, &good, &heard).await.unwrap();
        assert_word(ca.offload(tx, l, r, &good, &heard).await, "invalid");
        let (_c2, id2) = ca
            .offload(OffloadKind::TlsRx, l, r, &good, &heard)
            .await
            .unwrap();
        let (_c3, id3) = ca
            .offload(tx, l, "10.0.0.2:444", &good, &heard)
            .await
            .unwrap();
        assert!(id1 != 0 && id1 < id2 && id2 < id3, "{id1} {id2} {id3}");
        assert_eq!(
            ca.contexts().await,
            vec![
                (id1, "active".to_string()),
                (id2, "active".to_string()),
                (id3, "active".to_string())
            ]
        );
        let s = ca.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (3, 0));
        assert!(heard.borrow().is_empty());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tx_context_seals_what_leaves() {
    let dir = tmpdir("tx");
    let wire = dir.join("wire.sock");
    let pcap = dir.join("a.pcap");
    let mut a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &["--tls-offload", "--pcap", pcap.to_str().unwrap()],
    );
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    let (local, remote) = (sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
    // TLS 1.2 with AES-256, starting just before the wrap of the sequence space.
    let tls = Tls::new(0x0303, 32, u32::MAX - 1500, 5);
    let recs: Vec<Rec> = [(23u8, 100usize), (23, 1000), (21, 2), (23, 600)]
        .iter()
        .enumerate()
        .map(|(i, (ty, len))| tls.record(tls.rec_seq + i as u64, *ty, &Tls::plain(i, *len)))
        .collect();
    let framed: Vec<u8> = recs.iter().flat_map(|r| r.framed.clone()).collect();
    let sealed: Vec<u8> = recs.iter().flat_map(|r| r.sealed.clone()).collect();
    local_test(async {
        let (ca, cb) = (Conn::open(&a), Conn::open(&b));
        ca.wait_link().await;
        cb.wait_link().await;
        let mut ra = ca.open_rings(&a).await;
        let mut rb = cb.open_rings(&b).await;
        let heard = Heard::default();
        let (ctx, id) = ca
            .offload(
                OffloadKind::TlsTx,
                "10.0.0.1:40000",
                "10.0.0.2:443",
                &tls,
                &heard,
            )
            .await
            .unwrap();

        // The framed stream in 700-byte segments; checksums left to the NIC
        // (asked for or not: a sealed frame always gets them).
        let segs: Vec<(u32, std::ops::Range<usize>)> = (0..framed.len())
            .step_by(700)
            .map(|o| {
                (
                    tls.tcp_seq.wrapping_add(o as u32),
                    o..(o + 700).min(framed.len()),
                )
            })
            .collect();
        let tagged = |i: usize| {
            let (seq, r) = &segs[i];
            let csum = if i & 1 == 0 { flags::TX_CSUM } else { 0 };
            (
                tcp_frame(local, remote, *seq, 1, ACK | PSH, &framed[r.clone()], false),
                flags::OFFLOAD_TX | csum,
                id,
            )
        };
        let frames: Vec<_> = (0..segs.len()).map(tagged).collect();
        send(&mut ra, &frames).await;
        let got = recv(&mut rb, segs.len()).await;
        for (i, g) in got.iter().enumerate() {
            assert_eq!(
                g.flags,
                flags::CSUM_VERIFIED,
                "segment {i}: checksums filled"
            );
            assert_eq!(tcp_seq_of(&g.frame), segs[i].0);
            assert_eq!(
                payload(&g.frame),
                &sealed[segs[i].1.clone()],
                "segment {i} sealed"
            );
        }
        // A retransmission leaves byte-identical.
        send(&mut ra, &frames[1..2]).await;
        let again = recv(&mut rb, 1).await;
        assert_eq!(again[0].frame, got[1].frame);

        // A segment beyond what was sent (a gap): dropped and counted.
        let end = tls.tcp_seq.wrapping_add(framed.len() as u32);
        let next = tls.record(tls.rec_seq + 4, 23, &Tls::plain(4, 50));
        let gap = tcp_frame(
            local,
            remote,
            end.wrapping_add(10),
            1,
            ACK,
            &next.framed,
            true,
        );
        assert_dropped(&mut ra, &mut rb, &[(gap.clone(), flags::OFFLOAD_TX, id)], 1).await;
        // A tagged frame naming no context: dropped.
        assert_dropped(
            &mut ra,
            &mut rb,
            &[(gap.clone(), flags::OFFLOAD_TX, id + 100)],
            2,
        )
        .await;
        // A frame of another flow naming the context: dropped.
        let other = tcp_frame(local, sa("10.0.0.2:444"), end, 1, ACK, &next.framed, true);
        assert_dropped(&mut ra, &mut rb, &[(other, flags::OFFLOAD_TX, id)], 3).await;
        // A pure ACK has nothing to seal: it leaves, whatever it names.
        let pure = tcp_frame(local, remote, end, 1, ACK, b"", false);
        send(
            &mut ra,
            &[(pure.clone(), flags::OFFLOAD_TX | flags::TX_CSUM, id + 100)],
        )
        .await;
        let p = recv(&mut rb, 1).await;
        assert_eq!(p[0].flags, flags::CSUM_VERIFIED);
        assert_eq!(payload(&p[0].frame), b"");
        // The next record, in order, is sealed.
        let in_order = tcp_frame(local, remote, end, 1, ACK | PSH, &next.framed, false);
        send(&mut ra, &[(in_order, flags::OFFLOAD_TX, id)]).await;
        assert_eq!(payload(&recv(&mut rb, 1).await[0].frame), &next.sealed[..]);

        let s = ca.counters().await;
        let k = s.offload.get(OffloadKind::TlsTx);
        assert_eq!((k.records, s.offload_tx_dropped), (5, 3));
        let total = (framed.len() + next.framed.len()) as u64;
        // records, bytes, -, -, -, dropped (the unknown id is nobody's).
        assert_eq!(ctx_info(&ctx).await.unwrap(), [5, total, 0, 0, 0, 2]);

        // The peer acknowledges everything: the records are forgotten, and
        // a late retransmission of them can no longer leave.
        let acked = tcp_frame(
            remote,
            local,
            1,
            end.wrapping_add(next.framed.len() as u32),
            ACK,
            b"",
            true,
        );
        send(&mut rb, &[(acked.clone(), 0, 0)]).await;
        assert_eq!(recv(&mut ra, 1).await[0].frame, acked);
        assert_dropped(&mut ra, &mut rb, &frames[..1], 4).await;
        assert_eq!(ca.counters().await.offload_tx_dropped, 4);

        ctx.release_request().send().promise.await.unwrap();
        // Frames naming a released context are dropped.
        assert_dropped(&mut ra, &mut rb, &frames[..1], 5).await;
        let s = ca.counters().await;
        assert_eq!((s.offload_released, s.offload_tx_dropped), (1, 5));
        // No plaintext ever reached B.
        let all = [got, again, p].concat();
        assert!(all.iter().all(|g| !contains(&g.frame, SECRET)));
    });
    // Nor A's capture of what it sent (recorded after sealing).
    assert!(a.terminate().success());
    let (_, captured) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
    assert!(captured.len() >= 8, "{} frames captured", captured.len());
    assert!(captured.iter().all(|r| !contains(&r.data, SECRET)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rx_context_opens_records_and_resyncs() {
    let dir = tmpdir("rx");
    let wire = dir.join("wire.sock");
    let pcap = dir.join("a.pcap");
    let mut a = Proc::spawn(
        &dir,
        "a",
        &wire,
        &["--tls-offload", "--pcap", pcap.to_str().unwrap()],
    );
    let b = Proc::spawn(&dir, "b", &wire, &[]);
    let (local, remote) = (sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
    let tls = Tls::new(0x0304, 16, 7000, 0);
    let recs: Vec<Rec> = [300usize, 250, 200, 400, 150, 350]
        .iter()
        .enumerate()
        .map(|(i, len)| tls.record(i as u64, 23, &Tls::plain(i, *len)))
        .collect();
    // Where each record starts in TCP sequence space.
    let mut starts = vec![tls.tcp_seq];
    for r in &recs {
        starts.push(starts.last().unwrap().wrapping_add(r.sealed.len() as u32));
    }
    // The peer's frames (B's stack sends them, checksums by B's NIC).
    let seg = |seq: u32, bytes: &[u8]| {
        (
            tcp_frame(remote, local, seq, 1, ACK | PSH, bytes, false),
            flags::TX_CSUM,
            0u32,
        )
    };
    local_test(async {
        let (ca, cb) = (Conn::open(&a), Conn::open(&b));
        ca.wait_link().await;
        cb.wait_link().await;
        let mut ra = ca.open_rings(&a).await;
        let mut rb = cb.open_rings(&b).await;
        let heard = Heard::default();
        let (ctx, id) = ca
            .offload(
                OffloadKind::TlsRx,
                "10.0.0.1:40000",
                "10.0.0.2:443",
                &tls,
                &heard,
            )
            .await
            .unwrap();
        let decrypted = flags::CSUM_VERIFIED | flags::OFFLOADED;

        // Record 0 in three pieces, record 1 whole: opened and marked.
        let r0 = &recs[0].sealed;
        let frames = vec![
            seg(starts[0], &r0[..100]),
            seg(starts[0] + 100, &r0[100..250]),
            seg(starts[0] + 250, &r0[250..]),
            seg(starts[1], &recs[1].sealed),
        ];
        send(&mut rb, &frames).await;
        let got = recv(&mut ra, 4).await;
        let opened: Vec<u8> = [recs[0].opened.clone(), recs[1].opened.clone()].concat();
        let mut at = 0;
        for g in &got {
            assert_eq!((g.flags, g.context), (decrypted, id), "{g:?}");
            let p = payload(&g.frame);
            assert_eq!(p, &opened[at..at + p.len()]);
            at += p.len();
        }
        assert!(contains(&got[3].frame, SECRET));

        // Record 2 is lost. Record 3 comes up as it came, and the holder is
        // asked whether a record starts where it does.
        send(&mut rb, &[seg(starts[3], &recs[3].sealed)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!((g[0].flags, g[0].context), (flags::CSUM_VERIFIED, 0));
        assert_eq!(payload(&g[0].frame), &recs[3].sealed[..]);
        let told = wait_heard(&heard, |t| matches!(t, Told::ResyncRequest(_))).await;
        assert_eq!(told, Told::ResyncRequest(starts[3]));
        // A position the NIC did not ask about is refused.
        let mut bad = ctx.resync_request();
        bad.get().set_tcp_seq(starts[3] + 1);
        bad.get().set_record_seq(3);
        assert_word(bad.send().promise.await, "invalid");
        let mut req = ctx.resync_request();
        req.get().set_tcp_seq(starts[3]);
        req.get().set_record_seq(3);
        req.send().promise.await.unwrap();

        // A copy of record 4 with a broken checksum passes untouched and
        // does not move the engine: the good record 4 after it is opened.
        let mut broken = tcp_frame(
            remote,
            local,
            starts[4],
            1,
            ACK | PSH,
            &recs[4].sealed,
            true,
        );
        let n = broken.len();
        broken[n - 1] ^= 1;
        send(&mut rb, &[(broken.clone(), 0, 0)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!((g[0].flags, g[0].frame.clone()), (flags::CSUM_BAD, broken));
        send(
            &mut rb,
            &[
                seg(starts[4], &recs[4].sealed),
                seg(starts[5], &recs[5].sealed),
            ],
        )
        .await;
        let got = recv(&mut ra, 2).await;
        for (g, r) in got.iter().zip(&recs[4..]) {
            assert_eq!((g.flags, g.context), (decrypted, id));
            assert_eq!(payload(&g.frame), &r.opened[..]);
        }

        let s = ca.counters().await.offload.get(OffloadKind::TlsRx);
        assert_eq!((s.records, s.resync_requests, s.auth_failures), (4, 1, 0));
        let [records, bytes, requests, resyncs, auth, dropped] = ctx_info(&ctx).await.unwrap();
        assert_eq!((records, requests, resyncs, auth, dropped), (4, 1, 1, 0, 0));
        let marked: usize = [0, 1, 4, 5].iter().map(|i| recs[*i].sealed.len()).sum();
        assert_eq!(bytes, marked as u64);
        // A tampered record fails authentication and comes up untouched.
        let extra = tls.record(6, 23, &Tls::plain(6, 80));
        let mut tampered = extra.sealed.clone();
        tampered[10] ^= 0x40;
        send(&mut rb, &[seg(starts[6], &tampered)]).await;
        let g = recv(&mut ra, 1).await;
        assert_eq!(g[0].flags, flags::CSUM_VERIFIED);
        assert_eq!(payload(&g[0].frame), &tampered[..]);
        let k = ca.counters().await.offload.get(OffloadKind::TlsRx);
        assert_eq!(k.auth_failures, 1);
        assert_eq!(
            heard.borrow().len(),
            1,
            "one request per candidate: {:?}",
            heard.borrow()
        );
    });
    // The capture holds the frames as they came from the wire (sealed).
    assert!(a.terminate().success());
    let (_, captured) = nicdrv::pcap::parse(&std::fs::read(&pcap).unwrap()).unwrap();
    assert!(captured.len() >= 8, "{} frames captured", captured.len());
    assert!(captured.iter().all(|r| !contains(&r.data, SECRET)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes an impossible producer index into the stack's TX active queue
/// (as `tests/wire.rs` does): the driver ends the ring session.
fn corrupt_stack_tx_queue(region: &OwnedFd, d: &Duplex) {
    let layout = d.tx.layout();
    let len = Duplex::region_bytes(layout);
    let at = 128 + layout.region_bytes() + capnet_ring::queue::queue_bytes(layout.buffers);
    // SAFETY: maps the shared region we were given, writes one aligned u32 inside it, unmaps.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            region.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let tail = p
            .cast::<u8>()
            .add(at)
            .cast::<std::sync::atomic::AtomicU32>();
        (*tail).store(layout.buffers * 4 + 7, std::sync::atomic::Ordering::SeqCst);
        libc::munmap(p, len);
    }
}

async fn wait_contexts(c: &Conn, want: &[(u32, &str)]) {
    let want: Vec<(u32, String)> = want.iter().map(|(i, s)| (*i, s.to_string())).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = c.contexts().await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "contexts {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn context_lifecycle_release_drop_revoke() {
    let dir = tmpdir("life");
    let wire = dir.join("wire.sock");
    let mut a = Proc::spawn(&dir, "a", &wire, &["--tls-offload"]);
    let tls = Tls::new(0x0304, 16, 1, 0);
    let (l, r) = ("10.0.0.1:40000", "10.0.0.2:443");
    let (tx, rx) = (OffloadKind::TlsTx, OffloadKind::TlsRx);
    local_test(async {
        // conn1 is the stack (it holds the ring session); conn2 the holder.
        let c1 = Conn::open(&a);
        let c2 = Conn::open(&a);
        let _rings = c1.open_rings(&a).await;
        let heard = Heard::default();

        // release(): then every call answers `revoked`, once counted.
        let (ctx, id1) = c2.offload(tx, l, r, &tls, &heard).await.unwrap();
        wait_contexts(&c2, &[(id1, "active")]).await;
        let mut req = ctx.resync_request();
        req.get().set_tcp_seq(1);
        assert_word(req.send().promise.await, "invalid"); // not an RX context
        ctx.release_request().send().promise.await.unwrap();
        assert_word(ctx_info(&ctx).await, "revoked");
        assert_word(ctx.release_request().send().promise.await, "revoked");
        assert_word(ctx.resync_reject_request().send().promise.await, "revoked");
        assert!(c2.contexts().await.is_empty());
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (1, 1));
        drop(ctx);

        // Dropping the capability deletes the context.
        let (ctx, id2) = c2.offload(rx, l, r, &tls, &heard).await.unwrap();
        assert!(id2 > id1);
        wait_contexts(&c2, &[(id2, "active")]).await;
        drop(ctx);
        wait_contexts(&c2, &[]).await;
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (2, 2));
        // The same flow and kind can have a context again.
        let (ctx, id3) = c2.offload(rx, l, r, &tls, &heard).await.unwrap();
        assert!(id3 > id2, "ids are never reused");

        // The ring session ends (the stack's connection closes): the driver
        // revokes the context and tells the holder once.
        c1.close();
        let told = wait_heard(&heard, |t| matches!(t, Told::Revoked(_))).await;
        assert_eq!(
            told,
            Told::Revoked("the ring session with the stack ended".into())
        );
        let e = assert_word(ctx_info(&ctx).await, "revoked");
        assert!(e.extra.contains("ring session"), "{e}");
        assert_word(ctx.release_request().send().promise.await, "revoked");
        // Listed as revoked until the holder lets go; deleted once.
        wait_contexts(&c2, &[(id3, "revoked")]).await;
        assert_eq!(c2.counters().await.offload_released, 3);
        drop(ctx);
        wait_contexts(&c2, &[]).await;
        assert_eq!(c2.counters().await.offload_released, 3);
        assert_eq!(heard.borrow().len(), 1, "{:?}", heard.borrow());

        // A bad descriptor ends the session: revoked too.
        let (rings, region) = loop {
            match c2.try_open_rings(&a).await {
                Ok(x) => break x,
                Err(e) => assert!(is_word(&e, "busy"), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let heard2 = Heard::default();
        let (ctx4, id4) = c2.offload(tx, l, r, &tls, &heard2).await.unwrap();
        corrupt_stack_tx_queue(&region, &rings);
        rings.wake_peer.ring();
        let told = wait_heard(&heard2, |t| matches!(t, Told::Revoked(_))).await;
        assert!(
            matches!(&told, Told::Revoked(w) if w.contains("bad descriptor")),
            "{told:?}"
        );
        wait_contexts(&c2, &[(id4, "revoked")]).await;
        drop(ctx4);
        wait_contexts(&c2, &[]).await;

        // The driver shuts down: the holder hears it before it is gone.
        let c3 = Conn::open(&a);
        let _rings = loop {
            match c3.try_open_rings(&a).await {
                Ok(x) => break x,
                Err(e) => assert!(is_word(&e, "busy"), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let heard3 = Heard::default();
        let (_ctx5, _) = c2.offload(tx, l, r, &tls, &heard3).await.unwrap();
        let s = c2.counters().await;
        assert_eq!((s.offload_contexts, s.offload_released), (5, 4));
        a.sigterm();
        let told = wait_heard(&heard3, |t| matches!(t, Told::Revoked(_))).await;
        assert_eq!(told, Told::Revoked("the driver is shutting down".into()));
    });
    let st = a.terminate();
    assert!(st.success(), "{st}");
    let _ = std::fs::remove_dir_all(&dir);
}
