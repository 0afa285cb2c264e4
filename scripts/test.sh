#!/usr/bin/env bash
# The test command. On a fresh machine it first installs what the tests need
# (Debian packages, pycapnp, the Redox target), then runs every check:
# formatting, clippy, the workspace tests (real processes, sim wires, TAP with
# Linux as the peer), the loom model checks, the Redox build check, a bounded
# fuzzing run of every target, a check that no test left a process behind,
# and the README's demo as an unprivileged user.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip loom, the Redox check and fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n==> %s\n' "$*"; }

# --- set-up -------------------------------------------------------------
need=()
command -v capnp >/dev/null || need+=(capnproto)
command -v tshark >/dev/null || need+=(tshark)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3 python3-pip)
command -v socat >/dev/null || need+=(socat)
command -v ping >/dev/null || need+=(iputils-ping)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
python3 -c 'import capnp' 2>/dev/null || { step "installing pycapnp"; python3 -m pip install -q pycapnp; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
rustup target list --installed | grep -q x86_64-unknown-redox || rustup target add x86_64-unknown-redox

# --- checks -------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build (binaries the tests start)"
cargo build --workspace --bins --examples

step "cargo test"
cargo test --workspace -- --test-threads=2

if [ $quick -eq 0 ]; then
  step "loom: the ring and doorbell protocols"
  RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
    cargo test -p capnet-ring --release --test loom

  step "cargo check --target x86_64-unknown-redox (everything but tlsd and the supervisor; nicdrv without its TAP backend; capnet-offload with ring)"
  cargo check --target x86_64-unknown-redox -p capnet-ring -p capnet-schema -p capnet-wire -p capnet-tcpip -p capnet-offload -p capnet-holder -p capnet-confine -p netsrv -p nicdrv -p libclient

  step "fuzzing: every target for a bounded time (scripts/fuzz.sh)"
  scripts/fuzz.sh
fi
step "no process left behind by the tests"
# A set stopped by the last test may take a moment to go.
for _ in $(seq 10); do
  left=$(pgrep -a -f "$PWD/target/[a-z]+/(capnet|nicdrv|netsrv|tlsd)( |$)" || true)
  [ -z "$left" ] && break
  sleep 0.5
done
if [ -n "$left" ]; then
  printf 'still running after the tests:\n%s\n' "$left"
  exit 1
fi

step "the README's first command, as a user without root"
cargo build --release
if [ "$(id -u)" -eq 0 ]; then
  # The build tree may sit where only root can enter: run a copy.
  bin=$(mktemp -d /tmp/capnet-demo-bin.XXXXXX)
  cp target/release/{capnet,nicdrv,netsrv,tlsd} "$bin/"
  chmod 755 "$bin" "$bin"/*
  (cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin "$bin/capnet" demo)
  rm -rf "$bin"
else
  target/release/capnet demo
fi

step "all checks passed"
