//! Waiting on a socket's doorbell from several threads.
//!
//! One doorbell wakes the application for both directions of a socket. If a
//! reader and a writer both slept on it, one could drain the other's wakeup.
//! So one thread at a time sleeps on the fd (the poller); others wait on a
//! condition variable for the poller to come back, and everyone re-checks.
//! A waiter takes a ticket before its last check: a wakeup drained after the
//! ticket was taken makes `wait` return at once.

use capnet_ring::Doorbell;
use std::io;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

pub struct Bell {
    pub doorbell: Doorbell,
    state: Mutex<State>,
    woken: Condvar,
}

#[derive(Default)]
struct State {
    polling: bool,
    generation: u64,
}

#[derive(Clone, Copy)]
pub struct Ticket(u64);

impl Bell {
    pub fn new(doorbell: Doorbell) -> Bell {
        Bell {
            doorbell,
            state: Mutex::new(State::default()),
            woken: Condvar::new(),
        }
    }

    /// Take before the last check of the condition you wait for.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps until a wakeup newer than `ticket`; false on timeout.
    pub fn wait(&self, ticket: Ticket, deadline: Option<Instant>) -> io::Result<bool> {
        let mut st = self.lock();
        loop {
            if st.generation != ticket.0 {
                return Ok(true);
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Ok(false),
                },
                None => None,
            };
            if st.polling {
                st = match remaining {
                    Some(r) => {
                        self.woken
                            .wait_timeout(st, r)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => self.woken.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
                continue;
            }
            st.polling = true;
            drop(st);
            let result = self.doorbell.wait(remaining);
            st = self.lock();
            st.polling = false;
            if matches!(result, Ok(true)) {
                st.generation += 1;
            }
            self.woken.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wakeup_after_ticket_is_not_lost() {
        let bell = Bell::new(Doorbell::new().unwrap());
        let t = bell.ticket();
        bell.doorbell.ring();
        // Another thread drains the wakeup first.
        assert!(bell
            .wait(bell.ticket(), Some(Instant::now() + Duration::from_secs(1)))
            .unwrap());
        // The original waiter still returns at once.
        assert!(bell.wait(t, Some(Instant::now())).unwrap());
    }

    #[test]
    fn times_out_without_wakeup() {
        let bell = Bell::new(Doorbell::new().unwrap());
        let t = bell.ticket();
        assert!(!bell
            .wait(t, Some(Instant::now() + Duration::from_millis(20)))
            .unwrap());
    }

    #[test]
    fn two_waiters_both_wake() {
        let bell = Arc::new(Bell::new(Doorbell::new().unwrap()));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let bell = bell.clone();
                let t = bell.ticket();
                std::thread::spawn(move || {
                    bell.wait(t, Some(Instant::now() + Duration::from_secs(5)))
                        .unwrap()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        bell.doorbell.ring();
        for h in handles {
            assert!(h.join().unwrap());
        }
    }
}
