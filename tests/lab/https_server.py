"""A tiny HTTPS server for autoconfig tests and the demo.

Routes are keyed by "host/path" (the Host header, then the path without the
query string), so one server can play several virtual hosts::

    with HttpsServer({"autoconfig.example.test/mail/config-v1.1.xml": Reply(body=xml)},
                     cert, address="127.0.0.51") as server:
        ...
    server.requests  # what was asked, with the SNI name the client sent

Unknown routes answer 404. The listening port defaults to 443 because
autoconfig URLs carry no port.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trustme


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    drip: float = 0.0  # seconds between single bytes of the whole answer (slowloris)


@dataclass(frozen=True)
class Request:
    sni: str | None
    host: str
    path: str  # with the query string


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HttpsServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes are what the failure-twin tests provoke on purpose.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # per socket operation, so abandoned connections end
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        owner = self.server.owner
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        owner.requests.append(Request(owner._sni.get(self.connection), host, self.path))
        reply = owner.routes.get(f"{host}{self.path.split('?', 1)[0]}")
        if reply is None:
            reply = Reply(404, b"not found\n")
        elif isinstance(reply, bytes):
            reply = Reply(body=reply)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drip:
            self._drip(reply)
            return
        self.send_response(reply.status)
        headers = {"Content-Type": "application/xml", "Content-Length": str(len(reply.body))}
        headers.update(reply.headers)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client stopped reading (e.g. the 1 MiB cap)
        self.close_connection = True

    def _drip(self, reply: Reply) -> None:
        head = f"HTTP/1.1 {reply.status} OK\r\nContent-Type: application/xml\r\n"
        head += f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n"
        try:
            for byte in head.encode() + reply.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(reply.drip)
        except OSError:
            pass  # the client gave up, as it should
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class HttpsServer:
    """Serves *routes* over TLS with *cert* (a trustme leaf) on *address*:*port*."""

    def __init__(
        self,
        routes: Mapping[str, Reply | bytes],
        cert: trustme.LeafCert,
        address: str = "127.0.0.50",
        port: int = 443,
    ) -> None:
        self.routes = dict(routes)
        self.address = address
        self.requests: list[Request] = []
        self._sni: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        context.sni_callback = self._remember_sni
        self._server = _Server((address, port), _Handler, bind_and_activate=False)
        self._server.owner = self
        self._server.server_bind()
        self._server.server_activate()
        # The handshake runs in the handler thread (on first read), so a
        # client that never completes it cannot block accept().
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def _remember_sni(self, sslobj: Any, name: str | None, _context: Any) -> None:
        if name is not None:
            self._sni[sslobj] = name

    def __enter__(self) -> HttpsServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def silent_listener(address: str, port: int = 443) -> socket.socket:
    """A socket that accepts connections (the kernel does) but never speaks:
    for timeout tests."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(16)
    return sock
