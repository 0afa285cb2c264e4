//! Every target over its seeds and its checked-in corpus (which holds every
//! input that once crashed a target): a replay on every `cargo test`, no
//! fuzzing engine needed.
//!
//! `CAPNET_FUZZ_WRITE_SEEDS=1 cargo test -p capnet-fuzz` (re)writes the
//! seeds into `fuzz/corpus/TARGET/seed-N`.

use capnet_fuzz::{seeds::seeds, TARGETS};
use std::path::PathBuf;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

#[test]
fn every_target_has_seeds_that_run() {
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for s in &seeds {
            target(s);
        }
        if std::env::var_os("CAPNET_FUZZ_WRITE_SEEDS").is_some() {
            let dir = corpus(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
            }
        }
    }
}

#[test]
fn checked_in_corpora_replay() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = corpus(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            target(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "{name}: empty corpus");
        total += n;
    }
    eprintln!("{total} corpus inputs replayed");
}

/// `scripts/fuzz.sh` fuzzes what `fuzz/libfuzzer/fuzz_targets/` holds: every
/// target needs its binary there (and declared), or CI replays its seeds
/// and never fuzzes it.
#[test]
fn every_target_is_a_libfuzzer_binary() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("libfuzzer");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut binaries: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_owned))
        .collect();
    binaries.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(binaries, names, "fuzz_targets/*.rs against TARGETS");
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"\npath = \"fuzz_targets/{n}.rs\"")),
            "{n} is not a [[bin]] of fuzz/libfuzzer/Cargo.toml"
        );
    }
}
