#!/usr/bin/env bash
# Installs the Debian tools the tests use to check maildiag's outputs with the
# consumers' own code: promtool (package "prometheus") checks the exporter's
# exposition and the shipped alerting rules, and runs their unit tests.
# Idempotent and non-interactive, like install-servers.sh; leaves no Prometheus
# server running (policy-rc.d refuses the package's service start).
set -euo pipefail

PACKAGES=(prometheus)

have_all() {
    command -v promtool >/dev/null 2>&1
}

if have_all; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-tools.sh: promtool missing and not root; run as root:" >&2
    echo "  apt-get install ${PACKAGES[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [ "$created_policy" = 1 ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT

# invoke-rc.d asks policy-rc.d before starting a service; 101 means "not
# allowed". Without it the package would start a system Prometheus on :9090.
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    created_policy=1
fi

apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold)
apt-get update -q
apt-get install "${apt_opts[@]}" "${PACKAGES[@]}"

# If an init system started it anyway (policy-rc.d not honoured), stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi

have_all || { echo "install-tools.sh: prometheus installed but promtool missing" >&2; exit 1; }
