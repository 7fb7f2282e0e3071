#!/bin/sh
# Builds and runs the Erlang/OTP and Go reference peers for the actor-runtime
# micro-benchmarks (spawn, ring, fan-out, skynet), printing only
# `figure <name> <value> <unit>` lines on stdout (diagnostics go to stderr).
#
# Usage: tests/bench/peers/run.sh [erlang|go|all]     (default: all)
# Build output goes to ${BUILD_DIR:-build}/peers, relative to the repo root.
# Exit status: 0 on success, 1 if a peer failed to build or run,
# 2 on bad usage, 3 if a requested toolchain is missing (any available peer
# is still run first, so `all` prints what it can).
set -u

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
root=$(CDPATH= cd -- "$here/../../.." && pwd) || exit 1
cd "$root" || exit 1

which=${1:-all}
case "$which" in
    erlang|go|all) ;;
    *) echo "usage: $0 [erlang|go|all]" >&2; exit 2 ;;
esac

build=${BUILD_DIR:-build}
case "$build" in
    /*) ;;
    *) build="$root/$build" ;;
esac
out="$build/peers"

status=0
missing=0

note() { echo "peers: $*" >&2; }

run_erlang() {
    for tool in erl erlc; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            note "Erlang/OTP toolchain not found ($tool missing); install it with: apt-get install -y erlang-nox"
            missing=1
            return
        fi
    done
    mkdir -p "$out/erlang" || { status=1; return; }
    if ! erlc -o "$out/erlang" "$here/erlang/flock_peers.erl" >&2; then
        note "erlc failed"
        status=1
        return
    fi
    # erlexec wants HOME; give it a private one if the environment has none.
    if ! env HOME="${HOME:-$out/erlang}" \
        erl -noshell +S 2 +P 2000000 -pa "$out/erlang" \
            -run flock_peers main </dev/null; then
        note "erlang peer failed"
        status=1
    fi
}

run_go() {
    if ! command -v go >/dev/null 2>&1; then
        note "Go toolchain not found (go missing); install it with: apt-get install -y golang-go"
        missing=1
        return
    fi
    mkdir -p "$out/go/cache" "$out/go/path" || { status=1; return; }
    if ! (cd "$here/go" &&
          env GOCACHE="$out/go/cache" GOPATH="$out/go/path" \
              GOPROXY=off GOFLAGS= GO111MODULE=on CGO_ENABLED=0 \
              go build -o "$out/go/flockpeers" . >&2); then
        note "go build failed"
        status=1
        return
    fi
    if ! env GOMAXPROCS=2 "$out/go/flockpeers" </dev/null; then
        note "go peer failed"
        status=1
    fi
}

case "$which" in
    erlang) run_erlang ;;
    go) run_go ;;
    all) run_erlang; run_go ;;
esac

if [ "$status" -ne 0 ]; then
    exit "$status"
fi
if [ "$missing" -ne 0 ]; then
    exit 3
fi
exit 0
