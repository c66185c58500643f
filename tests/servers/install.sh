#!/usr/bin/env bash
# Installs what the tests run against, from Debian's packages, when it is not there yet:
# PostgreSQL and Redis (tests/servers/plugin.py starts them), and Chromium with its driver for the
# browser tests (tests/test_report_browser.py) unless SOPGUARD_TEST_BROWSER=0. Quiet and idempotent:
# does nothing when the binaries exist.
# Servers that cannot be installed are an error in CI (CI set) and a warning elsewhere, where the
# tests that need them skip; a browser that cannot be installed is only a warning.
set -euo pipefail

servers=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null ||
    servers+=(postgresql)
command -v redis-server >/dev/null || servers+=(redis-server)
browser=()
if [[ "${SOPGUARD_TEST_BROWSER:-1}" != 0 ]]; then
    command -v chromium >/dev/null || browser+=(chromium)
    command -v chromedriver >/dev/null || browser+=(chromium-driver)  # selenium drives it
fi
wanted=("${servers[@]}" "${browser[@]}")
[[ ${#wanted[@]} -gt 0 ]] || exit 0

warn() {
    echo "tests/servers/install.sh: $*" >&2
}

servers_not_installed() {
    warn "could not install ${servers[*]}: $1"
    [[ -z "${CI:-}" ]] || exit 1
    warn "the tests that need them will skip"
}

browser_not_installed() {
    warn "could not install ${browser[*]}: $1; the browser tests will skip"
}

# Nothing can be installed: say why and what is missing, then stop.
cannot_install() {
    [[ ${#servers[@]} -eq 0 ]] || servers_not_installed "$1"
    [[ ${#browser[@]} -eq 0 ]] || browser_not_installed "$1"
    exit 0
}

# apt-get, quietly: its output is shown only when it fails.
apt_quietly() {
    local log status=0
    log=$(mktemp)
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get -q "$@" >"$log" 2>&1 || status=$?
    [[ $status -eq 0 ]] || cat "$log" >&2
    rm -f "$log"
    return "$status"
}

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    cannot_install "not root; run 'apt-get install -y ${wanted[*]}' as root"
fi
command -v apt-get >/dev/null || cannot_install "no apt-get on this machine"

echo "Installing ${wanted[*]} from Debian's packages (once)..."
apt_quietly update || cannot_install "apt-get update failed"
if [[ ${#servers[@]} -gt 0 ]]; then
    apt_quietly install -y "${servers[@]}" || servers_not_installed "apt-get install failed"
fi
if [[ ${#browser[@]} -gt 0 ]]; then
    apt_quietly install -y "${browser[@]}" || browser_not_installed "apt-get install failed"
fi
