#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted input (fuzz/src):
# libFuzzer through cargo-fuzz, on stable Rust (no sanitizer: the targets
# are safe Rust over the project's parsers; a panic, an overflow, a hang or
# a blown memory limit is a crash).
#
#   scripts/fuzz.sh             every target for 15 s (what CI runs)
#   scripts/fuzz.sh 600         every target for 10 minutes
#   scripts/fuzz.sh 3600 capnp  one target for an hour
#
# Each target starts from its checked-in corpus (fuzz/corpus/TARGET) plus
# what earlier runs on this machine found (fuzz/libfuzzer/target/corpus).
# A crash leaves its input in fuzz/libfuzzer/artifacts/TARGET/ and makes the
# script fail; reproduce with
#   fuzz/libfuzzer/target/x86_64-unknown-linux-gnu/release/TARGET FILE
# then add the input to fuzz/corpus/TARGET/ with the fix, so that
# `cargo test -p capnet-fuzz` replays it from then on.
#
# `scripts/fuzz.sh merge` adds what runs found to the checked-in corpus:
# only inputs that add coverage (keep it well under 2 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
merge=0
[ "$seconds" = merge ] && merge=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # Every libFuzzer binary (fuzz/tests/corpus.rs checks they are exactly
  # capnet_fuzz::TARGETS).
  for f in fuzz/libfuzzer/fuzz_targets/*.rs; do
    t=${f##*/}
    targets+=("${t%.rs}")
  done
fi

# libFuzzer itself is C++, built by the libfuzzer-sys crate.
if ! command -v c++ >/dev/null; then
  echo "==> installing a C++ compiler for libFuzzer"
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
fi

fuzz_dir=fuzz/libfuzzer
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "==> installing cargo-fuzz $cargo_fuzz_version"
  cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
fi

echo "==> building the fuzz targets (coverage instrumentation, release)"
for t in "${targets[@]}"; do
  cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer none "$t"
done
bin="$fuzz_dir/target/x86_64-unknown-linux-gnu/release"

if [ $merge -eq 1 ]; then
  for t in "${targets[@]}"; do
    mkdir -p "$fuzz_dir/target/corpus/$t"
    # Short inputs only (configs: shorter still) keep the corpus small.
    max_len=1024; [ "$t" = config ] && max_len=256
    "$bin/$t" -merge=1 -max_len=$max_len "fuzz/corpus/$t" "$fuzz_dir/target/corpus/$t" >/dev/null 2>&1
    echo "$t: $(ls "fuzz/corpus/$t" | wc -l) files"
  done
  du -sh fuzz/corpus
  exit 0
fi

total=0
failed=()
printf '\n%-14s %12s %8s %8s  %s\n' target inputs cover corpus result
for t in "${targets[@]}"; do
  work="$fuzz_dir/target/corpus/$t"
  artifacts="$fuzz_dir/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="$fuzz_dir/target/fuzz-$t.log"
  status=ok
  "$bin/$t" "$work" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=CRASH
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cover=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  total=$((total + ${runs:-0}))
  if [ "$status" != ok ]; then
    failed+=("$t")
    status="CRASH: $(ls -t "$artifacts" | head -1) (log: $log)"
  fi
  printf '%-14s %12s %8s %8s  %s\n' "$t" "${runs:-?}" "${cover:-?}" "${corpus:-?}" "$status"
done
echo "inputs tried: $total in ${#targets[@]} targets, ${seconds} s each"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]}" >&2
  for t in "${failed[@]}"; do
    grep -m3 -E "panicked|ERROR: libFuzzer" "$fuzz_dir/target/fuzz-$t.log" >&2 || true
  done
  exit 1
fi
echo "no crashes"
