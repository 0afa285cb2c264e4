#!/usr/bin/env bash
# Runs a system benchmark of this tree and of an older revision, alternately,
# so that a change is judged against the code it replaced on the same
# machine in the same session:
#
#   scripts/bench-against.sh REV [BENCH] [ROUNDS]
#
# REV is built in a worktree under target/bench-against/ (its own target
# directory, release binaries and the `system` bench); BENCH is a
# CAPNET_BENCH selection (default `tls`), ROUNDS how many times each side
# runs (default 3). Each run prints the bench's own report.
set -euo pipefail
rev=${1:?usage: scripts/bench-against.sh REV [BENCH] [ROUNDS]}
bench=${2:-tls}
rounds=${3:-3}
root=$(git rev-parse --show-toplevel)
old="$root/target/bench-against/$(git rev-parse --short "$rev")"
if [ ! -d "$old" ]; then
    git -C "$root" worktree add --detach "$old" "$rev" >/dev/null
fi
build() {
    (cd "$1" && cargo build --release --bins -q && cargo bench -q -p capnet-tests --bench system --no-run 2>/dev/null)
}
bench_bin() {
    ls -t "$1"/target/release/deps/system-* | grep -v '\.d$' | head -1
}
build "$old"
build "$root"
for i in $(seq 1 "$rounds"); do
    for side in "$old" "$root"; do
        label=this; [ "$side" = "$old" ] && label="$rev"
        echo "=== $label, run $i"
        (cd "$side" && CAPNET_BENCH="$bench" "$(bench_bin "$side")" --bench)
    done
done
