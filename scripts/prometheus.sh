#!/usr/bin/env bash
# Interop with a real Prometheus (issue 5): the alert rules pass `promtool check rules` and
# their `promtool test rules` tests (scripts/prometheus-rules.sh); `promtool check metrics`
# passes on the demo's /metrics; and a Prometheus server, configured here to scrape the demo on 127.0.0.1 every
# second, holds memsentry_live_bytes and the size-class counters after a short run
# (checked through its HTTP query API). Installs Debian's `prometheus` package if
# `promtool` or `prometheus` is missing. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

name=prometheus
. scripts/lib.sh

# The rules first; this also installs the package (server and promtool) if missing.
scripts/prometheus-rules.sh
command -v prometheus >/dev/null || fail "prometheus is missing"

with_work

wait_for() { # wait_for WHAT URL: until URL answers, for at most 20 s
    for _ in $(seq 200); do curl -fsS -o /dev/null "$2" 2>/dev/null && return; sleep 0.1; done
    fail "$1 did not answer at $2"
}

cargo build --release --quiet -p memsentry-examples --example demo
demo_port=$(free_port)
MEMSENTRY_HTTP_ADDR="127.0.0.1:$demo_port" target/release/examples/demo --seconds 20 \
    --out "$work/out" >"$work/demo.out" 2>&1 &
pids+=($!)
wait_for "the demo" "http://127.0.0.1:$demo_port/healthz"

# --- go tool pprof reads the profile straight from the endpoint, as from Go's
# net/http/pprof (Go is installed by scripts/interop.sh, which runs first).
if command -v go >/dev/null; then
    GOCACHE="$work/gocache" PPROF_TMPDIR="$work" go tool pprof -top \
        "http://127.0.0.1:$demo_port/debug/pprof/heap" >"$work/pprof.txt" 2>&1 \
        || { cat "$work/pprof.txt" >&2; fail "go tool pprof cannot read /debug/pprof/heap"; }
    grep -q "Type: inuse_space" "$work/pprof.txt" || { cat "$work/pprof.txt" >&2; fail "pprof over HTTP"; }
else
    fail "go is missing (scripts/interop.sh installs it)"
fi

# --- The exposition format, as promtool reads it.
curl -fsS "http://127.0.0.1:$demo_port/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt" >"$work/check.txt" 2>&1 \
    || { cat "$work/check.txt" >&2; fail "promtool check metrics"; }

# --- A real server scraping the demo every second.
prom_port=$(free_port)
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/memsentry.rules.yml
scrape_configs:
  - job_name: memsentry-demo
    static_configs:
      - targets: ["127.0.0.1:$demo_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_for "prometheus" "http://127.0.0.1:$prom_port/-/ready"

# Query until the series are there (a few scrapes), for at most 20 s.
query() { curl -fsS "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"; }
has_result() { query "$1" | grep -q '"result":\[{'; }
for _ in $(seq 40); do
    has_result 'memsentry_live_bytes' && has_result 'count(memsentry_allocations_total) >= 10' && break
    sleep 0.5
done
has_result 'memsentry_live_bytes > 0' \
    || { tail -20 "$work/prometheus.log" >&2; fail "prometheus holds no memsentry_live_bytes"; }
has_result 'count(memsentry_allocations_total) == 10' \
    || { query 'count(memsentry_allocations_total)' >&2; fail "not the 10 size-class buckets of memsentry_allocations_total"; }
has_result 'sum(memsentry_allocated_bytes_total) > 0' || fail "no allocated bytes"
has_result 'memsentry_allocations_total{max_size="+Inf"}' || fail "no +Inf bucket"
# The rules loaded and evaluate against the live series.
curl -fsS "http://127.0.0.1:$prom_port/api/v1/rules" >"$work/rules.json"
grep -q '"health":"ok"' "$work/rules.json" || { cat "$work/rules.json" >&2; fail "rules not healthy"; }
if grep -q '"health":"err"' "$work/rules.json"; then cat "$work/rules.json" >&2; fail "a rule fails to evaluate"; fi

echo "prometheus: promtool accepts /metrics; Prometheus scraped the demo and holds memsentry_live_bytes and the 10 size-class buckets"
