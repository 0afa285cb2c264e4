//! Ways for the test suite to make netsrv fail on purpose.
//!
//! Each is read from netsrv's environment once, at start: only whoever
//! starts netsrv (the supervisor, and whoever started it) controls that, and
//! no client, driver or packet can reach a hook. Unset, a hook costs one
//! `Option` check per poll.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The variable naming the file whose appearance makes the stack's poll panic.
pub const PANIC_FILE: &str = "CAPNET_TEST_PANIC_FILE";

const CHECK_EVERY: Duration = Duration::from_millis(50);

/// `CAPNET_TEST_PANIC_FILE=PATH`: the stack's poll removes PATH and panics
/// once PATH exists,
/// to show that a panic in the data plane ends netsrv (so that the
/// supervisor restarts it) instead of leaving a live process with a dead
/// data plane.
#[derive(Debug)]
pub struct PanicTrigger {
    path: PathBuf,
    next_check: Instant,
}

impl PanicTrigger {
    pub fn from_env() -> Option<PanicTrigger> {
        let path = PathBuf::from(std::env::var_os(PANIC_FILE)?);
        tracing::warn!(path = %path.display(), "test hook: the data plane panics once this file exists");
        Some(PanicTrigger {
            path,
            next_check: Instant::now(),
        })
    }

    /// Panics if the file exists (looked at no more often than every 50 ms).
    pub fn check(&mut self) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        if self.path.exists() {
            // Once: the restarted netsrv must not panic again.
            let _ = std::fs::remove_file(&self.path);
            panic!("test hook: {} exists", self.path.display());
        }
    }
}
