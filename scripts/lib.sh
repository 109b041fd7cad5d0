# Helpers shared by the check scripts. Source it from the repository root after setting
# `name`, the prefix of the script's messages:   name=interop; . scripts/lib.sh

# fail MESSAGE...: says what failed and exits non-zero.
fail() { echo "$name: FAILED: $*" >&2; exit 1; }

# fail_showing FILE MESSAGE...: prints FILE (a tool's output) to stderr, then fails.
fail_showing() { cat "$1" >&2; shift; fail "$@"; }

# apt_install [APT-GET OPTION...] PACKAGE...: installs Debian packages quietly, through
# sudo when not root.
apt_install() {
    local sudo="" arg packages=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    for arg in "$@"; do [ "${arg#-}" = "$arg" ] && packages="$packages $arg"; done
    echo "$name: installing$packages (Debian packages)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# prometheus_pids: the ids of the running `prometheus` processes, space-separated (read
# from /proc: pgrep may be missing).
prometheus_pids() {
    local comm pid
    for comm in /proc/[0-9]*/comm; do
        pid=${comm#/proc/}
        pid=${pid%/comm}
        [ "$(cat "$comm" 2>/dev/null)" = prometheus ] && printf '%s ' "$pid"
    done
    return 0
}

# install_prometheus: installs Debian's `prometheus` package (the server and promtool).
# Its postinst starts the server where services may start (under systemd it also enables
# it); the checks start their own, so this stops what the install started.
install_prometheus() {
    local sudo="" before systemd=no was_active=no pid
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    before=" $(prometheus_pids)"
    if [ -d /run/systemd/system ]; then
        systemd=yes
        systemctl is-active --quiet prometheus 2>/dev/null && was_active=yes
    fi
    apt_install --no-install-recommends prometheus
    if [ "$systemd" = yes ] && [ "$was_active" = no ] \
        && systemctl is-active --quiet prometheus 2>/dev/null; then
        echo "$name: stopping the prometheus service the install started"
        $sudo systemctl stop prometheus
        $sudo systemctl disable --quiet prometheus || true
    fi
    for pid in $(prometheus_pids); do
        case "$before " in *" $pid "*) continue ;; esac
        echo "$name: stopping the prometheus server (pid $pid) the install started"
        $sudo kill "$pid" || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e "/proc/$pid" ] || break; sleep 1; done
        if [ -e "/proc/$pid" ]; then
            echo "$name: warning: pid $pid is still running" >&2
        fi
    done
}

# need COMMAND PACKAGE: installs the Debian PACKAGE if COMMAND is missing (`prometheus`
# through install_prometheus), and fails if COMMAND is still missing.
need() {
    command -v "$1" >/dev/null && return
    case $2 in
        prometheus) install_prometheus ;;
        *) apt_install "$2" ;;
    esac
    command -v "$1" >/dev/null || fail "$1 is still missing"
}

# with_work: makes $work, a temporary directory, and at exit stops every process whose
# pid is in the array $pids and removes $work.
with_work() {
    work=$(mktemp -d)
    pids=()
    trap cleanup_work EXIT
}

# cleanup_work: what with_work runs at exit.
cleanup_work() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}

# go_env: points Go's caches and pprof's downloads into $work (after with_work), so the
# checks leave nothing behind, and lets `go run` resolve modules without a go.sum.
go_env() { export HOME="${HOME:-$work}" GOCACHE="$work/gocache" PPROF_TMPDIR="$work" GOFLAGS=-mod=mod; }

# pprof ARG...: `go tool pprof ARG...`; fails with pprof's messages if it fails.
pprof() { go tool pprof "$@" 2>"$work/pprof.err" || fail_showing "$work/pprof.err" "go tool pprof $*"; }

# free_port: a TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for WHAT URL: waits until URL answers, for at most 20 s; fails if it does not.
wait_for() {
    for _ in $(seq 200); do curl -fsS -o /dev/null "$2" 2>/dev/null && return; sleep 0.1; done
    fail "$1 did not answer at $2"
}

# fetch URL FILE: writes what URL answers into FILE; fails if it does not answer.
fetch() { curl -fsS -o "$2" "$1" || fail "could not fetch $1"; }

# build_demo: builds the demo as the README does, in release; sets $demo to its binary.
build_demo() {
    cargo build --release --quiet -p memsentry-examples --example demo
    demo=target/release/examples/demo
}

# start_demo SECONDS OUT: starts the demo (after build_demo and with_work) for SECONDS,
# writing its files under $work/OUT and its output to $work/OUT.log, serving on a free
# port, and waits until it answers; sets $addr, its HOST:PORT, and $base, its URL. The
# environment of the call reaches the demo (`MEMSENTRY_HTTP_TOKEN=... start_demo ...`).
start_demo() {
    addr="127.0.0.1:$(free_port)"
    base="http://$addr"
    MEMSENTRY_HTTP_ADDR="$addr" "$demo" --seconds "$1" --out "$work/$2" >"$work/$2.log" 2>&1 &
    pids+=($!)
    wait_for "the demo" "$base/healthz"
}

# browse URL OUT ARG...: opens URL in headless Chromium with ARG... (`--dump-dom`,
# `--screenshot=...`), given 8 s of page time; its output goes to $work/OUT and its log
# to $work/OUT.err. Fails if Chromium fails.
browse() {
    local url=$1 out=$2
    shift 2
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/chrome-$out" --enable-logging=stderr --v=0 \
        --virtual-time-budget=8000 "$@" "$url" >"$work/$out" 2>"$work/$out.err" \
        || { tail -20 "$work/$out.err" >&2; fail "chromium could not open $url"; }
}

# no_console_errors OUT MESSAGE...: fails with MESSAGE, showing the console's lines, if
# the page browse opened into OUT logged an error or an uncaught exception.
no_console_errors() {
    local log="$work/$1.err"
    shift
    if grep -Eqi ":CONSOLE.*(error|uncaught)" "$log"; then
        grep ":CONSOLE" "$log" >&2
        fail "$@"
    fi
}
