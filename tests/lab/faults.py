"""Faults the Behaviour catalogue of fake_servers cannot express, for the fault suite.

``FakeMailHost`` plays a whole healthy (or uniformly broken) host; the fault
suite also needs one port that says something specific: a greeting with
escape sequences, an EHLO of 10,000 lines, a login answered after 5 s, an
error that echoes the SASL blob back. ``ScriptedServer`` listens on one port
and runs a *script* (a function of one ``ScriptConn``) per connection;
``Dialogue`` is a tiny healthy IMAP/POP3/SMTP responder whose every answer
can be replaced, so a scenario states only what differs from a good server.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Self

__all__ = ["Dialogue", "EchoingDialogue", "ScriptConn", "ScriptedServer"]

_MAX_LINE = 65536


class _Gone(Exception):
    """The client left or the server is stopping: the script ends."""


class ScriptConn:
    """One accepted connection, as a script sees it."""

    def __init__(self, sock: socket.socket, server: ScriptedServer, number: int) -> None:
        self.sock = sock
        self.server = server
        self.number = number
        self.tls = False
        self._buf = b""

    # -- sending -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Gone from exc

    def drip(self, data: bytes, interval: float) -> None:
        """``data`` one byte at a time, ``interval`` seconds apart."""
        for i in range(len(data)):
            self.send(data[i : i + 1])
            if self.server.stopping.wait(interval):
                raise _Gone

    # -- receiving -----------------------------------------------------------

    def readline(self) -> bytes:
        """One line without its ending (CRLF or LF); recorded on the server."""
        while b"\n" not in self._buf:
            if len(self._buf) > _MAX_LINE:
                raise _Gone
            try:
                chunk = self.sock.recv(65536)
            except (OSError, ValueError) as exc:
                raise _Gone from exc
            if not chunk:
                raise _Gone
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.removesuffix(b"\r")
        self.server.record(line)
        return line

    def read_some(self) -> bytes:
        """Whatever the client sends next, not framed as lines (a TLS ClientHello)."""
        try:
            chunk = self.sock.recv(65536)
        except (OSError, ValueError) as exc:
            raise _Gone from exc
        if not chunk:
            raise _Gone
        return chunk

    def wait(self, seconds: float) -> None:
        if self.server.stopping.wait(seconds):
            raise _Gone

    def hold(self) -> None:
        """Say nothing until the client leaves."""
        while True:
            try:
                if not self.sock.recv(65536):
                    raise _Gone
            except OSError as exc:
                raise _Gone from exc

    # -- TLS and endings -----------------------------------------------------

    def start_tls(self, context: ssl.SSLContext) -> None:
        self._buf = b""  # RFC 3207 §6: drop anything pipelined behind STARTTLS
        self.sock = self.server.swap(self.number, context.wrap_socket(self.sock, server_side=True))
        self.tls = True

    def reset(self) -> None:
        """Close with a RST (SO_LINGER 0) instead of a FIN."""
        raw = socket.socket(fileno=socket.dup(self.sock.fileno()))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()
        with contextlib.suppress(OSError):
            socket.socket.close(self.sock)
        raise _Gone


Script = Callable[[ScriptConn], None]


class ScriptedServer:
    """Runs ``script`` for every connection to address:port (one thread each).

    With ``tls`` the connection is wrapped (implicit TLS) before the script
    runs. ``lines`` is everything the clients sent, ``logins`` the number of
    login attempts that carried a password (counted by ``Dialogue``).
    """

    def __init__(
        self, address: str, port: int, script: Script, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.address, self.port, self.script, self.tls = address, port, script, tls
        self.stopping = threading.Event()
        self.lines: list[bytes] = []
        self.logins = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._live: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._counter = itertools.count(1)

    def record(self, line: bytes) -> None:
        with self._lock:
            self.lines.append(line)

    def count_login(self) -> None:
        with self._lock:
            self.logins += 1

    def swap(self, number: int, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._live[number] = sock
        return sock

    def __enter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        thread = threading.Thread(target=self._accept, daemon=True, name=f"scripted-{self.port}")
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(30)
            number = next(self._counter)
            with self._lock:
                self.connections += 1
                self._live[number] = sock
            thread = threading.Thread(target=self._serve, args=(number,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, number: int) -> None:
        with self._lock:
            sock = self._live[number]
        conn = ScriptConn(sock, self, number)
        try:
            if self.tls is not None:
                conn.start_tls(self.tls)
            self.script(conn)
        except (_Gone, OSError, ValueError):
            pass  # the client hung up or failed TLS: what a rude server provokes
        finally:
            with self._lock:
                sock = self._live.pop(number, conn.sock)
            with contextlib.suppress(OSError):
                sock.close()

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._live.values():
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)


# --------------------------------------------------------------------------
# A minimal healthy dialogue per protocol, every answer replaceable
# --------------------------------------------------------------------------

#: What a login handler gets: the connection, the verb line, the decoded
#: (user, password) if it could be read; returns the reply to send.
LoginHandler = Callable[[ScriptConn, bytes], bytes]

_FAILED = {
    "imap": b"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    "pop3": b"-ERR [AUTH] Authentication failed.\r\n",
    "smtp": b"535 5.7.8 Authentication credentials invalid\r\n",
}
_GREETING = {
    "imap": b"* OK fault.test IMAP ready.\r\n",
    "pop3": b"+OK fault.test POP3 ready.\r\n",
    "smtp": b"220 fault.test ESMTP ready\r\n",
}
_CAPS = {  # (before TLS, inside TLS)
    "imap": ("IMAP4rev1 STARTTLS LOGINDISABLED", "IMAP4rev1 AUTH=PLAIN"),
    "pop3": ("TOP,UIDL,STLS", "TOP,UIDL,USER,SASL PLAIN"),
    "smtp": ("PIPELINING,STARTTLS,8BITMIME", "PIPELINING,AUTH PLAIN LOGIN,8BITMIME"),
}
_PLAINTEXT_AFTER_STARTTLS = {
    "imap": b"* OK still talking plaintext\r\n",
    "pop3": b"+OK still talking plaintext\r\n",
    "smtp": b"220 fault.test ESMTP still plaintext\r\n",
}


@dataclass
class Dialogue:
    """A small IMAP/POP3/SMTP server; set a field to change one answer.

    ``caps``/``caps_tls``: IMAP capabilities separated by spaces; POP3 CAPA
    lines and SMTP EHLO keywords separated by commas. ``starttls``: "ok",
    "refuse", "plaintext" (answers OK, then keeps talking plaintext), or
    "answer_hello" (answers OK, then answers the ClientHello in plaintext).
    ``login`` replaces the answer to a login (sent after ``login_delay``
    seconds); ``{tag}`` in any IMAP answer is the command's tag.
    ``capability`` replaces the whole CAPABILITY/CAPA/EHLO answer.
    """

    protocol: str
    context: ssl.SSLContext | None = None  # for STARTTLS
    greeting: bytes | None = None
    caps: str | None = None
    caps_tls: str | None = None
    starttls: str = "ok"
    login: bytes | None = None
    login_delay: float = 0.0
    capability: bytes | None = None  # IMAP CAPABILITY / POP3 CAPA / SMTP EHLO answer
    after_greeting: Callable[[ScriptConn], None] | None = None
    extra: Mapping[str, bytes] = field(default_factory=dict)  # VERB -> answer

    def __call__(self, conn: ScriptConn) -> None:
        conn.send(_GREETING[self.protocol] if self.greeting is None else self.greeting)
        if self.after_greeting is not None:
            self.after_greeting(conn)
        handler = getattr(self, f"_{self.protocol}")
        while True:
            handler(conn, conn.readline())

    def _caps(self, conn: ScriptConn) -> str:
        plain, tls = _CAPS[self.protocol]
        if conn.tls:
            return tls if self.caps_tls is None else self.caps_tls
        return plain if self.caps is None else self.caps

    def _starttls(self, conn: ScriptConn, ok: bytes, refused: bytes) -> None:
        if self.starttls == "refuse":
            conn.send(refused)
            return
        conn.send(ok)
        if self.starttls == "plaintext":
            # A broken proxy: says yes to STARTTLS, then keeps talking plaintext.
            conn.send(_PLAINTEXT_AFTER_STARTTLS[self.protocol])
        if self.starttls == "answer_hello":
            # The plaintext comes after the client's ClientHello, so never in
            # the same segment as the go-ahead.
            conn.read_some()
            conn.send(_PLAINTEXT_AFTER_STARTTLS[self.protocol])
            conn.hold()
        if self.starttls == "ok":
            assert self.context is not None, "STARTTLS needs a context"
            conn.start_tls(self.context)

    def _login(self, conn: ScriptConn, tag: str = "") -> None:
        conn.server.count_login()
        conn.wait(self.login_delay)
        reply = _FAILED[self.protocol] if self.login is None else self.login
        conn.send(reply.replace(b"{tag}", tag.encode()))

    def _imap(self, conn: ScriptConn, line: bytes) -> None:
        tag, _, rest = line.decode("utf-8", "replace").partition(" ")
        verb, _, args = rest.partition(" ")
        verb = verb.upper()
        if verb in self.extra:
            conn.send(self.extra[verb].replace(b"{tag}", tag.encode()))
        elif verb == "CAPABILITY":
            answer = self.capability or f"* CAPABILITY {self._caps(conn)}\r\n".encode()
            conn.send(answer + f"{tag} OK Capability completed.\r\n".encode())
        elif verb == "STARTTLS":
            self._starttls(
                conn, f"{tag} OK Begin TLS.\r\n".encode(), f"{tag} NO TLS unavailable.\r\n".encode()
            )
        elif verb == "LOGIN":
            self._login(conn, tag)
        elif verb == "AUTHENTICATE":
            if " " not in args:  # no initial response: ask for it
                conn.send(b"+ \r\n")
                conn.readline()
            self._login(conn, tag)
        elif verb == "LOGOUT":
            conn.send(f"* BYE Logging out.\r\n{tag} OK Logout completed.\r\n".encode())
            raise _Gone
        else:
            conn.send(f"{tag} BAD Unknown command.\r\n".encode())

    def _pop3(self, conn: ScriptConn, line: bytes) -> None:
        verb, _, args = line.decode("utf-8", "replace").partition(" ")
        verb = verb.upper()
        if verb in self.extra:
            conn.send(self.extra[verb])
        elif verb == "CAPA":
            body = "".join(f"{c}\r\n" for c in self._caps(conn).split(","))
            conn.send(self.capability or f"+OK\r\n{body}.\r\n".encode())
        elif verb == "STLS":
            self._starttls(conn, b"+OK Begin TLS.\r\n", b"-ERR TLS not available.\r\n")
        elif verb == "USER":
            conn.send(b"+OK\r\n")
        elif verb == "PASS":
            self._login(conn)
        elif verb == "AUTH":
            if " " not in args:
                conn.send(b"+ \r\n")
                conn.readline()
            self._login(conn)
        elif verb == "QUIT":
            conn.send(b"+OK Bye.\r\n")
            raise _Gone
        else:
            conn.send(b"-ERR Unknown command.\r\n")

    def _smtp(self, conn: ScriptConn, line: bytes) -> None:
        verb, _, args = line.decode("utf-8", "replace").partition(" ")
        verb = verb.upper()
        if verb in self.extra:
            conn.send(self.extra[verb])
        elif verb == "EHLO":
            if self.capability is not None:
                conn.send(self.capability)
                return
            keywords = ["fault.test", *self._caps(conn).split(",")]
            text = "".join(f"250-{k}\r\n" for k in keywords[:-1]) + f"250 {keywords[-1]}\r\n"
            conn.send(text.encode())
        elif verb == "STARTTLS":
            self._starttls(
                conn, b"220 2.0.0 Ready to start TLS\r\n", b"454 4.7.0 TLS not available\r\n"
            )
        elif verb == "AUTH":
            mechanism, _, initial = args.partition(" ")
            if mechanism.upper() == "LOGIN":
                if not initial:
                    conn.send(b"334 VXNlcm5hbWU6\r\n")
                    conn.readline()
                conn.send(b"334 UGFzc3dvcmQ6\r\n")
                conn.readline()
            elif not initial:
                conn.send(b"334 \r\n")
                conn.readline()
            self._login(conn)
        elif verb == "QUIT":
            conn.send(b"221 2.0.0 Bye\r\n")
            raise _Gone
        else:
            conn.send(b"502 5.5.2 Error: command not recognized\r\n")


def echo_blob(protocol: str) -> bytes:
    """A login reply that echoes the client's base64 back (filled in by ``EchoingDialogue``)."""
    return {
        "imap": b"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials {echo}\r\n",
        "pop3": b"-ERR [AUTH] Invalid credentials {echo}\r\n",
        "smtp": b"535 5.7.8 Authentication credentials invalid: {echo}\r\n",
    }[protocol]


class EchoingDialogue(Dialogue):
    """Answers a login with an error that quotes what the client sent (base64 and all).

    Some servers (and proxies) put the rejected SASL response into the error
    text; a client that prints server replies would leak the password."""

    def __call__(self, conn: ScriptConn) -> None:
        self._last = b""
        original = conn.readline

        def remember() -> bytes:
            line = original()
            self._last = line
            return line

        conn.readline = remember  # type: ignore[method-assign]
        super().__call__(conn)

    def _login(self, conn: ScriptConn, tag: str = "") -> None:
        conn.server.count_login()
        words = self._last.split()
        blob = words[-1] if words else b""
        reply = echo_blob(self.protocol).replace(b"{echo}", blob)
        conn.send(reply.replace(b"{tag}", tag.encode()))


# --------------------------------------------------------------------------
# Raw scripts for transport-level faults
# --------------------------------------------------------------------------


def send_then_hold(data: bytes) -> Script:
    def script(conn: ScriptConn) -> None:
        conn.send(data)
        conn.hold()

    return script


def send_then_close(data: bytes) -> Script:
    def script(conn: ScriptConn) -> None:
        conn.send(data)
        raise _Gone

    return script


def drip_forever(data: bytes, interval: float = 0.2) -> Script:
    """Bytes of ``data`` one at a time, then repeated, never a complete reply."""

    def script(conn: ScriptConn) -> None:
        while True:
            conn.drip(data, interval)

    return script


def endless_multiline(prefix: bytes, line: bytes) -> Script:
    """A first line, then continuation lines forever (SMTP "250-...")."""

    def script(conn: ScriptConn) -> None:
        conn.send(prefix)
        while True:
            conn.send(line * 64)
            conn.wait(0.01)

    return script


def tls_then_reset(context: ssl.SSLContext) -> Script:
    """Sends the server's handshake flight (certificate included), then RST."""

    def script(conn: ScriptConn) -> None:
        # A memory BIO handshake: one read of the ClientHello, one write of the
        # ServerHello..Certificate flight, then reset before the client finishes.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        conn.sock.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = conn.sock.recv(65536)
            if not data:
                raise _Gone
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            flight = outgoing.read()
            if flight:
                conn.send(flight)
                break
        conn.wait(0.05)
        conn.reset()

    return script
