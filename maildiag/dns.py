"""DNS lookups for discovery: a small stub resolver over dnspython's ``dns.query``.

dnspython's own ``Resolver`` sends UDP from unconnected sockets, so a
nameserver port with nothing behind it looks exactly like one that drops
packets: the query waits for the whole timeout. Here each nameserver gets a
*connected* UDP socket, handed to ``dns.query.send_udp`` and
``dns.query.receive_udp``, which lets the kernel report the ICMP "port
unreachable" as ECONNREFUSED at once; a truncated answer is asked again with
``dns.query.tcp``. What stays ours is the policy around them: the round of
servers with retransmission inside the step's time, and the classification
of every outcome into one ``DnsLookupError.kind`` that the rest of maildiag
can explain to people. (``dns.query.udp_with_fallback`` would hide which leg
failed and give TCP only the UDP retry slot, so the two legs are called one
by one.)"""

from __future__ import annotations

import ipaddress
import math
import re
import select
import socket
import threading
import time
from typing import Any, cast
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
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
    Safe to share between threads.
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
        self._families_at_once = families_at_once
        if nameserver is None:
            self._servers = tuple(_system_nameservers())
        else:
            self._servers = (_parse_nameserver(nameserver),)

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The nameservers asked, as "address:port"."""
        return tuple(str(s) for s in self._servers)

    def query(self, name: str, rdtype: str, deadline: Deadline | None = None) -> list[Any]:
        """The rdata of *name*/*rdtype*; raises ``DnsLookupError``."""
        return self._query(name, rdtype, deadline)[0]

    def _query(
        self, name: str, rdtype: str, deadline: Deadline | None
    ) -> tuple[list[Any], str | None]:
        """The rdata, and the name a CNAME chain led to (None when there was none)."""
        label = f"{name.rstrip('.')} {rdtype.upper()}"
        try:
            qname = _query_name(name)
            qtype = dns.rdatatype.from_text(rdtype)
        except (dns.exception.DNSException, ValueError) as e:
            raise DnsLookupError(
                DnsFailure.ERROR, f"cannot ask for this name: {e}", label
            ) from None
        lifetime = self._lifetime(deadline, label)
        request = dns.message.make_query(qname, qtype, use_edns=0, payload=_EDNS_PAYLOAD)
        response = self._exchange(request, lifetime, label, deadline)
        return self._answer(response, label)

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
        literal = host.strip()
        if literal.startswith("[") and literal.endswith("]"):
            literal = literal[1:-1]
        try:
            return [str(ipaddress.ip_address(literal))], None
        except ValueError:
            pass
        # One lifetime for both questions, so an address lookup costs no more
        # than any other query; both are asked at once (one round trip, not two).
        budget = Deadline(self._lifetime(deadline, f"{host} A"), within=deadline)
        answers: dict[str, tuple[list[Any], str | None] | Exception] = {}

        def ask(rdtype: str) -> None:
            try:
                answers[rdtype] = self._query(host, rdtype, budget)
            except DnsLookupError as e:
                # Kept without its traceback and raised below as a copy: an
                # error referred to by the frames of its own traceback would
                # be a reference cycle, which only the garbage collector frees.
                answers[rdtype] = e.with_traceback(None)
            except Exception as e:  # raised in the asking thread, below
                answers[rdtype] = e

        if self._families_at_once:
            aaaa = threading.Thread(target=ask, args=("AAAA",), name="dns-aaaa", daemon=True)
            aaaa.start()
            ask("A")
            aaaa.join()  # bounded: the AAAA query has the same budget as the A query
        else:
            ask("A")
            if not _settles_the_name(answers["A"]):
                ask("AAAA")
        errors: list[DnsLookupError] = []
        found: list[str] = []
        alias: str | None = None
        for rdtype in ("A", "AAAA"):
            answer = answers.get(rdtype)
            if answer is None:
                continue  # AAAA not asked: A's answer settled it
            if isinstance(answer, Exception) and not isinstance(answer, DnsLookupError):
                raise answer
            if isinstance(answer, DnsLookupError):
                # When the name does not exist or the nameserver is silent, that
                # is the answer, whatever the AAAA question got.
                if rdtype == "A" and _settles_the_name(answer):
                    raise answer.copy()
                errors.append(answer)
                continue
            records, canonical = answer
            found += [r.address for r in records]
            alias = alias or canonical
        if found:
            return found, alias
        for error in errors:
            if error.kind is not DnsFailure.NODATA:
                raise error.copy()
        raise DnsLookupError(
            DnsFailure.NODATA, "the name has no A or AAAA record", f"{host} A/AAAA"
        )

    # -- internals ---------------------------------------------------------

    def _lifetime(self, deadline: Deadline | None, label: str) -> float:
        if deadline is None:
            return self.timeout
        try:
            return deadline.step_timeout(self.timeout)
        except DeadlineExceeded:
            raise DnsLookupError(
                DnsFailure.TIMEOUT, "not asked: the run's deadline had already passed", label
            ) from None

    def _exchange(
        self,
        request: dns.message.Message,
        lifetime: float,
        label: str,
        deadline: Deadline | None = None,
    ) -> dns.message.Message:
        """The answer of the first server that gives one; a cancelled ``deadline`` ends the wait."""
        try:
            return self._ask(request, lifetime, label, deadline or Deadline.unlimited())
        except DeadlineExceeded:
            raise DnsLookupError(
                DnsFailure.TIMEOUT, "stopped: the run's deadline passed", label
            ) from None

    def _ask(
        self, request: dns.message.Message, lifetime: float, label: str, deadline: Deadline
    ) -> dns.message.Message:
        if not self._servers:
            raise DnsLookupError(
                DnsFailure.NO_NAMESERVERS, "no nameserver is configured (/etc/resolv.conf)", label
            )
        end = time.monotonic() + lifetime
        alive = list(self._servers)
        sockets: dict[_Nameserver, _UdpSocket] = {}
        failures: dict[_Nameserver, tuple[DnsFailure, str]] = {}
        wait = _FIRST_RETRY
        try:
            while alive and time.monotonic() < end:
                for server in list(alive):
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        response = self._udp(
                            server, sockets, request, min(wait, remaining), deadline
                        )
                        if response is None:
                            continue  # not yet: sent again on the next round
                        if response is _TRUNCATED:
                            response = self._tcp(server, request, end)
                    except _ServerFailed as e:
                        failures[server] = (e.kind, e.detail)
                        alive.remove(server)
                        continue
                    if response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                        return response
                    failures[server] = _rcode_failure(response.rcode(), server)
                    alive.remove(server)
                wait *= 2
        finally:
            for sock in sockets.values():
                deadline.untrack(sock)
                sock.close()
        for server in alive:
            failures[server] = (
                DnsFailure.TIMEOUT,
                f"no answer from {server} within {lifetime:.1f} s",
            )
        kind, _ = min(failures.values(), key=lambda f: _KIND_RANK.get(f[0], 9))
        detail = "; ".join(d for k, d in failures.values() if k == kind)
        raise DnsLookupError(kind, detail, label)

    def _udp(
        self,
        server: _Nameserver,
        sockets: dict[_Nameserver, _UdpSocket],
        request: dns.message.Message,
        wait: float,
        deadline: Deadline,
    ) -> dns.message.Message | None:
        """One UDP transmission of ``request`` and up to ``wait`` seconds for its answer.

        None when no answer came in time, ``_TRUNCATED`` for one too big for UDP.
        """
        try:
            sock = sockets.get(server)
            if sock is None:
                sock = _UdpSocket(server.family, socket.SOCK_DGRAM)
                sockets[server] = sock
                deadline.track(sock)  # cancelling the run wakes the wait below
                # Non-blocking, as dns.query wants it: a read never waits
                # past the poll() in _UdpSocket.recvfrom.
                sock.setblocking(False)
                # Connected, so an ICMP port-unreachable surfaces as
                # ECONNREFUSED instead of a silent timeout.
                sock.connect((server.address, server.port))
            # dnspython's two halves rather than dns.query.udp, which passes
            # the address to sendto() even with a socket given: on a connected
            # socket BSD and macOS refuse that with EISCONN. With no
            # destination send_udp uses send() and receive_udp takes what the
            # kernel lets through, which a connected socket limits to the
            # server's address.
            expiration = time.time() + wait  # dnspython counts in wall-clock time
            sock.expiration = expiration
            dns.query.send_udp(sock, request, None, expiration)
            # The socket is kept between tries: a reply to an earlier
            # transmission (same id, same question) is as good as one to this
            # one. ignore_errors skips datagrams that are not an answer to
            # this question (garbage, stale or forged replies) instead of
            # failing on them (CVE-2023-29483, fixed in dnspython 2.6).
            response, _, _ = dns.query.receive_udp(
                sock,
                None,
                expiration,
                raise_on_truncation=True,
                ignore_errors=True,
                query=request,
            )
            return cast(dns.message.Message, response)
        except dns.exception.Timeout:
            return None  # not yet: sent again on the next round
        except dns.message.Truncated:
            return _TRUNCATED
        except ConnectionRefusedError:
            raise _ServerFailed(
                DnsFailure.NO_NAMESERVERS, f"nothing answers DNS on {server} (connection refused)"
            ) from None
        except OSError as e:
            if deadline.cancelled:
                raise DeadlineExceeded("the run was cancelled") from None
            raise _ServerFailed(
                DnsFailure.NO_NAMESERVERS, f"cannot reach {server}: {e.strerror or e}"
            ) from None

    def _tcp(
        self, server: _Nameserver, request: dns.message.Message, end: float
    ) -> dns.message.Message:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise _ServerFailed(
                DnsFailure.TIMEOUT, f"{server} truncated the answer and time ran out"
            )
        # RFC 7766 §5: a truncated UDP answer is asked again over TCP.
        try:
            return dns.query.tcp(request, server.address, timeout=remaining, port=server.port)
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

    def _answer(self, response: dns.message.Message, label: str) -> tuple[list[Any], str | None]:
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


class _UdpSocket(socket.socket):
    """A connected UDP socket for ``dns.query``: waits with poll(), fails once shut down.

    ``dns.query`` waits for each datagram with a selector of its own (an
    epoll instance: three system calls and a dozen objects, ~5 % of a batch
    worker's CPU). ``recvfrom`` here first waits with one poll() until
    ``expiration``; dnspython's wait then only runs after a wake-up without
    a datagram. ``Deadline.cancel`` shuts the sockets of a run down to wake
    their waits: a shut-down UDP socket polls readable, but a non-blocking
    read of it still says "try again" (Linux), so the read fails instead.
    """

    aborted = False
    expiration: float | None = None  # time.time(), as dnspython counts

    def shutdown(self, how: int, /) -> None:
        self.aborted = True
        super().shutdown(how)

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        if self.expiration is not None and not self.aborted and _POLL is not None:
            remaining = self.expiration - time.time()
            poller = _POLL()
            poller.register(self, select.POLLIN)
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
                raise dns.exception.Timeout
        if self.aborted:
            raise ConnectionAbortedError("the run was cancelled")
        return super().recvfrom(bufsize, flags)


_POLL = getattr(select, "poll", None)  # not on Windows: dnspython's own wait is used there


class _ServerFailed(Exception):
    def __init__(self, kind: DnsFailure, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


# Marks a UDP answer with TC set: it must be fetched again over TCP.
_TRUNCATED = dns.message.Message()


def _rcode_failure(rcode: dns.rcode.Rcode, server: _Nameserver) -> tuple[DnsFailure, str]:
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
