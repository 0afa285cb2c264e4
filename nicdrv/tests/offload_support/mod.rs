//! The harness of the TLS offload tests on real `nicdrv --backend sim`
//! processes: the test is the stack of both ports (capnp on `--listen`,
//! frames through the port rings) and the holder of the contexts (it
//! implements `OffloadEvents`). `records` builds the records an independent
//! AES-GCM seals; `frames` the TCP frames that carry them.
//!
//! No assertion depends on timing: "was not sent" is shown by a marker
//! frame sent after it arriving alone (the wire keeps order without faults).
#![allow(dead_code)]

pub mod frames;
pub mod records;

#[allow(unused_imports)] // each test binary uses its part
pub use crate::common::conn::{linked, local_test, Conn};
pub use crate::common::{tmpdir, Proc, WAIT};

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

use capnet_ring::Duplex;
use capnet_schema::offload_capnp::{offload_context, offload_events, OffloadKind};
use capnp::capability::Rc as CapRc;
use frames::{tcp_frame, ACK, PSH};
use records::Tls;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub fn is_word(e: &capnp::Error, word: &str) -> bool {
    let d = e
        .extra
        .strip_prefix("remote exception: ")
        .unwrap_or(&e.extra);
    capnet_schema::errors::SocketError::from_description(d).map(|w| w.word()) == Some(word)
}

#[track_caller]
pub fn assert_word<T>(r: Result<T, capnp::Error>, word: &str) -> capnp::Error {
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
pub enum Told {
    ResyncRequest(u32),
    Revoked(String),
}

pub type Heard = Rc<RefCell<Vec<Told>>>;

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

pub async fn wait_heard(heard: &Heard, what: impl Fn(&Told) -> bool) -> Told {
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

/// What the offload tests ask of a port besides the common calls.
pub trait Offloads {
    async fn offered(&self) -> Vec<OffloadKind>;
    async fn offload(
        &self,
        kind: OffloadKind,
        local: &str,
        remote: &str,
        tls: &Tls,
        heard: &Heard,
    ) -> Result<(offload_context::Client, u32), capnp::Error>;
    async fn offload_request(
        &self,
        build: impl FnOnce(capnet_schema::offload_capnp::offload_request::Builder<'_>),
        heard: &Heard,
    ) -> Result<(offload_context::Client, u32), capnp::Error>;
    async fn contexts(&self) -> Vec<(u32, String)>;
}

impl Offloads for Conn {
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

    /// `offload` of any request `build` writes; the context and its id.
    async fn offload_request(
        &self,
        build: impl FnOnce(capnet_schema::offload_capnp::offload_request::Builder<'_>),
        heard: &Heard,
    ) -> Result<(offload_context::Client, u32), capnp::Error> {
        let mut req = self.nic.offload_request();
        {
            let mut p = req.get();
            build(p.reborrow().init_request());
            p.set_events(capnp_rpc::new_client(Holder(heard.clone())));
        }
        let r = req.send().promise.await?;
        let r = r.get()?;
        Ok((r.get_context()?, r.get_info()?.get_id()))
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
pub async fn ctx_info(c: &offload_context::Client) -> Result<[u64; 6], capnp::Error> {
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
pub async fn send(d: &mut Duplex, frames: &[(Vec<u8>, u32, u32)]) {
    let each = frames.iter().map(|(f, fl, ctx)| (&f[..], *fl, *ctx));
    crate::common::frames::send_each(d, each).await
}

/// A received frame with its descriptor's flags and context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub frame: Vec<u8>,
    pub flags: u32,
    pub context: u32,
}

/// Receives exactly `n` frames (panics after [`WAIT`]).
pub async fn recv(d: &mut Duplex, n: usize) -> Vec<Got> {
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
pub fn marker(n: u32) -> (Vec<u8>, u32, u32) {
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
pub async fn assert_dropped(
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
