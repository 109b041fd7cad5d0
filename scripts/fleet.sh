#!/usr/bin/env bash
# Fleet-scale interop: what continuous-profiling scrapers and a Prometheus fleet see.
# - `go tool pprof -seconds 5` reads the demo's /debug/pprof/allocs as a delta profile whose
#   alloc_space covers only those seconds (checked against two cumulative profiles taken
#   around it);
# - the profile headers (period type, period, sample types and their order) match a heap
#   profile written by Go itself (scripts/go/heapref), field by field, and a delta profile
#   has its duration;
# - the page at /debug/memsentry/ works in headless Chromium (no script error, the charts
#   drawn, the tables filled, the leak named among the suspects; a screenshot is left at
#   target/memsentry-page.png), and with a token set it asks for the token;
# - the shipped scrape configurations parse: Prometheus's with `promtool check config`,
#   Parca's as YAML, Grafana Alloy's with scripts/river_check.py.
# Installs Go, Prometheus (for promtool) and Chromium if they are missing. Run by
# scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

name=fleet
. scripts/lib.sh

need go golang-go
need promtool prometheus
need chromium chromium

with_work
go_env
build_demo
start_demo 45 out
sleep 2 # past the demo's start-up

# The total of a sample type in a profile, in bytes: "... of 123456B total".
total() { pprof -top -unit=B -sample_index="$2" "$1" | sed -n 's/.* of \([0-9.]*\)B total.*/\1/p'; }

# --- A delta over 5 s, between two cumulative profiles.
fetch "$base/debug/pprof/allocs" "$work/before.pb.gz"
t0=$(date +%s.%N)
pprof -seconds 5 -proto "$base/debug/pprof/allocs" >"$work/delta.pb.gz"
fetch "$base/debug/pprof/allocs" "$work/after.pb.gz"
t1=$(date +%s.%N)
before=$(total "$work/before.pb.gz" alloc_space)
after=$(total "$work/after.pb.gz" alloc_space)
delta=$(total "$work/delta.pb.gz" alloc_space)
python3 - "$before" "$after" "$delta" "$t0" "$t1" <<'PY' || fail "the delta profile does not cover its 5 s"
import sys
before, after, delta, t0, t1 = map(float, sys.argv[1:])
around = after - before            # what the cumulative profiles saw over t1 - t0 seconds
expected = around * 5.0 / (t1 - t0)  # the share of it the 5 s window should hold
print(f"fleet: cumulative +{around / 2**20:.1f} MiB over {t1 - t0:.1f} s; "
      f"the 5 s delta {delta / 2**20:.1f} MiB (expected ~{expected / 2**20:.1f} MiB)")
assert 0 < delta <= around * 1.05, "the delta must lie within the cumulative difference"
assert abs(delta - expected) <= 0.35 * expected, "the delta must hold the window's share"
PY

# --- Headers: field by field against Go's own heap profile.
(cd "$work" && go run "$OLDPWD/scripts/go/heapref/main.go" "$work/go.pb.gz") \
    || fail "the Go reference program"
header() { pprof -raw "$1" | sed -n '/^PeriodType:/p; /^Period:/p; /^Duration:/p; /^Samples:/{n;s/\[dflt\]//;p;}'; }
header "$work/go.pb.gz" >"$work/go.header"
fetch "$base/debug/pprof/heap" "$work/heap.pb.gz"
header "$work/heap.pb.gz" >"$work/heap.header"
diff "$work/go.header" "$work/heap.header" \
    || fail "the heap profile's header differs from Go's (above: Go's, then memsentry's)"
header "$work/delta.pb.gz" >"$work/delta.header"
grep -q '^Duration: 5' "$work/delta.header" || fail_showing "$work/delta.header" "the delta's duration"
grep -v '^Duration' "$work/delta.header" | diff "$work/go.header" - \
    || fail "the delta profile's header differs from Go's"
# (Reports go to files: `grep -q` closing a pipe early would fail pprof's write.)
pprof -raw "$work/heap.pb.gz" >"$work/heap.raw"
grep -q '^Comment: build id: ' "$work/heap.raw" || fail "no build id in the profile"

# --- The goroutine profile from the task table.
pprof -top "$base/debug/pprof/goroutine" >"$work/goroutine.txt"
grep -q "Type: goroutine" "$work/goroutine.txt" || fail_showing "$work/goroutine.txt" "goroutine"
grep -q "demo::watch_session" "$work/goroutine.txt" || fail_showing "$work/goroutine.txt" "goroutine rows"

# --- The page, in a real browser: the demo has run for a while, so its leak is a suspect.
browse "$base/debug/memsentry/" page.html --dump-dom
page_fail() { grep -o '<body[^>]*>' "$work/page.html" >&2; fail "the page: $*"; }
grep -q 'data-state="ready"' "$work/page.html" || page_fail "it did not get ready"
grep -q 'data-errors="0"' "$work/page.html" || page_fail "script errors"
no_console_errors page.html "the page: console errors"
grep -q 'demo::watch_session' "$work/page.html" || page_fail "the task table is empty"
grep -q 'demo::leak_session_buffers</td>' "$work/page.html" || page_fail "the leak is not a suspect"
grep -q 'inuse_space: ' "$work/page.html" || page_fail "the top in-use sites are missing"
mkdir -p target
browse "$base/debug/memsentry/" page.png --screenshot="$PWD/target/memsentry-page.png" \
    --window-size=1400,1900
[ -s target/memsentry-page.png ] || fail "no screenshot of the page"
# With a token set, the page asks for it and shows no data ($base is now this demo's).
MEMSENTRY_HTTP_TOKEN=s3cret start_demo 15 token-out
browse "$base/debug/memsentry/" token.html --dump-dom
grep -q 'data-state="needs-token"' "$work/token.html" \
    || { grep -o '<body[^>]*>' "$work/token.html" >&2; fail "with a token, the page does not ask for it"; }

# --- The shipped scrape configurations.
promtool check config deploy/prometheus/scrape.yml >"$work/promtool.txt" 2>&1 \
    || fail_showing "$work/promtool.txt" "promtool check config deploy/prometheus/scrape.yml"
python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' deploy/parca/parca.yaml \
    || fail "deploy/parca/parca.yaml is not YAML"
python3 scripts/river_check.py deploy/alloy/memsentry.alloy || fail "deploy/alloy/memsentry.alloy"

echo "fleet: go tool pprof -seconds reads a delta profile; headers match Go's; the page works in Chromium (target/memsentry-page.png); the scrape configurations parse"
