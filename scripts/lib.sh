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
