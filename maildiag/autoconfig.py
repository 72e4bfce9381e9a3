"""Thunderbird autoconfig: fetch and read a domain's config-v1.1.xml.

Host names are resolved with maildiag's own resolver (so ``--nameserver``
applies here too) and the connection goes to that address with the host name
as SNI and Host header. Every failure becomes an ``AutoconfigResult.error``;
nothing here raises for network trouble.
"""

from __future__ import annotations

import functools
import http.client
import io
import os
import ssl
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urljoin, urlsplit

import defusedxml
import defusedxml.ElementTree

from maildiag import __version__
from maildiag.deadline import Deadline, DeadlineExceeded
from maildiag.dns import DnsLookupError, InvalidDomain, Resolver, to_ascii
from maildiag.model import AutoconfigResult, AutoconfigServer, Protocol, Security
from maildiag.protocols.registry import BY_KEY, spec
from maildiag.tls import certifi_bundle
from maildiag.transport import (
    Connection,
    PeerClosed,
    ReadTimeout,
    TlsHandshakeError,
    TransportError,
)

__all__ = ["AutoconfigError", "autoconfig_urls", "fetch_autoconfig", "parse_autoconfig"]

MAX_BODY = 1024 * 1024
MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)

_SOCKET_TYPES = {"ssl": Security.TLS, "starttls": Security.STARTTLS, "plain": Security.PLAIN}


class AutoconfigError(ValueError):
    """The autoconfig document cannot be used."""


class _FetchError(Exception):
    pass


# --------------------------------------------------------------------------
# Parsing (no I/O)


def parse_autoconfig(xml_bytes: bytes, domain: str) -> tuple[AutoconfigServer, ...]:
    """The IMAP, POP3 and SMTP servers listed in a config-v1.1.xml document.

    Raises ``AutoconfigError`` for a document that is not well-formed XML or
    that has a DOCTYPE (entities are never expanded). Servers of other types,
    with unknown socket types or unusable host names are skipped.
    """
    # The document comes from whoever answers for autoconfig.DOMAIN, so it is
    # hostile until proven otherwise. A DOCTYPE is the only way to declare
    # entities, and config-v1.1.xml never needs one: refusing it outright
    # rules out entity expansion ("billion laughs") and external entities
    # (XXE, a file or URL fetched on the server's say-so). defusedxml does this
    # inside the parser, so it sees through every encoding expat accepts,
    # which a byte search for "<!DOCTYPE" would not.
    try:
        root = defusedxml.ElementTree.fromstring(xml_bytes, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise AutoconfigError(
            "the document has a DOCTYPE (a way to declare entities); refused unread"
        ) from None
    except defusedxml.DefusedXmlException:
        raise AutoconfigError(
            "the document has a DOCTYPE or entity declaration; refused unread"
        ) from None
    except ET.ParseError as e:
        raise AutoconfigError(f"not well-formed XML: {e}") from None
    if _local(root.tag) != "clientConfig":
        raise AutoconfigError(f"not an autoconfig document: the root is <{_local(root.tag)}>")
    servers: list[AutoconfigServer] = []
    for element in root.iter():
        if _local(element.tag) not in ("incomingServer", "outgoingServer"):
            continue
        server = _server(element, domain)
        if server is not None and server not in servers:
            servers.append(server)
    return tuple(servers)


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def _server(element: ET.Element, domain: str) -> AutoconfigServer | None:
    protocol = BY_KEY.get((element.get("type") or "").strip().lower())
    if protocol is None:
        return None
    if (_local(element.tag) == "outgoingServer") != (protocol is Protocol.SMTP):
        return None
    security = _SOCKET_TYPES.get((_child_text(element, "socketType") or "").lower())
    if security is None:
        return None
    hostname = (_child_text(element, "hostname") or "").replace("%EMAILDOMAIN%", domain)
    try:
        host = to_ascii(hostname)
    except InvalidDomain:
        return None  # e.g. an unfilled %EMAILLOCALPART% placeholder
    port_text = _child_text(element, "port")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    else:
        port = spec(protocol).port(security)
    return AutoconfigServer(protocol=protocol, host=host, port=port, security=security)


# --------------------------------------------------------------------------
# Fetching


def autoconfig_urls(domain_ascii: str, email: str | None = None) -> tuple[str, str]:
    """The two URLs Thunderbird asks a domain's own servers, in order."""
    query = f"?emailaddress={quote(email, safe='@')}" if email else ""
    return (
        f"https://autoconfig.{domain_ascii}/mail/config-v1.1.xml{query}",
        f"https://{domain_ascii}/.well-known/autoconfig/mail/config-v1.1.xml",
    )


def fetch_autoconfig(
    domain_ascii: str,
    resolver: Resolver,
    *,
    ca_file: str | None,
    timeout: float,
    deadline: Deadline,
    email: str | None = None,
) -> tuple[AutoconfigResult, ...]:
    """Try each autoconfig URL until one lists servers; one result per URL tried."""
    results = []
    for url in autoconfig_urls(domain_ascii, email):
        result = _try_url(url, domain_ascii, resolver, ca_file, timeout, deadline)
        results.append(result)
        if result.servers:
            break
    return tuple(results)


def _try_url(
    url: str,
    domain: str,
    resolver: Resolver,
    ca_file: str | None,
    timeout: float,
    deadline: Deadline,
) -> AutoconfigResult:
    try:
        body, final_url = _get(url, resolver, ca_file, timeout, deadline)
        servers = parse_autoconfig(body, domain)
    except (_FetchError, AutoconfigError) as e:
        return AutoconfigResult(url=url, error=str(e))
    except DeadlineExceeded:
        return AutoconfigResult(url=url, error="stopped: the run's deadline passed")
    if not servers:
        return AutoconfigResult(url=url, error="the document lists no IMAP, POP3 or SMTP server")
    return AutoconfigResult(
        url=url, servers=servers, final_url=final_url if final_url != url else None
    )


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None, _mtime: float | None) -> ssl.SSLContext:
    # certifi rather than the system store, so results do not depend on the
    # machine; the extra CA file is for private and test CAs.
    context = ssl.create_default_context(cafile=certifi_bundle())
    if ca_file:
        context.load_verify_locations(ca_file)
    return context


def _context_for(ca_file: str | None) -> ssl.SSLContext:
    try:
        mtime = os.stat(ca_file).st_mtime if ca_file else None
        return _tls_context(ca_file, mtime)
    except (OSError, ssl.SSLError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise _FetchError(f"cannot use the CA file {ca_file!r}: {reason}") from None


def _get(
    url: str, resolver: Resolver, ca_file: str | None, timeout: float, deadline: Deadline
) -> tuple[bytes, str]:
    """The document's bytes and the URL it finally came from."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise _FetchError(f"refused to follow a redirect to {url!r}: only https is used")
        try:
            port = parts.port or 443
        except ValueError:
            raise _FetchError(f"bad port in {url!r}") from None
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        status, location, body = _request(
            parts.hostname, port, target, resolver, ca_file, timeout, deadline
        )
        if status in _REDIRECTS:
            if not location:
                raise _FetchError(f"HTTP {status} redirect without a Location header")
            url = urljoin(url, location)
            continue
        if status != 200:
            raise _FetchError(f"HTTP {status} from {parts.hostname}")
        return body, url
    raise _FetchError(f"more than {MAX_REDIRECTS} redirects")


def _request(
    host: str,
    port: int,
    target: str,
    resolver: Resolver,
    ca_file: str | None,
    timeout: float,
    deadline: Deadline,
) -> tuple[int, str | None, bytes]:
    try:
        addresses = resolver.addresses(host, deadline)
    except DnsLookupError as e:
        raise _FetchError(f"cannot resolve {host}: {e.kind} ({e.detail})") from None
    context = _context_for(ca_file)
    # The mail probes' transport, for one way to connect and one TLS
    # handshake bounded as a whole: a blocking handshake's timeout applies
    # per read, and a stalling server could hold it for many timeouts.
    conn = _connect(host, addresses, port, timeout, deadline)
    try:
        try:
            conn.start_tls(context, host)
        except TlsHandshakeError as e:
            cause = e.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                reason = cause.verify_message or cause.reason
                raise _FetchError(f"TLS certificate of {host} not trusted: {reason}") from None
            if e.stalled:
                raise _FetchError(f"TLS handshake with {host} timed out") from None
            raise _FetchError(f"TLS handshake with {host} failed: {e}") from None
        return _http_get(conn, host, port, target, timeout, deadline)
    finally:
        conn.close()


def _connect(
    host: str, addresses: list[str], port: int, timeout: float, deadline: Deadline
) -> Connection:
    errors = []
    for address in addresses:
        try:
            return Connection.open(address, port, timeout=timeout, deadline=deadline)
        except TransportError as e:
            errors.append(str(e))
    raise _FetchError(f"cannot connect to {host} port {port} ({'; '.join(errors)})")


class _BoundedReader(io.RawIOBase):
    """The connection's bytes, but the whole answer must arrive by ``end``.

    A per-read timeout alone lets a server that drips one byte a second hold
    the run for as long as it likes; here every read gets only what is left.
    """

    def __init__(self, conn: Connection, end: float) -> None:
        self._conn = conn
        self._end = end
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            left = self._end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._conn.timeout = left  # what is left of the exchange's one step
            chunks: list[bytes] = []
            try:
                self._conn.receive(lambda: chunks[0] if chunks else None, chunks.append)
            except PeerClosed:
                return 0
            except ReadTimeout:
                raise TimeoutError from None
            self._pending = chunks[0]
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Source:
    """What ``http.client.HTTPResponse`` reads from: it only calls ``makefile``."""

    def __init__(self, reader: _BoundedReader) -> None:
        self._reader = reader

    def makefile(self, _mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


def _http_get(
    conn: Connection, host: str, port: int, target: str, timeout: float, deadline: Deadline
) -> tuple[int, str | None, bytes]:
    if any(c.isspace() or ord(c) < 32 for c in target):
        raise _FetchError(f"refused a URL with spaces or control characters: {target!r}")
    host_header = host if port == 443 else f"{host}:{port}"
    request = (
        f"GET {target} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        f"User-Agent: maildiag/{__version__}\r\n"
        "Accept: application/xml, text/xml;q=0.9, */*;q=0.1\r\n"
        "Connection: close\r\n\r\n"
    )
    # One step for the whole exchange: headers and body together must arrive
    # within the timeout (and the deadline). http.client only parses.
    end = time.monotonic() + deadline.step_timeout(timeout)
    source = _Source(_BoundedReader(conn, end))
    response = http.client.HTTPResponse(source, method="GET")  # type: ignore[arg-type]
    try:
        conn.send(request.encode("ascii"))
        response.begin()
        if response.status in _REDIRECTS:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > MAX_BODY:
            raise _FetchError(f"the answer from {host} is larger than 1 MiB ({length} bytes)")
        body = bytearray()
        while True:
            chunk = response.read(65536)
            if not chunk:
                return response.status, None, bytes(body)
            body += chunk
            if len(body) > MAX_BODY:
                raise _FetchError(f"the answer from {host} is larger than 1 MiB")
    except (TimeoutError, ReadTimeout):
        raise _FetchError(f"{host} did not answer the HTTP request in time") from None
    except (http.client.HTTPException, OSError, UnicodeError, TransportError) as e:
        raise _FetchError(f"bad HTTP answer from {host}: {e or type(e).__name__}") from None
    finally:
        response.close()
