//! tlsd's counters: those of Linux `/proc/net/tls_stat`, plus capnet's own.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Every counter tlsd keeps; shared by all sessions.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
        }

        /// A copy taken at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Snapshot {
            $(pub $name: u64,)*
        }

        impl Stats {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Snapshot {
            /// (name, value) pairs in declaration order, for printing.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters!(
    curr_tx_sw,
    curr_rx_sw,
    curr_tx_device,
    curr_rx_device,
    tx_sw,
    rx_sw,
    tx_device,
    rx_device,
    decrypt_error,
    rx_device_resync,
    decrypt_retry,
    tx_rekey_ok,
    rx_rekey_ok,
    rx_rekey_received,
    reoffloads,
    handshakes,
    handshake_failures,
    alerts_sent,
    alerts_received,
    records_sealed,
    records_opened,
    bytes_sealed,
    bytes_opened,
    session_tickets,
    handshake_timeouts,
    curr_handshakes,
    curr_sockets,
    limit_refused,
    accept_errors,
);

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        // Saturating: a gauge must never wrap to 2^64 on a bookkeeping slip.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}
