"""Sockets, TLS and timeouts: the only place where probes touch the network.

Protocol parsers (``maildiag.protocols``) never see a socket; this module
moves bytes between a socket and a parser, under two clocks: each operation
may take at most ``timeout`` seconds *in total* (a server that drips one byte
per second cannot stretch a read forever), and nothing outlives the run's
``Deadline``.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from .deadline import Deadline, DeadlineExceeded
from .model import PortCheck, PortState, TlsFailure

T = TypeVar("T")

RECEIVE_CHUNK = 64 * 1024


class TransportError(Exception):
    """A network step failed; subclasses say how."""


class ConnectRefused(TransportError):
    """The peer answered the connection attempt with a reset: nothing listens."""


class ConnectTimeout(TransportError):
    """No answer to the connection attempt: packets are dropped on the way."""


class Unreachable(TransportError):
    """The network reported the host or network unreachable (ICMP)."""


class ReadTimeout(TransportError):
    """The peer did not send what was expected in time."""


class PeerClosed(TransportError):
    """The peer closed the connection."""


class TlsHandshakeError(TransportError):
    """The TLS handshake failed (``stalled`` tells a timeout from an error)."""

    def __init__(
        self, message: str, *, stalled: bool = False, reason: TlsFailure | None = None
    ) -> None:
        super().__init__(message)
        self.stalled = stalled
        self.reason = reason


class PlaintextInsteadOfTls(TlsHandshakeError):
    """The server answered the ClientHello in plaintext.

    The connection is still usable as a plaintext one: what the server sent
    is read again by the next ``receive``, so the protocol's own parser can
    tell a greeting from a 421 or a BYE. ``received`` is that first chunk.
    """

    def __init__(self, message: str, received: bytes) -> None:
        super().__init__(message, reason=TlsFailure.PLAINTEXT)
        self.received = received


class ReadLimitExceeded(TransportError):
    """More bytes arrived than ``Connection.limit_reads`` allows, without a reply."""


_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN}


class Connection:
    """A connected TCP (later maybe TLS) stream with bounded, timed reads."""

    def __init__(self, sock: socket.socket, *, timeout: float, deadline: Deadline) -> None:
        deadline.track(sock)  # cancelling the run shuts it down (see Deadline.cancel)
        self._sock: socket.socket = sock
        self.timeout = timeout
        self.deadline = deadline
        self.bytes_received = 0
        self.closed = False
        self._tls: ssl.SSLObject | None = None
        self._tls_in = self._tls_out = ssl.MemoryBIO()
        self._pending = b""  # plaintext read during a failed handshake, not yet parsed
        self._read_limit: int | None = None

    @classmethod
    def open(
        cls,
        address: str,
        port: int,
        *,
        timeout: float,
        deadline: Deadline,
        connect_timeout: float | None = None,
    ) -> Connection:
        """Connects within ``connect_timeout`` (default: ``timeout``, the bound of later steps).

        The socket is the run's from the start, so cancelling wakes the connect.
        """
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            deadline.track(sock)
            sock.settimeout(
                deadline.step_timeout(timeout if connect_timeout is None else connect_timeout)
            )
            sock.connect((address, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(sock, timeout=timeout, deadline=deadline)
        except BaseException as exc:
            deadline.untrack(sock)
            sock.close()
            if deadline.cancelled and not isinstance(exc, DeadlineExceeded):
                raise DeadlineExceeded("the run's deadline passed while connecting") from exc
            _raise_connect_error(exc, address, port, deadline)

    @property
    def local_address(self) -> str | None:
        """This machine's address on the connection (what the server sees, unless NATed)."""
        try:
            return str(self._sock.getsockname()[0])
        except OSError:
            return None

    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    @property
    def tls_socket(self) -> ssl.SSLObject:
        """The TLS layer (cipher, version, peer chain) once ``start_tls`` succeeded."""
        assert self._tls is not None
        return self._tls

    def _operation_end(self) -> float:
        return time.monotonic() + self.deadline.step_timeout(self.timeout)

    def _check_open(self) -> None:
        if self.closed:
            raise PeerClosed("the connection was already given up")

    def limit_reads(self, max_bytes: int) -> None:
        """From now on, receiving more than ``max_bytes`` raises ``ReadLimitExceeded``."""
        self._read_limit = self.bytes_received + max_bytes

    def send(self, data: bytes) -> None:
        self._check_open()
        end = self._operation_end()
        if self._tls is not None:
            try:
                # A memory BIO takes everything at once; the records go out below.
                self._tls.write(data)
            except ssl.SSLError as exc:
                raise PeerClosed(f"TLS error while sending: {exc.reason or exc}") from exc
            data = self._tls_out.read()
        self._send_raw(data, end, "sending")

    def _send_raw(self, data: bytes, end: float, what: str) -> None:
        view = memoryview(data)
        while view:
            self._sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                sent = self._sock.send(view)
            except TimeoutError as exc:
                raise self._timeout_error(what) from exc
            except OSError as exc:
                self._raise_if_cancelled(what, exc)
                if isinstance(exc, BrokenPipeError | ConnectionResetError):
                    raise PeerClosed("the server closed the connection") from exc
                raise
            view = view[sent:]

    def _recv_raw(self, end: float, what: str) -> bytes:
        """One chunk from the socket (b"" at EOF), waiting at most until ``end``."""
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise self._timeout_error(what)
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(RECEIVE_CHUNK)
        except TimeoutError as exc:
            raise self._timeout_error(what) from exc
        except OSError as exc:
            self._raise_if_cancelled(what, exc)
            if isinstance(exc, ConnectionResetError):
                raise PeerClosed("the server reset the connection") from exc
            raise
        if not data:
            # A cancelled run shuts the socket down: that end of stream is ours.
            self._raise_if_cancelled(what, None)
        return data

    def _raise_if_cancelled(self, what: str, cause: BaseException | None) -> None:
        if self.deadline.cancelled:
            raise DeadlineExceeded(f"the run's deadline passed while {what}") from cause

    def receive(self, parse: Callable[[], T | None], feed: Callable[[bytes], None]) -> T:
        """Reads until ``parse()`` yields something, feeding every chunk to ``feed``.

        The whole wait is bounded by the per-operation timeout and the deadline.
        """
        self._check_open()
        end = self._operation_end()
        while True:
            item = parse()
            if item is not None:
                return item
            if self._read_limit is not None and self.bytes_received >= self._read_limit:
                raise ReadLimitExceeded(f"no complete reply in the first {self._read_limit} bytes")
            data = self._read_some(end)
            self.bytes_received += len(data)
            feed(data)

    def _read_some(self, end: float) -> bytes:
        what = "waiting for the server"
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._tls is None:
            data = self._recv_raw(end, what)
            if not data:
                raise PeerClosed("the server closed the connection")
            return data
        while True:
            try:
                data = self._tls.read(RECEIVE_CHUNK)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError as exc:
                raise PeerClosed("the server closed the connection") from exc
            except ssl.SSLError as exc:
                raise PeerClosed(f"TLS error while reading: {exc.reason or exc}") from exc
            else:
                if not data:
                    raise PeerClosed("the server closed the connection")
                return data
            # TLS 1.3 post-handshake messages may want an answer (KeyUpdate).
            if self._tls_out.pending:
                self._send_raw(self._tls_out.read(), end, what)
            raw = self._recv_raw(end, what)
            if not raw:
                raise PeerClosed("the server closed the connection")
            self._tls_in.write(raw)

    def _timeout_error(self, what: str) -> Exception:
        if self.deadline.expired:
            return DeadlineExceeded(f"the run's deadline passed while {what}")
        return ReadTimeout(f"no answer within {self.timeout:g} s while {what}")

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> float:
        """Runs the TLS handshake; returns its duration in seconds.

        TLS runs over memory BIOs, so every byte the server sends passes
        through here before OpenSSL sees it. That is what lets a plaintext
        answer be told apart and kept intact: a plaintext service on an
        implicit-TLS port greets (or says 421) instead of sending a
        ServerHello, and OpenSSL, reading straight from the socket, would
        consume the first five bytes of it as a record header and report only
        "wrong version number". Peeking the socket first would race with the
        server's greeting. The whole handshake is bounded by one time limit.
        """
        started = time.monotonic()
        end = self._operation_end()
        self._check_open()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
        except (ssl.SSLError, ValueError) as exc:
            raise TlsHandshakeError(f"cannot start TLS: {exc}") from exc
        what = "waiting for the TLS handshake"
        first = True
        try:
            while True:
                try:
                    tls.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                if outgoing.pending:
                    self._send_raw(outgoing.read(), end, what)
                if done:
                    break
                data = self._recv_raw(end, what)
                if not data:
                    raise TlsHandshakeError("the server closed the connection during the handshake")
                if first and _looks_like_plaintext(data):
                    # Kept for the protocol's parser: the next receive() reads it.
                    self._pending = data
                    raise PlaintextInsteadOfTls(
                        "the server does not speak TLS on this port (it answered in plaintext)",
                        data,
                    )
                first = False
                incoming.write(data)
        except ssl.SSLError as exc:
            raise TlsHandshakeError(_describe_ssl_error(exc), reason=_ssl_failure(exc)) from exc
        except ReadTimeout as exc:
            raise TlsHandshakeError(
                f"the server did not complete the TLS handshake within {self.timeout:g} s",
                stalled=True,
            ) from exc
        except PeerClosed as exc:
            raise TlsHandshakeError(
                "the server closed the connection during the handshake"
            ) from exc
        except OSError as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise TlsHandshakeError(f"network error during the handshake: {exc}") from exc
        self._tls, self._tls_in, self._tls_out = tls, incoming, outgoing
        return time.monotonic() - started

    def close(self) -> None:
        """Closes the socket; later sends and reads raise ``PeerClosed`` at once."""
        self.closed = True
        self.deadline.untrack(self._sock)
        try:
            self._sock.close()
        except OSError:
            pass


def check_ports(
    address: str, ports: Sequence[int], *, timeout: float, deadline: Deadline
) -> tuple[PortCheck, ...]:
    """Plain TCP connects to ``ports`` of ``address``, all at once, closed as soon as they open.

    Nothing is sent. One time limit for all of them (the step's timeout,
    bounded by the deadline), so two ports cost no more than one.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    started = time.monotonic()
    end = started + deadline.step_timeout(timeout)
    checks: dict[int, PortCheck] = {}
    pending: dict[socket.socket, int] = {}
    with selectors.DefaultSelector() as selector:
        try:
            for port in dict.fromkeys(ports):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex((address, port))
                if code not in (0, errno.EINPROGRESS):
                    checks[port] = PortCheck(address, port, _port_state(code), None, 0.0)
                    sock.close()
                    continue
                pending[sock] = port
                selector.register(sock, selectors.EVENT_WRITE)
            while pending and (remaining := end - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    sock = key.fileobj  # type: ignore[assignment]
                    port = pending.pop(sock)
                    selector.unregister(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    local = None
                    if code == 0:
                        local = str(sock.getsockname()[0])
                    seconds = time.monotonic() - started
                    checks[port] = PortCheck(address, port, _port_state(code), local, seconds)
                    sock.close()
        finally:
            for sock, port in pending.items():
                sock.close()
                checks[port] = PortCheck(
                    address, port, PortState.TIMEOUT, None, time.monotonic() - started
                )
    return tuple(checks[port] for port in dict.fromkeys(ports) if port in checks)


def _port_state(code: int) -> PortState:
    if code == 0:
        return PortState.OPEN
    if code == errno.ECONNREFUSED:
        return PortState.REFUSED
    return PortState.TIMEOUT


def _raise_connect_error(
    exc: BaseException, address: str, port: int, deadline: Deadline
) -> NoReturn:
    if isinstance(exc, ConnectionRefusedError):
        raise ConnectRefused(f"connection to {address}:{port} refused") from exc
    if isinstance(exc, DeadlineExceeded):
        raise exc
    if isinstance(exc, TimeoutError):
        if deadline.expired:
            raise DeadlineExceeded("the run's deadline passed while connecting") from exc
        raise ConnectTimeout(f"no answer from {address}:{port}") from exc
    if isinstance(exc, OSError):
        if exc.errno in _UNREACHABLE_ERRNOS:
            raise Unreachable(f"{address}:{port}: {exc.strerror}") from exc
        raise TransportError(f"{address}:{port}: {exc.strerror or exc}") from exc
    raise exc


def _looks_like_plaintext(data: bytes) -> bool:
    # A TLS record starts with its content type, 0x14-0x18 (RFC 8446 §5.1),
    # an SSLv2 one with a byte >= 0x80; SMTP, IMAP and POP3 greetings start
    # with a printable ASCII character ("2", "4", "*", "+", "-").
    return 0x20 <= data[0] <= 0x7E


_NO_COMMON_VERSION = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
)


def _ssl_failure(exc: ssl.SSLError) -> TlsFailure | None:
    # The probe's client accepts TLS 1.0 to 1.3 (see tls.client_context), so
    # no version in common means the server offers only older ones.
    if getattr(exc, "reason", None) in _NO_COMMON_VERSION:
        return TlsFailure.OUTDATED_PROTOCOL
    return None


def _describe_ssl_error(exc: ssl.SSLError) -> str:
    reason: str | None = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return "the server closed the connection during the handshake"
    if reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS on this port (it answered in plaintext)"
    if reason in _NO_COMMON_VERSION:
        return "no TLS version in common with the server"
    if reason in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER"):
        return "no cipher in common with the server (handshake failure alert)"
    if reason:
        return reason.replace("_", " ").lower()
    return str(exc)
