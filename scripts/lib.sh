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
