#!/usr/bin/env bash
# Interop checks with real tools: the demo's heap profile must be read by `go tool pprof`
# (top and raw views, every sample type), with the demo's known leak as the top in-use
# entry. Installs Go (Debian's golang-go) if it is missing. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need_go() {
    command -v go >/dev/null && return
    echo "interop: installing golang-go (for go tool pprof)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go >/dev/null
    command -v go >/dev/null || { echo "interop: go is still missing" >&2; exit 1; }
}

fail() { echo "interop: FAILED: $*" >&2; exit 1; }

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="${HOME:-$work}" GOCACHE="$work/gocache" GOFLAGS=-mod=mod

cargo build --release --quiet -p memsentry-examples --example demo
profile="$work/heap.pb.gz"
target/release/examples/demo --seconds 4 --profile "$profile" >"$work/demo.out"
grep -q "wrote $profile" "$work/demo.out" || fail "the demo did not report writing $profile"

pprof() { go tool pprof "$@" 2>"$work/pprof.err" || { cat "$work/pprof.err" >&2; fail "go tool pprof $*"; }; }

# The top in-use entry (first row after the column headings) is the demo's leak.
pprof -top -sample_index=inuse_space "$profile" >"$work/top.txt"
top=$(awk '/flat%/ { getline; print $NF; exit }' "$work/top.txt")
[ "$top" = "demo::leak_session_buffers" ] \
    || { cat "$work/top.txt" >&2; fail "top in-use entry is '$top', expected demo::leak_session_buffers"; }
grep -q "Type: inuse_space" "$work/top.txt" || fail "default view is not inuse_space"

# Every sample type can be selected.
for index in alloc_objects alloc_space inuse_objects inuse_space; do
    pprof -top -sample_index=$index "$profile" | grep -q "Type: $index" || fail "sample_index=$index"
done

# The raw view lists the sample types, the period and samples with their bytes label.
pprof -raw "$profile" >"$work/raw.txt"
grep -q "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" "$work/raw.txt" \
    || { head -20 "$work/raw.txt" >&2; fail "raw: sample types"; }
grep -q "^Period: 524288" "$work/raw.txt" || fail "raw: period"
grep -q "bytes:\[" "$work/raw.txt" || fail "raw: bytes label"

echo "interop: go tool pprof reads the demo's profile; top in-use entry: $top"
