#!/usr/bin/env bash
# Interop with a real Prometheus: the alert rules pass `promtool check rules` and their
# `promtool test rules` tests (scripts/prometheus-rules.sh); `promtool check metrics`
# passes on the demo's /metrics; a Prometheus server, configured here to scrape the demo
# on 127.0.0.1 every second, holds memsentry_live_bytes and the size-class counters after
# a short run (checked through its HTTP query API); and `go tool pprof` reads the demo's
# heap profile over HTTP. Installs Debian's `prometheus` package if `promtool` or
# `prometheus` is missing, and Go if it is. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

name=prometheus
. scripts/lib.sh

# The rules first; this also installs the package (server and promtool) if missing.
scripts/prometheus-rules.sh
need prometheus prometheus
need go golang-go

with_work
go_env
build_demo
start_demo 20 out

# --- go tool pprof reads the profile straight from the endpoint, as from Go's
# net/http/pprof.
pprof -top "$base/debug/pprof/heap" >"$work/pprof.txt"
grep -q "Type: inuse_space" "$work/pprof.txt" || fail_showing "$work/pprof.txt" "pprof over HTTP"

# --- The exposition format, as promtool reads it.
fetch "$base/metrics" "$work/metrics.txt"
promtool check metrics <"$work/metrics.txt" >"$work/check.txt" 2>&1 \
    || fail_showing "$work/check.txt" "promtool check metrics"

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
      - targets: ["$addr"]
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
fetch "http://127.0.0.1:$prom_port/api/v1/rules" "$work/rules.json"
grep -q '"health":"ok"' "$work/rules.json" || fail_showing "$work/rules.json" "rules not healthy"
if grep -q '"health":"err"' "$work/rules.json"; then fail_showing "$work/rules.json" "a rule fails to evaluate"; fi

echo "prometheus: promtool accepts /metrics; Prometheus scraped the demo and holds memsentry_live_bytes and the 10 size-class buckets"
