#!/usr/bin/env bash
# Unpacks Exim 4 (exim4-daemon-light) for the lab's submission servers (tests/lab/exim.py).
#
# On Debian 12 exim4-daemon-light/-heavy conflict with postfix (both provide
# mail-transport-agent), which the Dovecot/Postfix lab needs, so Exim is never
# installed with dpkg: its .debs, and the shared libraries it links against
# that are not installed already, are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` into lab-run/exim/root (git-ignored). No
# maintainer script runs and nothing of Exim lands in /usr or /etc.
#
# The light daemon is enough: it has the plaintext (PLAIN/LOGIN) and cram_md5
# authenticators and GnuTLS (`exim4 -bV`: "Authenticators: cram_md5 external
# plaintext"). The lab runs it with `-C <config>`; as root that needs no
# TRUSTED_CONFIG_LIST entry: Exim binds its ports as root, then runs as
# Debian-exim. The host gets only that system user, which Exim refuses to
# start without ("failed to find uid for user name Debian-exim").
#
# Idempotent and non-interactive: safe on every `make test`, including CI on a
# fresh Debian 12 machine as root with no stdin.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${MAILDIAG_EXIM_DIR:-$HERE/../../lab-run/exim}"
ROOT="$DEST/root"
STAMP="$DEST/.unpacked"
EXIM_USER=Debian-exim

EXIM_PACKAGES=(exim4-daemon-light exim4-base)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

binary_ready() {
    [ -x "$ROOT/usr/sbin/exim4" ] && [ -f "$STAMP" ] || return 1
    # A library that went missing since (or was never unpacked) shows here.
    ! LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu" \
        ldd "$ROOT/usr/sbin/exim4" | grep -q "not found"
}

if binary_ready && id "$EXIM_USER" >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-exim.sh: Exim for the lab is missing and this is not root; run as root:" >&2
    echo "  bash tests/lab/install-exim.sh" >&2
    exit 1
fi

if ! id "$EXIM_USER" >/dev/null 2>&1; then
    # The same account exim4-base's postinst would create.
    useradd --system --user-group --home-dir /var/spool/exim4 --no-create-home \
        --shell /usr/sbin/nologin "$EXIM_USER"
fi

if binary_ready; then
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt, which cannot write a root-only
# mktemp directory.
chmod 0755 "$work"
chown _apt "$work" 2>/dev/null || true

download() {
    (cd "$work" && apt-get download -q "$@" >/dev/null)
}

if ! download "${EXIM_PACKAGES[@]}"; then
    apt-get update -q >/dev/null
    download "${EXIM_PACKAGES[@]}"
fi

# Shared libraries from the daemon's Depends that this machine lacks (on a
# fresh Debian 12: libidn12). Those installed are used as they are.
missing=()
depends="$(dpkg-deb -f "$work"/exim4-daemon-light_*.deb Depends)"
IFS=',' read -ra fields <<<"$depends"
for field in "${fields[@]}"; do
    name="$(echo "${field%%|*}" | sed -e 's/([^)]*)//' -e 's/[[:space:]]//g')"
    case "$name" in
        lib*) installed "$name" || missing+=("$name") ;;
    esac
done
if [ "${#missing[@]}" -gt 0 ]; then
    download "${missing[@]}"
fi

rm -rf "$ROOT"
mkdir -p "$ROOT"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$ROOT"
done
printf '%s\n' "$(cd "$work" && ls ./*.deb)" >"$STAMP"

binary_ready || {
    echo "install-exim.sh: unpacked Exim, but $ROOT/usr/sbin/exim4 cannot run:" >&2
    LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu" \
        ldd "$ROOT/usr/sbin/exim4" | grep "not found" >&2 || true
    exit 1
}
