"""DNS lookups for discovery: a small stub resolver over dnspython's messages.

dnspython builds the questions and reads the answers (``dns.message``), and
asks again over TCP when an answer comes back truncated (``dns.query.tcp``).
What stays ours is how the questions travel and what their outcome means:
``Lookups`` keeps many questions in flight from one thread, each nameserver
on one *connected* UDP socket (so a port with nothing behind it fails at
once instead of timing out), asks the servers in turn with retransmission
inside each question's time, and classifies every outcome into one
``DnsLookupError.kind`` that the rest of maildiag can explain to people.
(dnspython's ``dns.query`` waits for one question per call, and its
``udp_with_fallback`` would hide which leg failed.)"""

from __future__ import annotations

import ipaddress
import re
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import idna
from msgspec import Struct

from maildiag.deadline import Deadline, DeadlineExceeded
from maildiag.model import DnsFailure

__all__ = [
    "DnsLookupError",
    "InvalidDomain",
    "Resolver",
    "to_ascii",
    "to_unicode",
]

# DNS Flag Day 2020: 1232 bytes avoids IP fragmentation on almost every path;
# anything larger comes back truncated and is fetched again over TCP.
_EDNS_PAYLOAD = 1232
# The first retransmission of an unanswered UDP query; later ones back off.
_FIRST_RETRY = 1.0


class DnsLookupError(Exception):
    """A lookup that gave no records, and why.

    ``kind`` is one of: nxdomain, nodata, servfail, timeout, no_nameservers,
    refused, error.
    """

    def __init__(self, kind: DnsFailure, detail: str, query: str) -> None:
        super().__init__(f"{query}: {detail}")
        self.kind = kind
        self.detail = detail
        self.query = query

    def copy(self) -> DnsLookupError:
        """The same error, without a traceback (to raise it again)."""
        return DnsLookupError(self.kind, self.detail, self.query)


class InvalidDomain(ValueError):
    """The text given is not a usable domain name."""


# --------------------------------------------------------------------------
# Domain names

_LDH_LABEL = re.compile(r"[a-z0-9-]+")


def to_ascii(domain: str) -> str:
    """The IDNA A-label form of *domain*, lower case, without a trailing dot.

    Uses IDNA 2008 with the UTS #46 mapping, so "Müller.Example" and
    full-width input become "xn--mller-kva.example". Raises ``InvalidDomain``
    with a message meant for the person who typed it.
    """
    text = domain.strip()
    _reject_non_domains(domain, text)
    # Named here rather than left to idna, whose wording changes between versions.
    bad = next((c for c in text if c.isascii() and not (c.isalnum() or c in "-.")), None)
    if bad is not None:
        raise InvalidDomain(f"{domain!r} is not a valid domain name: {bad!r} is not allowed")
    try:
        # UTS #46 §4: case folding, width mapping, NFC, and the ideographic
        # full stops that some keyboards produce instead of ".".
        mapped = idna.uts46_remap(text, std3_rules=True, transitional=False)
    except idna.IDNAError as e:
        raise InvalidDomain(f"{domain!r} is not a valid domain name: {e}") from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise InvalidDomain("the domain is empty")
    labels = [_label_to_ascii(domain, label) for label in mapped.split(".")]
    result = ".".join(labels)
    # RFC 1035 §2.3.4: 255 octets on the wire is 253 characters in text form.
    if len(result) > 253:
        raise InvalidDomain(
            f"{_short(domain)} is too long: {len(result)} characters, at most 253 are allowed"
        )
    return result


def to_unicode(domain: str) -> str:
    """The display (U-label) form of an ASCII domain; labels that do not
    decode are kept as they are."""
    name = domain.strip().rstrip(".").lower()
    out = []
    for label in name.split("."):
        if label.startswith("xn--"):
            try:
                label = idna.ulabel(label)
            except idna.IDNAError:
                pass
        out.append(label)
    return ".".join(out)


def _reject_non_domains(original: str, text: str) -> None:
    if not text or text == ".":
        raise InvalidDomain("the domain is empty")
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        hint = f"; try {host!r}" if host else ""
        raise InvalidDomain(f"{original!r} looks like a URL: give the domain only{hint}")
    if "@" in text:
        after = text.rsplit("@", 1)[1]
        hint = f"; try {after!r}" if after else ""
        raise InvalidDomain(
            f"{original!r} is an email address: give the domain, not the address{hint}"
        )
    if "/" in text:
        host = text.split("/", 1)[0]
        hint = f"; try {host!r}" if host else ""
        raise InvalidDomain(f"{original!r} looks like a URL or a path: give the domain only{hint}")


def _label_to_ascii(domain: str, label: str) -> str:
    if not label:
        raise InvalidDomain(
            f"{_short(domain)} has an empty label (two dots in a row, or a leading dot)"
        )
    if label.isascii():
        if not _LDH_LABEL.fullmatch(label):
            bad = next(c for c in label if not (c.isalnum() or c == "-"))
            raise InvalidDomain(
                f"{_short(domain)} contains {bad!r}: only letters, digits and '-' are allowed"
            )
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)
            except idna.IDNAError as e:
                raise InvalidDomain(
                    f"{_short(domain)}: {label!r} is not a valid IDNA A-label ({e})"
                ) from None
        ascii_label = label
    else:
        try:
            ascii_label = idna.alabel(label).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidDomain(
                f"{_short(domain)}: {label!r} is not a valid internationalised label ({e})"
            ) from None
    # RFC 5891 §4.2.3.1 / RFC 952: a label neither starts nor ends with "-".
    if ascii_label.startswith("-") or ascii_label.endswith("-"):
        raise InvalidDomain(f"{_short(domain)}: the label {label!r} starts or ends with a hyphen")
    if len(ascii_label) > 63:
        raise InvalidDomain(
            f"{_short(domain)}: the label {label[:20]!r}... is {len(ascii_label)} characters"
            " long, at most 63 are allowed"
        )
    return ascii_label


def _short(domain: str) -> str:
    return repr(domain if len(domain) <= 80 else domain[:77] + "...")


def _query_name(name: str) -> dns.name.Name:
    # Service labels such as "_imaps" are not host names, so only labels that
    # need IDNA go through to_ascii.
    labels = [
        label if label.isascii() else to_ascii(label) for label in name.rstrip(".").split(".")
    ]
    return dns.name.from_text(".".join(labels) + ".")


# --------------------------------------------------------------------------
# Resolver


class _Nameserver(Struct, frozen=True):
    address: str
    port: int

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET

    def __str__(self) -> str:
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def _parse_nameserver(text: str) -> _Nameserver:
    spec = text.strip()
    port = 53
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad nameserver {text!r}: expected [IPv6]:port")
        if rest:
            port = _parse_port(text, rest[1:])
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _parse_port(text, port_text)
    else:
        host = spec
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"bad nameserver {text!r}: give an IP address, optionally with :port"
        ) from None
    return _Nameserver(str(address), port)


def parse_nameserver(text: str) -> str:
    """``ADDR[:PORT]`` as ``address:port`` (``[v6]:port``); ValueError with a sentence.

    Accepts 127.0.0.1, 127.0.0.1:5353, ::1 and [::1]:53; refuses host names,
    ports outside 1-65535, an unclosed bracket and the empty string.
    """
    return str(_parse_nameserver(text))


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad nameserver {text!r}: {port_text!r} is not a port number")
    return int(port_text)


def _system_nameservers() -> list[_Nameserver]:
    import dns.resolver  # reads resolv.conf; a run with --nameserver never needs it

    try:
        config = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        return []
    servers = []
    for entry in config.nameservers:
        # resolv.conf holds plain addresses; a scoped IPv6 one ("fe80::1%eth0")
        # is skipped rather than guessed at.
        if isinstance(entry, str):
            try:
                servers.append(_Nameserver(str(ipaddress.ip_address(entry)), config.port))
            except ValueError:
                continue
    return servers


# When several nameservers fail differently, the most telling reason wins:
# an answer that says "broken" beats silence, silence beats "nobody there".
# The most telling failure of several name servers is the one reported.
_KIND_RANK = {
    DnsFailure.SERVFAIL: 0,
    DnsFailure.REFUSED: 1,
    DnsFailure.ERROR: 2,
    DnsFailure.TIMEOUT: 3,
    DnsFailure.NO_NAMESERVERS: 4,
}


class Resolver:
    """Asks one nameserver (or the system's) and classifies what went wrong.

    Every query is bounded by ``min(timeout, deadline remaining)``; unanswered
    UDP queries are sent again within that time, never after it.
    Safe to share between threads: each call asks through ``Lookups`` of its
    own; ``lookups()`` gives several questions in flight at once.
    """

    def __init__(
        self, nameserver: str | None = None, timeout: float = 5.0, *, families_at_once: bool = True
    ) -> None:
        """``families_at_once``: an address lookup asks A and AAAA at the same time.

        That saves a round trip for every name that exists, and costs a second
        question for every name that does not (a guessed imap.<domain>), which
        one A answer would have settled. A single check wants the round trip;
        a batch of thousands of domains, sharing the nameserver, wants fewer questions.
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.families_at_once = families_at_once
        if nameserver is None:
            self.servers = tuple(_system_nameservers())
        else:
            self.servers = (_parse_nameserver(nameserver),)

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The nameservers asked, as "address:port"."""
        return tuple(str(s) for s in self.servers)

    def lookups(self, deadline: Deadline | None = None) -> Lookups:
        """Questions to ask together, from one thread; close it (``with``) when done."""
        return Lookups(self, deadline)

    def query(self, name: str, rdtype: str, deadline: Deadline | None = None) -> list[Any]:
        """The rdata of *name*/*rdtype*; raises ``DnsLookupError``."""
        with self.lookups(deadline) as lookups:
            return lookups.query(name, rdtype).result()

    def addresses(self, host: str, deadline: Deadline | None = None) -> list[str]:
        """IPv4 then IPv6 addresses of *host*; IP literals come back as they are."""
        return self.addresses_and_alias(host, deadline)[0]

    def addresses_and_alias(
        self, host: str, deadline: Deadline | None = None
    ) -> tuple[list[str], str | None]:
        """Like ``addresses``, and the canonical name when *host* is a CNAME (else None).

        The alias matters for MX targets: RFC 2181 §10.3 forbids an MX that
        names an alias, and some senders refuse to follow it.
        """
        with self.lookups(deadline) as lookups:
            return lookups.addresses_and_alias(host).result()

    def lifetime(self, deadline: Deadline | None, label: str) -> float:
        """How long a question may take: the timeout, cut to what is left of ``deadline``."""
        if deadline is None:
            return self.timeout
        try:
            return deadline.step_timeout(self.timeout)
        except DeadlineExceeded:
            raise DnsLookupError(
                DnsFailure.TIMEOUT, "not asked: the run's deadline had already passed", label
            ) from None


# --------------------------------------------------------------------------
# Questions in flight


_T = TypeVar("_T")
# What one question ended with: the records and the name a CNAME chain led
# to (None when there was none), or why there are none.
_Outcome = tuple[list[Any], str | None] | DnsLookupError
_Failure = tuple[DnsFailure, str]


class Answer(Generic[_T]):
    """A question in flight. ``result()`` waits for it: raises ``DnsLookupError``."""

    def __init__(
        self, lookups: Lookups, settled: Callable[[], bool], outcome: Callable[[], _T]
    ) -> None:
        self._lookups = lookups
        self._settled = settled
        self._outcome = outcome

    @property
    def done(self) -> bool:
        return self._settled()

    def result(self) -> _T:
        """The answer; waiting for it reads the answers to every other question too."""
        self._lookups.wait_for(self._settled)
        return self._outcome()


class _Asked:
    """One DNS message in flight: the servers left to ask, and when to move on."""

    __slots__ = (
        "label",
        "request",
        "wire",
        "end",
        "lifetime",
        "alive",
        "turn",
        "wait",
        "next_move",
        "failures",
        "response",
        "error",
        "outcome",
        "then",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self.request: dns.message.Message | None = None
        self.wire = b""
        self.end = 0.0
        self.lifetime = 0.0
        self.alive: list[_Nameserver] = []
        self.turn = 0  # the server in alive asked last
        self.wait = _FIRST_RETRY  # how long each server gets in this round
        self.next_move = 0.0  # when to ask the next server (or the same again)
        self.failures: dict[_Nameserver, _Failure] = {}
        self.response: dns.message.Message | None = None
        self.error: DnsLookupError | None = None
        self.outcome: _Outcome | None = None  # read from response or error once
        self.then: list[Callable[[], None]] = []

    @property
    def settled(self) -> bool:
        return self.response is not None or self.error is not None


class Lookups:
    """Questions asked together, all answered from the thread that waits for them.

    Each question is sent the moment it is asked; waiting for any one
    (``Answer.result``) reads every answer that arrives meanwhile. So a
    discovery's twenty questions cost one thread and one poll() per wake-up,
    not a thread each: on loopback, threads took ~2.4x the CPU (every answer
    is a hand-over of the interpreter lock between threads).

    Each nameserver gets one *connected* UDP socket, shared by the questions
    and matched to them by id and question. dnspython's own ``Resolver``
    sends from unconnected sockets, so a nameserver port with nothing behind
    it would look exactly like one that drops packets; connected, the kernel
    reports the ICMP "port unreachable" as ECONNREFUSED at once. Datagrams
    that answer no question (garbage, stale or forged replies) are skipped
    (CVE-2023-29483). For each question the servers are asked in turn, each
    for ``wait`` seconds, doubled every round, within the question's
    lifetime; a truncated answer is asked again with ``dns.query.tcp``
    (blocking: the other questions wait meanwhile, bounded by its lifetime).
    A cancelled deadline shuts the sockets down and ends every question.

    Not to be shared between threads.
    """

    def __init__(self, resolver: Resolver, deadline: Deadline | None = None) -> None:
        self._resolver = resolver
        self._deadline = deadline or Deadline.unlimited()
        self._in_flight: dict[int, _Asked] = {}  # by message id
        self._sockets: dict[_Nameserver, socket.socket] = {}
        self._dead: dict[_Nameserver, _Failure] = {}
        self._selector: selectors.BaseSelector | None = None
        self._closed = False

    def __enter__(self) -> Lookups:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends every question still in flight and closes the sockets."""
        self._closed = True
        while self._in_flight:
            asked = next(iter(self._in_flight.values()))
            self._settle(asked, error=_stopped(asked.label))
        for sock in self._sockets.values():
            self._deadline.untrack(sock)
            sock.close()
        self._sockets.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    # -- questions ---------------------------------------------------------

    def query(self, name: str, rdtype: str) -> Answer[list[Any]]:
        """The rdata of *name*/*rdtype*, asked now."""
        asked = self._ask(name, rdtype)
        return Answer(self, lambda: asked.settled, lambda: _records(self._outcome(asked))[0])

    def addresses_and_alias(self, host: str) -> Answer[tuple[list[str], str | None]]:
        """IPv4 then IPv6 addresses of *host*, and its canonical name when it is a CNAME.

        A and AAAA share one lifetime, so an address lookup costs no more
        time than any other question. Without ``families_at_once`` AAAA is
        asked only when the A answer leaves the question open.
        """
        literal = host.strip()
        if literal.startswith("[") and literal.endswith("]"):
            literal = literal[1:-1]
        try:
            address = str(ipaddress.ip_address(literal))
        except ValueError:
            pass
        else:
            return Answer(self, lambda: True, lambda: ([address], None))
        try:
            end = time.monotonic() + self._resolver.lifetime(self._deadline, f"{host} A")
        except DnsLookupError as e:
            # Kept without its traceback: its frames hold the error (a reference cycle).
            error = e.with_traceback(None)
            return Answer(self, lambda: True, lambda: _raise(error))
        asked = {"A": self._ask(host, "A", end)}

        def ask_aaaa() -> None:
            if "AAAA" not in asked and not _settles_the_name(self._outcome(asked["A"])):
                asked["AAAA"] = self._ask(host, "AAAA", end)

        if self._resolver.families_at_once:
            asked["AAAA"] = self._ask(host, "AAAA", end)
        elif asked["A"].settled:
            ask_aaaa()
        else:
            asked["A"].then.append(ask_aaaa)

        def settled() -> bool:
            a = asked["A"]
            if not a.settled:
                return False
            if _settles_the_name(self._outcome(a)):
                return True  # whatever the AAAA question gets
            aaaa = asked.get("AAAA")
            return aaaa is not None and aaaa.settled

        return Answer(
            self,
            settled,
            lambda: _combine_addresses(
                host, {rdtype: self._outcome(a) for rdtype, a in asked.items() if a.settled}
            ),
        )

    def wait_for(self, settled: Callable[[], bool]) -> None:
        """Reads answers and moves on to the next servers until ``settled()``."""
        try:
            while not settled() and self._in_flight:
                if self._deadline.cancelled:
                    raise DeadlineExceeded("the run was cancelled")
                now = time.monotonic()
                for asked in [a for a in self._in_flight.values() if a.next_move <= now]:
                    if not asked.settled:
                        self._move_on(asked, now)
                if settled() or not self._in_flight:
                    break
                timeout = min(a.next_move for a in self._in_flight.values()) - time.monotonic()
                assert self._selector is not None  # a question in flight was sent
                for key, _ in self._selector.select(max(timeout, 0.0)):
                    self._read(key.data, key.fileobj)  # type: ignore[arg-type]
        except DeadlineExceeded:
            while self._in_flight:
                asked = next(iter(self._in_flight.values()))
                self._settle(asked, error=_stopped(asked.label))

    # -- internals ---------------------------------------------------------

    def _ask(self, name: str, rdtype: str, end: float | None = None) -> _Asked:
        """Sends a question to the first server; ``end``: when it must be answered by."""
        asked = _Asked(f"{name.rstrip('.')} {rdtype.upper()}")
        try:
            qname = _query_name(name)
            qtype = dns.rdatatype.from_text(rdtype)
        except (dns.exception.DNSException, ValueError) as e:
            asked.error = DnsLookupError(
                DnsFailure.ERROR, f"cannot ask for this name: {e}", asked.label
            )
            return asked
        now = time.monotonic()
        try:
            asked.lifetime = (
                self._resolver.lifetime(self._deadline, asked.label) if end is None else end - now
            )
        except DnsLookupError as e:
            asked.error = e.with_traceback(None)  # its frames hold ``asked``
            return asked
        if asked.lifetime <= 0:
            asked.error = DnsLookupError(
                DnsFailure.TIMEOUT, "not asked: the run's deadline had already passed", asked.label
            )
            return asked
        if not self._resolver.servers:
            asked.error = DnsLookupError(
                DnsFailure.NO_NAMESERVERS,
                "no nameserver is configured (/etc/resolv.conf)",
                asked.label,
            )
            return asked
        if self._deadline.cancelled or self._closed:
            asked.error = _stopped(asked.label)
            return asked
        request = dns.message.make_query(qname, qtype, use_edns=0, payload=_EDNS_PAYLOAD)
        while request.id in self._in_flight:  # ids must tell the answers apart
            request.id = dns.entropy.random_16()
        asked.request, asked.wire = request, request.to_wire()
        asked.end = now + asked.lifetime
        asked.alive = list(self._resolver.servers)
        self._in_flight[request.id] = asked
        try:
            self._send(asked, now)
        except DeadlineExceeded:
            self._settle(asked, error=_stopped(asked.label))
        return asked

    def _move_on(self, asked: _Asked, now: float) -> None:
        """The server asked last had its time: ask the next one (or all again, waiting longer)."""
        if now >= asked.end:
            self._give_up(asked)
            return
        if asked.alive[asked.turn] not in self._dead:  # a dead one is dropped by _send
            asked.turn += 1
            if asked.turn >= len(asked.alive):
                asked.turn = 0
                asked.wait *= 2
        self._send(asked, now)

    def _send(self, asked: _Asked, now: float) -> None:
        """Sends ``asked`` to its current server, or to the next that can be reached."""
        while asked.alive:
            if now >= asked.end:
                self._give_up(asked)
                return
            server = asked.alive[asked.turn]
            failure = self._dead.get(server) or self._transmit(server, asked.wire)
            if failure is None:
                asked.next_move = now + min(asked.wait, asked.end - now)
                return
            asked.failures[server] = failure
            del asked.alive[asked.turn]
            if asked.turn >= len(asked.alive):
                asked.turn = 0
                asked.wait *= 2
        self._give_up(asked)

    def _transmit(self, server: _Nameserver, wire: bytes) -> _Failure | None:
        """One datagram to ``server``; why it can't be asked, if it can't."""
        try:
            sock = self._sockets.get(server)
            if sock is None:
                sock = self._open(server)
            sock.send(wire)
        except ConnectionRefusedError:
            return self._kill(server, f"nothing answers DNS on {server} (connection refused)")
        except OSError as e:
            if self._deadline.cancelled:
                raise DeadlineExceeded("the run was cancelled") from None
            return self._kill(server, f"cannot reach {server}: {e.strerror or e}")
        return None

    def _open(self, server: _Nameserver) -> socket.socket:
        sock = socket.socket(server.family, socket.SOCK_DGRAM)
        try:
            self._deadline.track(sock)  # cancelling the run wakes the wait for answers
        except DeadlineExceeded:
            sock.close()
            raise
        self._sockets[server] = sock
        sock.setblocking(False)
        # Connected, so an ICMP port-unreachable surfaces as ECONNREFUSED
        # instead of a silent timeout, and only the server's datagrams come in.
        sock.connect((server.address, server.port))
        if self._selector is None:
            self._selector = _new_selector()
        self._selector.register(sock, selectors.EVENT_READ, server)
        return sock

    def _kill(self, server: _Nameserver, detail: str) -> _Failure:
        """``server`` can't be asked at all: every question moves on from it."""
        failure = self._dead[server] = (DnsFailure.NO_NAMESERVERS, detail)
        for asked in self._in_flight.values():
            if asked.alive and asked.alive[asked.turn] == server:
                asked.next_move = 0.0  # moved on by the wait loop
        return failure

    def _read(self, server: _Nameserver, sock: socket.socket) -> None:
        """The datagrams waiting on ``server``'s socket (a bounded number, then the timers)."""
        for _ in range(64):
            if self._deadline.cancelled:
                raise DeadlineExceeded("the run was cancelled")
            try:
                wire = sock.recv(65535)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                self._kill(server, f"nothing answers DNS on {server} (connection refused)")
                return
            except OSError as e:
                self._kill(server, f"cannot reach {server}: {e.strerror or e}")
                return
            self._take(server, wire)

    def _take(self, server: _Nameserver, wire: bytes) -> None:
        """One datagram from ``server``: an answer to a question in flight, or nothing."""
        truncated = False
        try:
            message = dns.message.from_wire(wire, raise_on_truncation=True)
        except dns.message.Truncated as e:
            # The header with TC set and very likely the question: an answer
            # only if it matches a question (a forged one must not end it).
            message, truncated = e.message(), True  # type: ignore[no-untyped-call]
        except Exception:  # noqa: BLE001 - not a DNS message at all
            return
        if not isinstance(message, dns.message.Message):
            return
        asked = self._in_flight.get(message.id)
        if asked is None or asked.request is None:
            return
        try:
            if not asked.request.is_response(message):
                return
        except Exception:  # noqa: BLE001 - a malformed reply answers nothing
            return
        now = time.monotonic()
        if truncated:
            try:
                message = self._tcp(server, asked)
            except _ServerFailed as e:
                self._drop(asked, server, (e.kind, e.detail), now)
                return
        rcode = message.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self._settle(asked, response=message)
        else:
            self._drop(asked, server, _rcode_failure(rcode, server), now)

    def _tcp(self, server: _Nameserver, asked: _Asked) -> dns.message.Message:
        remaining = asked.end - time.monotonic()
        if remaining <= 0:
            raise _ServerFailed(
                DnsFailure.TIMEOUT, f"{server} truncated the answer and time ran out"
            )
        import dns.query  # only for truncated answers: a check start-up spares its import

        assert asked.request is not None  # it was sent

        # RFC 7766 §5: a truncated UDP answer is asked again over TCP.
        try:
            return dns.query.tcp(asked.request, server.address, timeout=remaining, port=server.port)
        except dns.exception.Timeout:
            raise _ServerFailed(
                DnsFailure.TIMEOUT,
                f"no answer over TCP from {server} (the UDP answer was truncated)",
            ) from None
        except (OSError, EOFError, dns.exception.DNSException) as e:
            raise _ServerFailed(
                DnsFailure.ERROR,
                f"{server} truncated the UDP answer and TCP failed: {e or type(e).__name__}",
            ) from None

    def _drop(self, asked: _Asked, server: _Nameserver, failure: _Failure, now: float) -> None:
        """``server`` failed this question: the next one is asked at once if it was the current."""
        asked.failures[server] = failure
        if server not in asked.alive:
            return
        index = asked.alive.index(server)
        current = index == asked.turn
        del asked.alive[index]
        if index < asked.turn:
            asked.turn -= 1
        if not asked.alive:
            self._give_up(asked)
        elif current:
            if asked.turn >= len(asked.alive):
                asked.turn = 0
                asked.wait *= 2
            self._send(asked, now)

    def _give_up(self, asked: _Asked) -> None:
        """No server answered: the most telling failure is the question's."""
        for server in asked.alive:
            asked.failures[server] = self._dead.get(server) or (
                DnsFailure.TIMEOUT,
                f"no answer from {server} within {asked.lifetime:.1f} s",
            )
        kind, _ = min(asked.failures.values(), key=lambda f: _KIND_RANK.get(f[0], 9))
        detail = "; ".join(d for k, d in asked.failures.values() if k == kind)
        self._settle(asked, error=DnsLookupError(kind, detail, asked.label))

    def _settle(
        self,
        asked: _Asked,
        *,
        response: dns.message.Message | None = None,
        error: DnsLookupError | None = None,
    ) -> None:
        if asked.settled:
            return
        asked.response, asked.error = response, error
        if asked.request is not None:
            self._in_flight.pop(asked.request.id, None)
        for then in asked.then:
            then()
        asked.then.clear()

    def _outcome(self, asked: _Asked) -> _Outcome:
        if asked.outcome is None:
            if asked.error is None and asked.response is not None:
                try:
                    asked.outcome = _answer(asked.response, asked.label)
                except DnsLookupError as e:
                    asked.outcome = e.with_traceback(None)  # its frames hold ``asked``
            else:
                assert asked.error is not None, "asked for the outcome of a question in flight"
                asked.outcome = asked.error
        return asked.outcome


def _new_selector() -> selectors.BaseSelector:
    # poll() rather than epoll: one system call per wait instead of an epoll
    # instance to set up and tear down for a handful of sockets.
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()


def _stopped(label: str) -> DnsLookupError:
    return DnsLookupError(DnsFailure.TIMEOUT, "stopped: the run's deadline passed", label)


def _raise(error: DnsLookupError) -> Any:
    # A copy each time: an error referred to by the frames of its own
    # traceback would be a reference cycle, which only the garbage collector frees.
    raise error.copy()


def _records(outcome: _Outcome) -> tuple[list[Any], str | None]:
    if isinstance(outcome, DnsLookupError):
        _raise(outcome)
    assert not isinstance(outcome, DnsLookupError)
    return outcome


def _combine_addresses(host: str, answers: dict[str, _Outcome]) -> tuple[list[str], str | None]:
    """The addresses and alias from the A and (when asked) AAAA outcomes of *host*."""
    errors: list[DnsLookupError] = []
    found: list[str] = []
    alias: str | None = None
    for rdtype in ("A", "AAAA"):
        answer = answers.get(rdtype)
        if answer is None:
            continue  # AAAA not asked: A's answer settled it
        if isinstance(answer, DnsLookupError):
            # When the name does not exist or the nameserver is silent, that
            # is the answer, whatever the AAAA question got.
            if rdtype == "A" and _settles_the_name(answer):
                _raise(answer)
            errors.append(answer)
            continue
        records, canonical = answer
        found += [r.address for r in records]
        alias = alias or canonical
    if found:
        return found, alias
    for error in errors:
        if error.kind is not DnsFailure.NODATA:
            _raise(error)
    raise DnsLookupError(DnsFailure.NODATA, "the name has no A or AAAA record", f"{host} A/AAAA")


def _answer(response: dns.message.Message, label: str) -> tuple[list[Any], str | None]:
    if not isinstance(response, dns.message.QueryMessage):
        raise DnsLookupError(DnsFailure.ERROR, "the answer is not a query response", label)
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException as e:
        raise DnsLookupError(DnsFailure.ERROR, f"unusable answer: {e}", label) from None
    if response.rcode() == dns.rcode.NXDOMAIN:
        where = (
            ""
            if chain.canonical_name == response.question[0].name
            else (f" ({chain.canonical_name.to_text(omit_final_dot=True)}, via CNAME)")
        )
        raise DnsLookupError(DnsFailure.NXDOMAIN, f"the name does not exist{where}", label)
    if chain.answer is None:
        raise DnsLookupError(DnsFailure.NODATA, "the name exists but has no such record", label)
    canonical = None
    if chain.canonical_name != response.question[0].name:
        canonical = chain.canonical_name.to_text(omit_final_dot=True).lower()
    return list(chain.answer), canonical


class _ServerFailed(Exception):
    def __init__(self, kind: DnsFailure, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _rcode_failure(rcode: dns.rcode.Rcode, server: _Nameserver) -> _Failure:
    if rcode == dns.rcode.SERVFAIL:
        return (
            DnsFailure.SERVFAIL,
            f"{server} answered SERVFAIL (the zone's DNS is broken or unreachable)",
        )
    if rcode == dns.rcode.REFUSED:
        return DnsFailure.REFUSED, f"{server} refused to answer (REFUSED)"
    return DnsFailure.ERROR, f"{server} answered {dns.rcode.to_text(rcode)}"


def _settles_the_name(answer: object) -> bool:
    """An A answer after which no AAAA question can help: no such name, or no nameserver."""
    return isinstance(answer, DnsLookupError) and answer.kind in (
        DnsFailure.NXDOMAIN,
        DnsFailure.TIMEOUT,
        DnsFailure.NO_NAMESERVERS,
    )
