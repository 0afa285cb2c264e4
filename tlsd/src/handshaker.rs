//! The handshake workers: a fixed number of threads, each running many
//! handshakes at once over non-blocking streams, each with a deadline.
//!
//! A peer that connects and sends nothing costs a place in a worker's poll
//! set until its deadline — never a thread, and never a delay to anyone
//! else's handshake (the old way, one blocking handshake at a time, let
//! three silent connections stop a listener). A handshake past its deadline
//! is closed and counted.

use crate::handshake::{Established, Handshake, HandshakeError};
use crate::stats::Stats;
use libclient::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAKER: Token = Token(0);

/// How a handshake that did not complete ended.
#[derive(Debug)]
pub enum Failure {
    Handshake(HandshakeError),
    /// The deadline passed first.
    TimedOut(Duration),
    /// Nobody wants the result any more (the listener closed, the connect
    /// call was cancelled).
    Cancelled,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handshake(e) => write!(f, "{e}"),
            Failure::TimedOut(t) => write!(f, "the handshake took longer than {t:?}"),
            Failure::Cancelled => f.write_str("cancelled"),
        }
    }
}

pub type Outcome = Result<(Established, TcpStream), Failure>;

/// One handshake to run, and whom to tell how it ended.
pub struct Job {
    pub tcp: TcpStream,
    pub handshake: Handshake,
    pub deadline: Instant,
    /// Set when nobody wants the result any more (checked at every wakeup
    /// of the worker; [`Handshaker::wake_all`] makes one).
    pub cancelled: Arc<AtomicBool>,
    /// Called once, on the worker thread.
    pub done: Box<dyn FnOnce(Outcome) + Send>,
}

struct Inbox {
    jobs: Mutex<Vec<Job>>,
    waker: Waker,
}

pub struct Handshaker {
    workers: Vec<Arc<Inbox>>,
    next: AtomicUsize,
    stats: Arc<Stats>,
}

impl Handshaker {
    /// Starts `workers` threads (at least one).
    pub fn start(workers: usize, timeout: Duration, stats: Arc<Stats>) -> io::Result<Handshaker> {
        let mut inboxes = Vec::new();
        for i in 0..workers.max(1) {
            let poll = Poll::new()?;
            let inbox = Arc::new(Inbox {
                jobs: Mutex::new(Vec::new()),
                waker: Waker::new(poll.registry(), WAKER)?,
            });
            let worker = Worker {
                poll,
                inbox: inbox.clone(),
                jobs: HashMap::new(),
                next_token: 1,
                timeout,
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name(format!("tls handshakes {i}"))
                .spawn(move || {
                    // A worker that died would leave its handshakes, and
                    // every one handed to it later, waiting for ever: end
                    // tlsd instead, so that the supervisor starts it again.
                    let run = std::panic::AssertUnwindSafe(|| worker.run());
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("a handshake worker panicked; tlsd ends");
                        std::process::exit(1);
                    }
                })?;
            inboxes.push(inbox);
        }
        Ok(Handshaker {
            workers: inboxes,
            next: AtomicUsize::new(0),
            stats,
        })
    }

    /// Runs `job` on the next worker; its stream turns non-blocking.
    pub fn submit(&self, job: Job) {
        Stats::inc(&self.stats.curr_handshakes);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let inbox = &self.workers[i];
        inbox
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        if let Err(e) = inbox.waker.wake() {
            tracing::error!(%e, "waking a handshake worker failed");
        }
    }

    /// Makes every worker look at its handshakes' `cancelled` flags now.
    pub fn wake_all(&self) {
        for w in &self.workers {
            let _ = w.waker.wake();
        }
    }
}

struct Worker {
    poll: Poll,
    inbox: Arc<Inbox>,
    jobs: HashMap<Token, Job>,
    next_token: usize,
    timeout: Duration,
    stats: Arc<Stats>,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut ready = Vec::new();
        loop {
            let now = Instant::now();
            let wait = self
                .jobs
                .values()
                .map(|j| j.deadline.saturating_duration_since(now))
                .min();
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Without its poll a worker can do nothing: end tlsd so
                    // that the supervisor starts a working one.
                    tracing::error!(%e, "handshake worker poll failed");
                    std::process::exit(1);
                }
            }
            ready.clear();
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKER));
            let new: Vec<Job> =
                std::mem::take(&mut *self.inbox.jobs.lock().unwrap_or_else(|e| e.into_inner()));
            for job in new {
                if let Some(token) = self.add(job) {
                    // A client speaks first; a server may have bytes already.
                    ready.push(token);
                }
            }
            for token in ready.drain(..) {
                self.advance(token);
            }
            self.sweep();
        }
    }

    /// Registers a new job; `None` if it ended at once.
    fn add(&mut self, job: Job) -> Option<Token> {
        let token = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let registered = job.tcp.set_nonblocking(true).and_then(|()| {
            self.poll.registry().register(
                &mut SourceFd(&job.tcp.as_raw_fd()),
                token,
                Interest::READABLE,
            )
        });
        if let Err(e) = registered {
            self.fail(job.done, job.tcp, Failure::Handshake(HandshakeError::Io(e)));
            return None;
        }
        self.jobs.insert(token, job);
        Some(token)
    }

    fn advance(&mut self, token: Token) {
        let Some(job) = self.jobs.get_mut(&token) else {
            return;
        };
        let result = job.handshake.advance(&mut &job.tcp);
        match result {
            Ok(false) => {}
            Ok(true) => {
                let (parts, done) = self.take(token);
                match parts.handshake.established() {
                    Ok(est) => {
                        Stats::inc(&self.stats.handshakes);
                        Stats::dec(&self.stats.curr_handshakes);
                        done(Ok((est, parts.tcp)));
                    }
                    Err(e) => self.fail(done, parts.tcp, Failure::Handshake(e)),
                }
            }
            Err(e) => {
                let (job, done) = self.take(token);
                self.fail(done, job.tcp, Failure::Handshake(e));
            }
        }
    }

    /// Ends handshakes past their deadline, or no longer wanted.
    fn sweep(&mut self) {
        let now = Instant::now();
        let over: Vec<Token> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.deadline <= now || j.cancelled.load(Ordering::Relaxed))
            .map(|(t, _)| *t)
            .collect();
        for token in over {
            let (job, done) = self.take(token);
            let why = if job.cancelled.load(Ordering::Relaxed) {
                Failure::Cancelled
            } else {
                Stats::inc(&self.stats.handshake_timeouts);
                Failure::TimedOut(self.timeout)
            };
            self.fail(done, job.tcp, why);
        }
    }

    /// Out of the poll set; the job without its callback, and the callback.
    fn take(&mut self, token: Token) -> (JobParts, Box<dyn FnOnce(Outcome) + Send>) {
        let job = self.jobs.remove(&token).expect("a job of this worker");
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&job.tcp.as_raw_fd()));
        let Job {
            tcp,
            handshake,
            cancelled,
            done,
            ..
        } = job;
        (
            JobParts {
                tcp,
                handshake,
                cancelled,
            },
            done,
        )
    }

    fn fail(&self, done: Box<dyn FnOnce(Outcome) + Send>, tcp: TcpStream, why: Failure) {
        Stats::dec(&self.stats.curr_handshakes);
        if !matches!(why, Failure::Cancelled) {
            Stats::inc(&self.stats.handshake_failures);
        }
        let remote = tcp.peer_addr().ok();
        match why {
            // Counted; a flood of them is not worth a line each.
            Failure::TimedOut(_) | Failure::Cancelled => {
                tracing::debug!(?remote, %why, "handshake ended")
            }
            Failure::Handshake(_) => tracing::info!(?remote, %why, "handshake failed"),
        }
        // Dropping the stream closes the connection.
        drop(tcp);
        done(Err(why));
    }
}

/// A job taken out of its worker, its callback apart.
struct JobParts {
    tcp: TcpStream,
    handshake: Handshake,
    cancelled: Arc<AtomicBool>,
}
