#!/usr/bin/env bash
# Unpacks Courier-IMAP, Courier POP3 and courier-authlib for the lab (tests/lab/courier.py).
#
# On Debian 12 courier-imap conflicts with dovecot-imapd, which the Dovecot lab
# needs, so Courier is never installed with dpkg: its .debs (and the libraries
# of their dependency closure that are not installed already) are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into lab-run/courier/root
# (git-ignored). No maintainer script runs and nothing of Courier lands in /usr
# or /etc; the lab runs each daemon in a private mount namespace in which the
# unpacked directories are bind-mounted over the paths Courier has compiled in.
#
# The host gets only what those bind mounts and Courier's privilege drop need:
# the system user `courier` and three empty mount points (/etc/courier,
# /usr/lib/courier, /usr/lib/courier-authlib).
#
# Idempotent and non-interactive: safe on every `make test`, including CI on a
# fresh Debian 12 machine as root with no stdin.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${MAILDIAG_COURIER_DIR:-$HERE/../../lab-run/courier}"
ROOT="$DEST/root"
STAMP="$DEST/.unpacked"

# Courier itself: exact package names of Debian 12 (bookworm).
COURIER_PACKAGES=(courier-imap courier-pop courier-base courier-authdaemon courier-authlib
    courier-authlib-userdb)
# Libraries only Courier (among the lab's servers) links against: always
# unpacked next to it, whatever the host has, so the tree does not depend on
# what other packages happen to be installed (or removed) later. Found
# through LD_LIBRARY_PATH (see tests/lab/courier.py).
OWN_LIBRARIES=(libcourier-unicode4 libgamin0 libidn12 libltdl7 libpcre3)
# Base libraries of Debian 12; unpacked only if missing.
BASE_LIBRARIES=(libgdbm6 libgnutls30 libcrypt1 libstdc++6 libgcc-s1 libpam0g)
MOUNT_POINTS=(/etc/courier /usr/lib/courier /usr/lib/courier-authlib)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

host_ready() {
    id courier >/dev/null 2>&1 || return 1
    local m
    for m in "${MOUNT_POINTS[@]}"; do [ -d "$m" ] || return 1; done
}

wanted=("${COURIER_PACKAGES[@]}" "${OWN_LIBRARIES[@]}")
for lib in "${BASE_LIBRARIES[@]}"; do
    installed "$lib" || wanted+=("$lib")
done
wanted_line="${wanted[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted_line" ] && host_ready; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-courier.sh: the Courier lab is not set up and this is not root; run as root:" >&2
    echo "  bash tests/lab/install-courier.sh" >&2
    exit 1
fi

id courier >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --home-dir /var/lib/courier \
        --shell /usr/sbin/nologin courier
for m in "${MOUNT_POINTS[@]}"; do
    # Only ever an empty directory we create; an existing one (a real Courier
    # installed later with dpkg) is left alone and merely hidden by the lab.
    [ -d "$m" ] || mkdir -p "$m"
done

work="$(mktemp -d /tmp/maildiag-courier-debs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# `apt-get download` writes into the current directory as the _apt user.
chmod 0777 "$work"
cd "$work"
if ! apt-get download -q "${wanted[@]}" >/dev/null 2>"$work/err"; then
    # A fresh machine has no package lists yet.
    apt-get update -q >/dev/null
    apt-get download -q "${wanted[@]}" >/dev/null
fi

rm -rf "$ROOT.new"
mkdir -p "$ROOT.new"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$ROOT.new"
done
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
printf '%s\n' "$wanted_line" >"$STAMP"

for exe in usr/sbin/couriertcpd usr/lib/courier/courier/imaplogin usr/bin/imapd \
    usr/lib/courier/courier/courierpop3login usr/lib/courier/courier/courierpop3d \
    usr/bin/couriertls usr/lib/courier/courier-authlib/authdaemond usr/sbin/makeuserdb; do
    [ -x "$ROOT/$exe" ] || { echo "install-courier.sh: $exe missing after unpacking" >&2; exit 1; }
done
