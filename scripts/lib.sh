# Helpers shared by the check scripts. Source it after setting `name`, the prefix of the
# script's messages:   name=interop; . scripts/lib.sh

# fail MESSAGE...: says what failed and exits non-zero.
fail() { echo "$name: FAILED: $*" >&2; exit 1; }

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
cleanup_work() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}

# free_port: a TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
