#!/usr/bin/env bash
# Interop checks with real tools, on the files the demo writes:
# - `go tool pprof` reads the newest heap dump its watchdog wrote, and its diff;
# - `go tool pprof` reads the heap profile (top and raw views, every sample type), with the
#   demo's known leak as the top in-use entry; reads the diff (its change sample types);
#   and symbolizes the offline profile against the demo binary;
# - headless Chromium opens the SVG flame graph without XML or script errors.
# Installs Go (Debian's golang-go) and Chromium (Debian's chromium) if they are missing.
# Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

name=interop
. scripts/lib.sh

need go golang-go
need chromium chromium
with_work
go_env

# The demo as built by the README's command, and built with line tables (which `go tool
# pprof` needs to symbolize the offline profile), run side by side.
build_demo
cargo build --profile release-lines --quiet -p memsentry-examples --example demo
lines_demo=target/release-lines/examples/demo
out="$work/out"
lines_out="$work/lines"
# Six seconds at R = 64 KiB: the leak's ~120 buffers (16-48 KiB) are then sampled ~60 times
# in all, ~50 after the diff's base, so the checks below cannot miss it by chance (at the
# default rate they would once in ~600 runs: e^-6.4, no sample of the leak in the diff).
# Each serves its endpoint on a port of its own (port 0: the kernel picks a free one), so
# the two, or a demo a developer left running on 6060, never compete for one address.
export MEMSENTRY_SAMPLE_RATE=64KiB MEMSENTRY_HTTP_ADDR=127.0.0.1:0
$demo --seconds 6 --out "$out" >"$work/demo.out" &
pids+=($!)
$lines_demo --seconds 6 --out "$lines_out" >"$work/lines-demo.out" &
pids+=($!)
wait %1 || fail "the demo failed"
wait %2 || fail "the demo built with line tables failed"
for file in heap.pb.gz heap.svg diff.pb.gz heap-offline.pb.gz; do
    grep -q "wrote $out/$file" "$work/demo.out" || fail "the demo did not report writing $file"
done

# The first function of a -top report (the row after the column headings).
first_row() { awk '/flat%/ { getline; print $NF; exit }' "$1"; }

# --- The watchdog's automatic dumps: go tool pprof reads the newest, which holds the leak.
newest=$(ls "$out"/watchdog/heap-*Z-*.pb.gz 2>/dev/null | grep -v '\.diff\.pb\.gz$' | tail -n 1)
[ -n "$newest" ] || fail "the demo's watchdog wrote no dump into $out/watchdog"
pprof -top -sample_index=inuse_space "$newest" >"$work/watchdog.txt"
grep -q "demo::leak_session_buffers" "$work/watchdog.txt" \
    || fail_showing "$work/watchdog.txt" "the watchdog's dump $newest does not hold the leak"
pprof -top -sample_index=inuse_space_change "${newest%.pb.gz}.diff.pb.gz" >"$work/watchdog-diff.txt"

# --- The heap profile.
profile="$out/heap.pb.gz"
pprof -top -sample_index=inuse_space "$profile" >"$work/top.txt"
top=$(first_row "$work/top.txt")
[ "$top" = "demo::leak_session_buffers" ] \
    || fail_showing "$work/top.txt" "top in-use entry is '$top', expected demo::leak_session_buffers"
grep -q "Type: inuse_space" "$work/top.txt" || fail "default view is not inuse_space"
# (Reports go to files: `grep -q` closing a pipe early would fail pprof's write.)
for index in alloc_objects alloc_space inuse_objects inuse_space; do
    pprof -top -sample_index=$index "$profile" >"$work/index.txt"
    grep -q "Type: $index" "$work/index.txt" || fail "sample_index=$index"
done
# The raw view lists the sample types, the period and samples with their bytes label.
pprof -raw "$profile" >"$work/raw.txt"
grep -q "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" "$work/raw.txt" \
    || { head -20 "$work/raw.txt" >&2; fail "raw: sample types"; }
grep -q "^Period: 65536" "$work/raw.txt" || fail "raw: period (MEMSENTRY_SAMPLE_RATE=64KiB)"
grep -q "bytes:\[" "$work/raw.txt" || fail "raw: bytes label"

# --- The diff: read by pprof, the change of in-use space as its default view.
diff="$out/diff.pb.gz"
pprof -top "$diff" >"$work/diff.txt"
grep -q "Type: inuse_space_change" "$work/diff.txt" \
    || fail_showing "$work/diff.txt" "the diff's default view is not inuse_space_change"
grep -q "demo::leak_session_buffers" "$work/diff.txt" \
    || fail_showing "$work/diff.txt" "the leak is missing from the diff"
for index in alloc_space inuse_space inuse_objects_change; do
    pprof -top -sample_index=$index "$diff" >"$work/index.txt"
    grep -q "Type: $index" "$work/index.txt" || fail "diff: sample_index=$index"
done
pprof -raw "$diff" >"$work/diff-raw.txt"
grep -q "inuse_objects_change/count inuse_space_change/bytes" "$work/diff-raw.txt" \
    || fail "diff raw: sample types"

# --- With line tables, in-process names of inlined frames are short (`on_alloc`) and
# inlined frames show (the leaf is the inlined `RawVec` code under the leak): the
# allocator's frames are still trimmed, by their files. So the check goes by file too:
# no sample's leaf line may lie in memsentry's allocator code or in std's
# `alloc::alloc` (short names cannot tell std's `allocate` from hashbrown's own, which
# is the program's and stays).
pprof -top "$lines_out/heap.pb.gz" >"$work/lines-top.txt"
grep -q "leak_session_buffers$" "$work/lines-top.txt" \
    || fail_showing "$work/lines-top.txt" "line tables: the leak is missing"
pprof -raw "$lines_out/heap.pb.gz" >"$work/lines-raw.txt"
python3 - "$work/lines-raw.txt" <<'PY' || fail "line tables: the allocator's frames were not trimmed"
import re
import sys

text = open(sys.argv[1]).read()
samples, rest = text.split("\nLocations\n", 1)
locations = rest.split("\nMappings\n", 1)[0]
# Sample lines: "   COUNT  BYTES  COUNT  BYTES: LOC LOC ...", leaf location first.
leaves = {m.group(1) for m in re.finditer(r"^[\d\s]+:\s+(\d+)", samples, re.M)}
# Location lines: "  ID: 0xADDR M=N FUNCTION FILE:LINE s=...", the leaf line of its inlining.
files = {m.group(1): m.group(2)
         for m in re.finditer(r"^\s*(\d+): 0x[0-9a-f]+ M=\d+ .* (\S+):\d+ s=", locations, re.M)}
allocator = re.compile(r"/memsentry(-[^/]*)?/src/(hot/|alloc\.rs|sampler\.rs|unwind\.rs)"
                       r"|/library/alloc/src/alloc\.rs$")
if not leaves or not leaves <= files.keys():
    sys.exit(f"could not read the samples' leaf locations ({len(leaves)} leaves)")
bad = sorted({files[leaf] for leaf in leaves if allocator.search(files[leaf])})
if bad:
    sys.exit("leaf frames in the allocator's files: " + ", ".join(bad))
print(f"line tables: {len(leaves)} leaf locations, none in the allocator's files")
PY

# --- The offline profile: no names inside; pprof symbolizes it against the binary (from
# its line tables) and drops the allocator's frames, so the leak is the top entry again.
demo=$lines_demo
offline="$lines_out/heap-offline.pb.gz"
gzip -dc "$offline" >"$work/offline.pb"
if grep -aq "leak_session_buffers" "$work/offline.pb"; then
    fail "the offline profile holds function names"
fi
build_id=$(readelf -n "$demo" | awk '/Build ID:/ { print $3; exit }')
grep -aq "$build_id" "$work/offline.pb" || fail "the offline profile lacks the binary's build ID $build_id"
pprof -top "$demo" "$offline" >"$work/offline.txt"
top=$(first_row "$work/offline.txt")
case "$top" in
    *leak_session_buffers) ;;
    *) fail_showing "$work/offline.txt" "offline top in-use entry is '$top', expected leak_session_buffers" ;;
esac

# --- The flame graph in a real browser: the document parses (no <parsererror>) and its
# script runs without an uncaught error.
browse "file://$out/heap.svg" dom.txt --dump-dom
grep -q "<svg" "$work/dom.txt" || fail "chromium did not render an SVG document"
if grep -q "parsererror" "$work/dom.txt"; then
    grep -o "<parsererror.*</parsererror>" "$work/dom.txt" >&2
    fail "chromium reports XML errors in the flame graph"
fi
no_console_errors dom.txt "the flame graph's script fails in chromium"
frames=$(grep -o "<g><title>" "$work/dom.txt" | wc -l)
[ "$frames" -ge 2 ] || fail "chromium's flame graph has $frames frames"

echo "interop: go tool pprof reads the profile, the diff and the offline profile (top: $top);" \
    "chromium opens the flame graph ($frames frames)"
