//! A stream that runs until dropped, the bytes that count as "moving
//! again", and the medians the disturbance benches print.

use capnet_tests::{receive_counting, wait_progress, Progress};
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stream from host a to host b that runs until dropped; `progress`
/// counts the bytes b received.
pub struct Stream {
    pub progress: Progress,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stream {
    pub fn start(na: &libclient::Net, nb: &libclient::Net, to: &str) -> Stream {
        let port = to.rsplit_once(':').unwrap().1;
        let l = nb
            .tcp_listen(format!("0.0.0.0:{port}").parse().unwrap(), 1)
            .unwrap();
        let progress = Progress::default();
        let stop = Arc::new(AtomicBool::new(false));
        let p = progress.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = receive_counting(&mut s, &p, 0);
        });
        let mut c = na.tcp_connect(to.parse().unwrap(), None).unwrap();
        let st = stop.clone();
        let client = std::thread::spawn(move || {
            let chunk = vec![0x3cu8; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                if c.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = c.shutdown(Shutdown::Write);
        });
        assert!(wait_progress(&progress, 8 << 20, Duration::from_secs(30)));
        Stream {
            progress,
            stop,
            threads: vec![server, client],
        }
    }

    pub fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Time from now until `bytes` more arrived.
    pub fn time_to_move(&self, bytes: u64, from: Instant) -> Duration {
        assert!(wait_progress(
            &self.progress,
            self.bytes() + bytes,
            Duration::from_secs(30)
        ));
        from.elapsed()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "Moving again" means this many more bytes arrived.
pub const MOVED: u64 = 256 << 10;
