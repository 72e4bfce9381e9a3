"""What maildiag knows about each mail protocol, in one place.

Discovery, analysis, autoconfig, the command line and the reports read
these specs instead of keeping their own per-protocol tables, so a port, an
SRV service or a display name is written down once. (The session code of
each protocol lives next to its parser: ``imap.py``, ``pop3.py``,
``smtp.py``.)
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import Struct

from ..finding_codes import FindingCode
from ..model import Protocol, Security


class ProtocolSpec(Struct, frozen=True):
    protocol: Protocol
    name: str  # "IMAP": how people and the mail clients' dialogs name it
    long_name: str  # "SMTP submission": for sentences about the service
    service_name: str  # "mail submission": what an SRV record of it announces
    tls_name: str  # "IMAPS": the implicit-TLS variant's common name
    # Standard ports: STARTTLS (plaintext first, RFC 6186), TLS (RFC 8314 §3).
    # A deliberately unencrypted connection uses the STARTTLS port.
    starttls_port: int
    tls_port: int
    # RFC 6186 §3 and RFC 8314 §5.1.
    srv_starttls: str
    srv_tls: str
    starttls_command: str  # "STLS" for POP3
    # Host names providers commonly use, in the order mail clients try them;
    # "" is the bare domain.
    host_guesses: tuple[str, ...]
    incoming: bool  # a mailbox protocol (IMAP, POP3), not sending
    unreachable_code: FindingCode  # the finding when no endpoint of it works

    def port(self, security: Security) -> int:
        return self.tls_port if security is Security.TLS else self.starttls_port

    def srv_service(self, security: Security) -> str:
        return self.srv_tls if security is Security.TLS else self.srv_starttls

    def slot_name(self, security: Security) -> str:
        """ "imaps", "submission": the SRV service's label, as the --PORT options name it."""
        return self.srv_service(security).split(".")[0].lstrip("_")

    @property
    def key(self) -> str:
        """The protocol's word on command lines and in files: imap, pop3, smtp."""
        return self.protocol.value


SPECS: Mapping[Protocol, ProtocolSpec] = {
    Protocol.IMAP: ProtocolSpec(
        Protocol.IMAP,
        name="IMAP",
        long_name="IMAP",
        service_name="IMAP",
        tls_name="IMAPS",
        starttls_port=143,
        tls_port=993,
        srv_starttls="_imap._tcp",
        srv_tls="_imaps._tcp",
        starttls_command="STARTTLS",
        host_guesses=("imap", "mail", ""),
        incoming=True,
        unreachable_code=FindingCode.IMAP_UNREACHABLE,
    ),
    Protocol.POP3: ProtocolSpec(
        Protocol.POP3,
        name="POP3",
        long_name="POP3",
        service_name="POP3",
        tls_name="POP3S",
        starttls_port=110,
        tls_port=995,
        srv_starttls="_pop3._tcp",
        srv_tls="_pop3s._tcp",
        starttls_command="STLS",
        host_guesses=("pop3", "pop", "mail", ""),
        incoming=True,
        unreachable_code=FindingCode.POP3_UNREACHABLE,
    ),
    Protocol.SMTP: ProtocolSpec(
        Protocol.SMTP,
        name="SMTP",
        long_name="SMTP submission",
        service_name="mail submission",
        tls_name="SMTPS",
        starttls_port=587,
        tls_port=465,
        srv_starttls="_submission._tcp",
        srv_tls="_submissions._tcp",
        starttls_command="STARTTLS",
        host_guesses=("smtp", "mail", ""),
        incoming=False,
        unreachable_code=FindingCode.SUBMISSION_UNREACHABLE,
    ),
}

# IMAP first: mail stays on the server, so every device sees the same.
ORDER: tuple[Protocol, ...] = (Protocol.IMAP, Protocol.POP3, Protocol.SMTP)
INCOMING: tuple[Protocol, ...] = tuple(p for p in ORDER if SPECS[p].incoming)
PROBED_SECURITIES: tuple[Security, ...] = (Security.STARTTLS, Security.TLS)

# The six things maildiag probes, STARTTLS before implicit TLS per protocol.
SLOTS: tuple[tuple[Protocol, Security, int], ...] = tuple(
    (p, s, SPECS[p].port(s)) for p in ORDER for s in PROBED_SECURITIES
)
# SRV service -> the slot it announces.
SRV_SERVICES: Mapping[str, tuple[Protocol, Security]] = {
    SPECS[p].srv_service(s): (p, s) for p, s, _ in SLOTS
}
BY_KEY: Mapping[str, Protocol] = {SPECS[p].key: p for p in ORDER}


def spec(protocol: Protocol) -> ProtocolSpec:
    return SPECS[protocol]
