//! TLS records into tlsd's record layer: the reader that cuts the TCP
//! stream into records (with the NIC's per-frame "decrypted" marks) and the
//! opener, with a fixed key, that opens each the way its marks say.

use crate::frames::{IV, KEY};
use crate::input::Input;
use capnet_wire::tls::Version;
use tlsd::record::{Cipher, RecordOpener, RecordReader, TrafficKeys};

/// The five key settings a session can have; the first input byte picks one.
pub const SUITES: [(Version, Cipher); 5] = [
    (Version::Tls13, Cipher::Aes128Gcm),
    (Version::Tls12, Cipher::Aes128Gcm),
    (Version::Tls13, Cipher::Aes256Gcm),
    (Version::Tls13, Cipher::Chacha20Poly1305),
    (Version::Tls12, Cipher::Chacha20Poly1305),
];

pub fn keys(suite: u8) -> TrafficKeys {
    let (version, cipher) = SUITES[usize::from(suite) % SUITES.len()];
    TrafficKeys::new(version, cipher, &KEY[..cipher.key_len()], IV)
}

/// Input: `[suite]` then pieces of `[flags][u16 len][stream bytes]`: bit 0
/// of flags is the NIC's "decrypted" mark of the frame they came in.
pub fn tls_record(data: &[u8]) {
    let mut input = Input::new(data);
    let Ok(mut opener) = RecordOpener::new(keys(input.u8()), 0) else {
        return;
    };
    let mut reader = RecordReader::new();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let flags = input.u8();
        reader.push(input.piece(), flags & 1 != 0);
        loop {
            let at = reader.position();
            let mut rec = match reader.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                // tlsd ends the connection: the stream cannot be resynced.
                Err(_) => return,
            };
            let len = rec.bytes.len();
            match opener.open_in(&mut rec) {
                Ok(opened) => {
                    assert!(opened.plaintext.end <= len, "plaintext outside the record");
                }
                Err(_) => return,
            }
            assert!(reader.position() >= at);
        }
    }
}
