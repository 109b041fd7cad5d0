#!/usr/bin/env bash
# Every check memsentry has, in the order a failure is cheapest to find. Exits non-zero on
# the first failure. Run from anywhere: `scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
# The benches' optional library shims (`mix libshim_*`), which the line above leaves out.
cargo clippy -p memsentry-benches --all-targets --features libshim -- -D warnings

step "layers: no modules that refer to each other in a circle"
python3 scripts/module_cycles.py memsentry/src

step "tools: Go, whose pprof reads the heap dumps in the tests below and in interop"
name=test
. scripts/lib.sh
need go golang-go

step "tests: unit, integration, end-to-end (runs the demo), benches in test mode"
# The cgroup test must not skip here: CI runs as root.
REQUIRE_CGROUP_TEST=1 cargo test --workspace --all-targets

step "interop: go tool pprof reads the demo's profiles, Chromium its flame graph"
scripts/interop.sh

step "prometheus: promtool checks /metrics and the alert rules; a real server scrapes the demo"
scripts/prometheus.sh

step "fleet: go tool pprof -seconds reads delta profiles, headers match Go's, the scrape configurations parse"
scripts/fleet.sh

step "tests in release: the allocator as it ships (inlined, optimised; after the steps above, whose release builds it reuses)"
REQUIRE_CGROUP_TEST=1 cargo test --release -p memsentry --tests

step "doctests"
cargo test --workspace --doc

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

printf '\nall checks passed\n'
