//! capnet's fuzz targets: every parser of input a peer controls, each a
//! plain `fn(&[u8])` that calls the project's own parsers (no copies) and
//! panics only on a bug. The engine that drives them (libFuzzer through
//! cargo-fuzz, in `fuzz/libfuzzer/`) is separate, so that the targets, their
//! corpora (`fuzz/corpus/TARGET/`) and the replay test outlive a change of
//! engine. See the README's "Fuzzing" section.

pub mod capnp;
pub mod engine;
pub mod frames;
pub mod input;
pub mod records;
pub mod rings;
pub mod seeds;

/// A fuzz target: any input, no panic unless the parser has a bug.
pub type Target = fn(&[u8]);

/// Every target by name (the name is its corpus directory and its
/// libFuzzer binary).
pub const TARGETS: &[(&str, Target)] = &[
    ("wire_frame", frames::wire_frame),
    ("nicdrv_frames", frames::nicdrv_frames),
    ("netsrv_frames", frames::netsrv_frames),
    ("ring_channel", rings::ring_channel),
    ("ring_bytes", rings::ring_bytes),
    ("chunks", rings::chunks),
    ("arena", rings::arena),
    ("capnp", capnp::capnp),
    ("tls_record", records::tls_record),
    ("config", config),
    ("engine_frames", engine::engine_frames),
    ("segmentation", frames::segmentation),
    ("tap_frames", frames::tap_frames),
];

/// A configuration file as `capnet up --config` reads it.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = capnet::config::Config::parse(text);
    }
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
