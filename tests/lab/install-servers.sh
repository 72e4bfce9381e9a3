#!/usr/bin/env bash
# Installs the Debian packages the real-mail-server lab needs (Dovecot, Postfix).
# Idempotent and non-interactive: safe to run on every `make test`, including CI
# on a fresh Debian 12 machine as root with no stdin. Changes nothing in /etc
# beyond what the packages themselves install, and leaves no mail daemon running:
# the lab starts its own private instances from tests/lab/real.py.
set -euo pipefail

PACKAGES=(dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix ca-certificates)

have_all() {
    command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || return 1
    [ -x /usr/sbin/postfix ] || return 1
    [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ] && [ -x /usr/lib/dovecot/lmtp ]
}

if have_all; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-servers.sh: Dovecot/Postfix missing and not root; run as root:" >&2
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

# invoke-rc.d asks policy-rc.d before starting a service; 101 means "not allowed".
# Without it the package scripts start system dovecot/postfix, which bind
# 0.0.0.0:143/993/110/995/25 and collide with the lab's per-address listeners.
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    created_policy=1
fi

# "No configuration" keeps postfix's postinst from asking questions and from
# writing a main.cf that relays or listens anywhere.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold)
apt-get update -q
apt-get install "${apt_opts[@]}" "${PACKAGES[@]}"

# Belt and braces: if an init system started the system daemons anyway
# (e.g. no policy-rc.d honoured), stop them so their 0.0.0.0 ports are free.
if pgrep -x dovecot >/dev/null 2>&1 && [ -f /etc/dovecot/dovecot.conf ]; then
    doveadm stop >/dev/null 2>&1 || true
fi
if [ -f /etc/postfix/main.cf ] && postfix status >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
fi

have_all || { echo "install-servers.sh: packages installed but binaries missing" >&2; exit 1; }
