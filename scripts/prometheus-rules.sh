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

# The ids of the running `prometheus` processes, space-separated (from /proc: pgrep may be
# missing).
prometheus_pids() {
    local comm pid
    for comm in /proc/[0-9]*/comm; do
        pid=${comm#/proc/}
        pid=${pid%/comm}
        [ "$(cat "$comm" 2>/dev/null)" = prometheus ] && printf '%s ' "$pid"
    done
    return 0
}

install() {
    local sudo="" before systemd=no was_active=no pid
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    before=" $(prometheus_pids)"
    if [ -d /run/systemd/system ]; then
        systemd=yes
        systemctl is-active --quiet prometheus 2>/dev/null && was_active=yes
    fi
    apt_install --no-install-recommends "$@"
    # The package's postinst starts its server where services may start (under systemd it
    # also enables it): only promtool is wanted here, so stop what the install started.
    if [ "$systemd" = yes ] && [ "$was_active" = no ] \
        && systemctl is-active --quiet prometheus 2>/dev/null; then
        echo "prometheus-rules: stopping the prometheus service the install started"
        $sudo systemctl stop prometheus
        $sudo systemctl disable --quiet prometheus || true
    fi
    for pid in $(prometheus_pids); do
        case "$before " in *" $pid "*) continue ;; esac
        echo "prometheus-rules: stopping the prometheus server (pid $pid) the install started"
        $sudo kill "$pid" || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e "/proc/$pid" ] || break; sleep 1; done
        if [ -e "/proc/$pid" ]; then
            echo "prometheus-rules: warning: pid $pid is still running" >&2
        fi
    done
}

command -v promtool >/dev/null || install prometheus
command -v promtool >/dev/null || fail "promtool is still missing"

rules=deploy/prometheus/memsentry.rules.yml
tests=deploy/prometheus/memsentry.rules.test.yml
promtool check rules "$rules" || fail "promtool check rules $rules"
promtool test rules "$tests" || fail "promtool test rules $tests"

echo "prometheus-rules: the rules check and their unit tests pass" \
    "($(promtool --version 2>&1 | head -1))"
