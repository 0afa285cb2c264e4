//! The set of descriptors the data plane sleeps on (poll(2)).

use super::*;

/// A small fixed set of fds for poll(2).
#[derive(Default)]
pub(super) struct PollSet {
    pub(super) fds: Vec<libc::pollfd>,
}

impl PollSet {
    pub(super) fn add(&mut self, fd: BorrowedFd<'_>) -> usize {
        self.fds.push(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        self.fds.len() - 1
    }

    pub(super) fn ready(&self, i: usize) -> bool {
        self.fds[i].revents != 0
    }

    pub(super) fn poll(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        loop {
            // SAFETY: the pointer and length describe our own initialised pollfd array;
            // the fds are borrowed from objects that outlive this call.
            let r =
                unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
