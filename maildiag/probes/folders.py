"""The folders of an IMAP account: which are marked for special use, and which hold the space.

Read-only: LIST (or Gmail's XLIST) and STATUS, never SELECT or EXAMINE of a
folder. The folder sizes are asked only when the quota is pressing, since it
costs one STATUS round trip per folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model import Folder, FolderListing
from ..protocols import imap
from ..protocols.capabilities import Capabilities
from ..protocols.lines import ProtocolError
from .sessions import ImapSession

# Enough for any real account; a server listing more (public folders, a
# shared namespace of a whole company) is not read further.
MAX_FOLDERS = 1000
# STATUS round trips at most, special-use folders first.
MAX_MEASURED = 50
# Seconds of the run's deadline to leave for the rest of the probe.
_DEADLINE_MARGIN = 2.0


def listing_for(capabilities: Capabilities) -> FolderListing:
    """The best way this server offers to see special-use folders."""
    if capabilities.special_use and capabilities.list_extended:
        return FolderListing.SPECIAL_USE
    # RFC 6154 §1: with SPECIAL-USE announced, plain LIST carries the attributes.
    if capabilities.special_use or not capabilities.xlist:
        return FolderListing.LIST
    return FolderListing.XLIST


def list_folders(
    session: ImapSession, capabilities: Capabilities
) -> tuple[FolderListing, list[imap.ListEntry]]:
    """LIST "" "*" in the best form offered; a refused extended form falls back to plain LIST."""
    listing = listing_for(capabilities)
    attempts = [listing] if listing is FolderListing.LIST else [listing, FolderListing.LIST]
    for attempt in attempts:
        if attempt is FolderListing.SPECIAL_USE:
            # RFC 6154 §5.1 with RFC 5258 §3: the SPECIAL-USE return option.
            untagged, done = session.run("LIST", "", "*", b"RETURN", b"(SPECIAL-USE)")
        else:
            untagged, done = session.run(attempt.value.upper(), "", "*")
        if done.ok:
            return attempt, _entries(untagged)
    return FolderListing.FAILED, []


def _entries(responses: Sequence[imap.Untagged]) -> list[imap.ListEntry]:
    entries: list[imap.ListEntry] = []
    for response in responses:
        if response.keyword not in ("LIST", "XLIST"):
            continue
        try:
            entries.append(imap.parse_list(response))
        except (ValueError, ProtocolError):
            continue
        if len(entries) >= MAX_FOLDERS:
            break
    return entries


def measure(
    session: ImapSession,
    entries: Sequence[imap.ListEntry],
    capabilities: Capabilities,
    inbox: tuple[int | None, int | None],
) -> dict[str, tuple[int | None, int | None]]:
    """(messages, size in bytes) by wire name, from STATUS; INBOX's is given.

    RFC 8438: STATUS=SIZE adds SIZE; without it only message counts are known.
    """
    items = b"(MESSAGES SIZE)" if capabilities.status_size else b"(MESSAGES)"
    measured: dict[str, tuple[int | None, int | None]] = {}
    candidates = sorted(
        (e for e in entries if e.selectable),
        key=lambda e: not e.special_use,  # stable: special-use first, then in listed order
    )
    for entry in candidates:
        if entry.wire_name.upper() == "INBOX":
            measured[entry.wire_name] = inbox
            continue
        if len(measured) >= MAX_MEASURED:
            break
        if session.conn.deadline.remaining() < _DEADLINE_MARGIN + session.conn.timeout:
            break
        if not entry.wire_name.isascii():
            continue  # raw UTF-8 names need UTF8=ACCEPT enabled (RFC 6855)
        try:
            untagged, done = session.run("STATUS", entry.wire_name, items)
        except ValueError:
            continue  # a name no quoted string can carry
        if not done.ok:
            continue
        for response in untagged:
            if response.keyword != "STATUS":
                continue
            try:
                _, values = imap.parse_status(response)
            except (ValueError, ProtocolError):
                continue
            measured[entry.wire_name] = (values.get("MESSAGES"), values.get("SIZE"))
    return measured


def folders_from(
    entries: Sequence[imap.ListEntry], measured: dict[str, tuple[int | None, int | None]]
) -> tuple[Folder, ...]:
    return tuple(
        Folder(e.name, e.special_use, *measured.get(e.wire_name, (None, None)))
        for e in entries
        if e.selectable
    )
