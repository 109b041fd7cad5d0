#!/usr/bin/env bash
# Checks the Prometheus alerting rules in deploy/prometheus with the real promtool:
# - `promtool check rules` on memsentry.rules.yml (syntax, PromQL, templates);
# - `promtool test rules` on memsentry.rules.test.yml (each alert fires, or stays quiet, on
#   series made for it).
# Installs Debian's `prometheus` package (which ships promtool) if promtool is missing; if
# installing it starts a Prometheus server, stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

name=prometheus-rules
. scripts/lib.sh

need promtool prometheus

rules=deploy/prometheus/memsentry.rules.yml
tests=deploy/prometheus/memsentry.rules.test.yml
promtool check rules "$rules" || fail "promtool check rules $rules"
promtool test rules "$tests" || fail "promtool test rules $tests"

echo "prometheus-rules: the rules check and their unit tests pass" \
    "($(promtool --version 2>&1 | head -1))"
