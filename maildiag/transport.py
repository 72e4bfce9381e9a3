"""Sockets, TLS and timeouts: the only place where probes touch the network.

Protocol parsers (``maildiag.protocols``) never see a socket; this module
moves bytes between a socket and a parser, under two clocks: each operation
may take at most ``timeout`` seconds *in total* (a server that drips one byte
per second cannot stretch a read forever), and nothing outlives the run's
``Deadline``.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from .deadline import Deadline, DeadlineExceeded

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

    def __init__(self, message: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.stalled = stalled


_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN}


class Connection:
    """A connected TCP (later maybe TLS) stream with bounded, timed reads."""

    def __init__(self, sock: socket.socket, *, timeout: float, deadline: Deadline) -> None:
        self._sock: socket.socket = sock
        self.timeout = timeout
        self.deadline = deadline
        self.bytes_received = 0
        self.closed = False

    @classmethod
    def open(cls, address: str, port: int, *, timeout: float, deadline: Deadline) -> Connection:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.step_timeout(timeout))
            sock.connect((address, port))
        except ConnectionRefusedError as exc:
            sock.close()
            raise ConnectRefused(f"connection to {address}:{port} refused") from exc
        except TimeoutError as exc:
            sock.close()
            if deadline.expired:
                raise DeadlineExceeded("the run's deadline passed while connecting") from exc
            raise ConnectTimeout(f"no answer from {address}:{port}") from exc
        except OSError as exc:
            sock.close()
            if exc.errno in _UNREACHABLE_ERRNOS:
                raise Unreachable(f"{address}:{port}: {exc.strerror}") from exc
            raise TransportError(f"{address}:{port}: {exc.strerror or exc}") from exc
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout=timeout, deadline=deadline)

    @property
    def is_tls(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    @property
    def tls_socket(self) -> ssl.SSLSocket:
        assert isinstance(self._sock, ssl.SSLSocket)
        return self._sock

    def _operation_end(self) -> float:
        return time.monotonic() + self.deadline.step_timeout(self.timeout)

    def _check_open(self) -> None:
        if self.closed:
            raise PeerClosed("the connection was already given up")

    def send(self, data: bytes) -> None:
        self._check_open()
        end = self._operation_end()
        view = memoryview(data)
        while view:
            self._sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                sent = self._sock.send(view)
            except TimeoutError as exc:
                raise self._timeout_error("sending") from exc
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise PeerClosed("the server closed the connection") from exc
            except ssl.SSLError as exc:
                raise PeerClosed(f"TLS error while sending: {exc.reason or exc}") from exc
            view = view[sent:]

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
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error("waiting for the server")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(RECEIVE_CHUNK)
            except TimeoutError as exc:
                raise self._timeout_error("waiting for the server") from exc
            except ConnectionResetError as exc:
                raise PeerClosed("the server reset the connection") from exc
            except ssl.SSLError as exc:
                raise PeerClosed(f"TLS error while reading: {exc.reason or exc}") from exc
            if not data:
                raise PeerClosed("the server closed the connection")
            self.bytes_received += len(data)
            feed(data)

    def _timeout_error(self, what: str) -> Exception:
        if self.deadline.expired:
            return DeadlineExceeded(f"the run's deadline passed while {what}")
        return ReadTimeout(f"no answer within {self.timeout:g} s while {what}")

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> float:
        """Wraps the socket in TLS; returns the handshake's duration in seconds.

        The handshake runs non-blocking under one total time limit, because a
        blocking handshake's timeout applies per read and a stalling peer
        could otherwise hold it for many timeouts.
        """
        started = time.monotonic()
        end = self._operation_end()
        raw = self._sock
        try:
            tls = context.wrap_socket(
                raw, server_hostname=server_hostname, do_handshake_on_connect=False
            )
        except (ssl.SSLError, ValueError) as exc:
            raise TlsHandshakeError(f"cannot start TLS: {exc}") from exc
        self._sock = tls
        tls.setblocking(False)
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    wait_read, wait_write = [tls], []
                except ssl.SSLWantWriteError:
                    wait_read, wait_write = [], [tls]
                remaining = end - time.monotonic()
                if remaining <= 0:
                    self._raise_stall()
                ready = select.select(wait_read, wait_write, [], remaining)
                if not any(ready):
                    self._raise_stall()
        except ssl.SSLError as exc:
            raise TlsHandshakeError(_describe_ssl_error(exc)) from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise TlsHandshakeError(
                "the server closed the connection during the handshake"
            ) from exc
        except OSError as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise TlsHandshakeError(f"network error during the handshake: {exc}") from exc
        finally:
            tls.setblocking(True)
        return time.monotonic() - started

    def _raise_stall(self) -> None:
        if self.deadline.expired:
            raise DeadlineExceeded("the run's deadline passed during the TLS handshake")
        raise TlsHandshakeError(
            f"the server did not complete the TLS handshake within {self.timeout:g} s",
            stalled=True,
        )

    def close(self) -> None:
        """Closes the socket; later sends and reads raise ``PeerClosed`` at once."""
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass


def _describe_ssl_error(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return "the server closed the connection during the handshake"
    if reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS on this port (it answered in plaintext)"
    if reason in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"):
        return "no TLS version in common with the server"
    if reason in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER"):
        return "no cipher in common with the server (handshake failure alert)"
    if reason:
        return reason.replace("_", " ").lower()
    return str(exc)
