"""The misbehaving fake mail servers, driven by stdlib clients and raw sockets.

Every fault is checked from the client's side (what a prober would see)
and, where it matters, from the server's counters. Healthy flows have a
failure twin (wrong password, wrong CA, login before TLS).
"""

from __future__ import annotations

import base64
import gc
import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
import trustme

from tests.lab.fake_servers import (
    HUGE_LINE_BYTES,
    Behaviour,
    FakeMailHost,
    FakeMailServer,
)

ADDR = "127.0.0.70"
USER, PASSWORD = "alice@example.test", "wonderland"
PROTOCOLS = ["imap", "pop3", "smtp"]

# The command that asks for capabilities, the one that starts TLS, and the
# word that advertises STARTTLS, per protocol.
CAPS_COMMAND = {"imap": b"a1 CAPABILITY", "pop3": b"CAPA", "smtp": b"EHLO client.example.test"}
STARTTLS_COMMAND = {"imap": b"a2 STARTTLS", "pop3": b"STLS", "smtp": b"STARTTLS"}
STARTTLS_WORD = {"imap": b"STARTTLS", "pop3": b"STLS", "smtp": b"STARTTLS"}


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ips = [f"127.0.0.{n}" for n in range(70, 80)]
    cert = ca.issue_cert("mail.example.test", *ips)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    # Not create_default_context(): loading the system CA store costs ~0.15 s
    # a test, and only the test CA should be trusted anyway.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return _trusting(ca)


def _open_fds(*, collect: bool) -> int:
    if collect:  # client sockets caught in exception reference cycles
        gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def serve(server_ctx: ssl.SSLContext) -> Iterator[Callable[..., FakeMailServer]]:
    """Start servers for one test; on teardown stop them and prove nothing leaked."""
    threads_before = set(threading.enumerate())
    fds_before = _open_fds(collect=False)
    servers: list[FakeMailServer] = []

    def start(
        protocol: str,
        behaviour: Behaviour = Behaviour.HEALTHY,
        *,
        tls: bool = False,
        address: str = ADDR,
        port: int = 0,
        **options: object,
    ) -> FakeMailServer:
        server = FakeMailServer(
            protocol,
            address,
            port,
            implicit_tls=tls,
            behaviour=behaviour,
            ssl_context=server_ctx,
            **options,  # type: ignore[arg-type]
        )
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert server.errors == []
    leaked = [
        t.name
        for t in threading.enumerate()
        if t not in threads_before and t.name.startswith("fake-mail")
    ]
    assert leaked == []
    assert _open_fds(collect=True) <= fds_before


class Client:
    """A raw line-oriented client that frames replies properly (no single-recv guessing)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    def connect(cls, server: FakeMailServer, timeout: float = 3.0) -> Client:
        return cls(socket.create_connection((server.address, server.port), timeout=timeout))

    def close(self) -> None:
        self.sock.close()

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unterminated data: {self.buf[:80]!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.removesuffix(b"\r")

    def reply(self, protocol: str, *, tag: bytes | None = None, multiline: bool = False) -> bytes:
        """One complete reply, lines joined with LF."""
        lines = [self.line()]
        if protocol == "imap" and tag is not None:
            while not lines[-1].startswith(tag + b" "):
                lines.append(self.line())
        elif protocol == "pop3" and multiline and lines[0].startswith(b"+OK"):
            while lines[-1] != b".":
                lines.append(self.line())
        elif protocol == "smtp":
            while lines[-1][3:4] == b"-":
                lines.append(self.line())
        return b"\n".join(lines)

    def command(self, protocol: str, line: bytes, *, multiline: bool = False) -> bytes:
        self.send(line)
        tag = line.split(b" ", 1)[0] if protocol == "imap" else None
        return self.reply(protocol, tag=tag, multiline=multiline)

    def capabilities(self, protocol: str) -> bytes:
        return self.command(protocol, CAPS_COMMAND[protocol], multiline=True)

    def at_eof(self, timeout: float = 3.0) -> bool:
        """True if the server closes its side (nothing more buffered)."""
        self.sock.settimeout(timeout)
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def starttls(self, ctx: ssl.SSLContext, host: str = ADDR) -> None:
        assert not self.buf, "plaintext bytes left over before the handshake"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=host)


def _tls_client(server: FakeMailServer, ctx: ssl.SSLContext) -> Client:
    client = Client.connect(server)
    client.starttls(ctx, server.address)
    return client


def _plain_b64(user: str = USER, password: str = PASSWORD) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def _open_session(server: FakeMailServer, protocol: str) -> Client:
    """Connect, read the greeting, and for SMTP say EHLO (STARTTLS needs it)."""
    client = Client.connect(server)
    client.reply(protocol)
    if protocol == "smtp":
        client.capabilities("smtp")
    return client


# --------------------------------------------------------------------------
# HEALTHY: IMAP
# --------------------------------------------------------------------------


def test_imap_starttls_login_mailbox_and_quota(serve, client_ctx):
    server = serve("imap", quota=(2048, 4096), messages=5)
    imap = imaplib.IMAP4(server.address, server.port, timeout=3)
    assert "STARTTLS" in imap.capabilities
    assert "LOGINDISABLED" in imap.capabilities
    assert not any(c.startswith("AUTH=") for c in imap.capabilities)

    imap.starttls(client_ctx)
    assert "STARTTLS" not in imap.capabilities
    assert "LOGINDISABLED" not in imap.capabilities
    assert "AUTH=PLAIN" in imap.capabilities

    assert imap.login(USER, PASSWORD)[0] == "OK"
    assert imap.select("INBOX", readonly=True) == ("OK", [b"5"])
    assert imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)") == (
        "OK",
        [b"INBOX (MESSAGES 5 UNSEEN 1 UIDNEXT 6)"],
    )
    typ, (roots, quotas) = imap.getquotaroot("INBOX")
    assert typ == "OK"
    assert roots == [b'INBOX "User quota"']
    assert quotas == [b'"User quota" (STORAGE 2048 4096)']
    assert imap.noop()[0] == "OK"
    assert imap.logout()[0] == "BYE"

    assert server.tls_handshakes == 1
    assert server.successful_logins == 1 and server.failed_logins == 0
    assert not any(b"LOGIN" in c for c in server.plaintext_commands)
    assert any(c.endswith(b"STARTTLS") for c in server.plaintext_commands)


def test_imap_login_before_tls_is_refused(serve):
    server = serve("imap")
    imap = imaplib.IMAP4(server.address, server.port, timeout=3)
    with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
        imap.login(USER, PASSWORD)
    imap.logout()
    # The client did leak its password; the server recorded it and refused.
    assert any(b" LOGIN " in c for c in server.plaintext_commands)
    assert server.successful_logins == 0


def test_imap_wrong_password(serve, client_ctx):
    server = serve("imap")
    imap = imaplib.IMAP4(server.address, server.port, timeout=3)
    imap.starttls(client_ctx)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
        imap.login(USER, "not-the-password")
    imap.logout()
    assert server.failed_logins == 1 and server.successful_logins == 0


def test_imaps_authenticate_plain(serve, client_ctx):
    server = serve("imap", tls=True)
    imap = imaplib.IMAP4_SSL(server.address, server.port, ssl_context=client_ctx, timeout=3)
    assert "STARTTLS" not in imap.capabilities
    assert "AUTH=PLAIN" in imap.capabilities
    typ, _ = imap.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    assert server.successful_logins == 1


def test_imaps_authenticate_plain_wrong_password(serve, client_ctx):
    server = serve("imap", tls=True)
    imap = imaplib.IMAP4_SSL(server.address, server.port, ssl_context=client_ctx, timeout=3)
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        imap.authenticate("PLAIN", lambda _: f"\0{USER}\0nope".encode())
    imap.logout()
    assert server.failed_logins == 1


def test_imaps_untrusted_certificate_is_rejected(serve):
    server = serve("imap", tls=True)
    other = _trusting(trustme.CA())
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(server.address, server.port, ssl_context=other, timeout=3)
    assert server.wait_for(lambda s: s.tls_handshake_failures == 1)
    assert server.tls_handshakes == 0


def test_imap_without_quota_support(serve, client_ctx):
    server = serve("imap", tls=True, quota=None)
    imap = imaplib.IMAP4_SSL(server.address, server.port, ssl_context=client_ctx, timeout=3)
    assert "QUOTA" not in imap.capabilities
    imap.login(USER, PASSWORD)
    with pytest.raises(imaplib.IMAP4.error, match="Unknown command"):
        imap.getquotaroot("INBOX")
    imap.logout()


def test_imap_unknown_mailbox_and_commands_before_login(serve, client_ctx):
    server = serve("imap", tls=True)
    client = _tls_client(server, client_ctx)
    assert client.reply("imap").startswith(b"* OK [CAPABILITY ")
    assert client.command("imap", b"a1 SELECT INBOX") == (
        b"a1 BAD Command SELECT not valid before authentication."
    )
    assert client.command(
        "imap", b"a2 LOGIN " + USER.encode() + b" " + PASSWORD.encode()
    ).startswith(b"a2 OK")
    assert client.command("imap", b'a3 EXAMINE "Archive"').startswith(b"a3 NO [NONEXISTENT]")
    assert client.command("imap", b"a4 FROBNICATE").startswith(b"a4 BAD")
    client.close()


def test_imap_literals_sync_and_non_sync(serve):
    """RFC 3501 §4.3 literals and RFC 7888 LITERAL+ in the LOGIN arguments."""
    server = serve("imap", Behaviour.PLAINTEXT_LOGIN)
    client = Client.connect(server)
    client.reply("imap")
    client.send(b"a1 LOGIN {%d}" % len(USER))
    assert client.line().startswith(b"+ ")  # the server asks for the literal
    client.send(USER.encode() + b" {%d+}" % len(PASSWORD))
    client.send(PASSWORD.encode())  # non-synchronising: no "+" to wait for
    assert client.reply("imap", tag=b"a1").startswith(b"a1 OK")
    assert server.successful_logins == 1
    assert server.commands[-1] == b"a1 LOGIN {18}\r\nalice@example.test {10+}\r\nwonderland"
    client.close()


def test_imap_starttls_discards_pipelined_commands(serve, client_ctx):
    """CVE-2011-0411: commands sent behind STARTTLS must not run inside TLS."""
    server = serve("imap")
    client = Client.connect(server)
    client.reply("imap")
    client.sock.sendall(b"a1 STARTTLS\r\na2 CAPABILITY\r\n")
    assert client.reply("imap", tag=b"a1").startswith(b"a1 OK")
    client.starttls(client_ctx)
    assert client.command("imap", b"a3 NOOP") == b"a3 OK NOOP completed."
    assert server.injected_bytes == len(b"a2 CAPABILITY\r\n")
    assert b"a2 CAPABILITY" not in server.commands
    client.close()


def test_commands_sent_one_byte_at_a_time_are_framed(serve):
    """The server frames lines itself instead of trusting one recv() per command."""
    server = serve("imap", Behaviour.PLAINTEXT_LOGIN)
    client = Client.connect(server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.reply("imap")
    for byte in b'a1 LOGIN "alice@example.test" "wonderland"\r\na2 NOOP\r\n':
        client.sock.send(bytes([byte]))
    assert client.reply("imap", tag=b"a1").startswith(b"a1 OK")
    assert client.reply("imap", tag=b"a2") == b"a2 OK NOOP completed."
    assert [r.line for r in server.received] == [
        b'a1 LOGIN "alice@example.test" "wonderland"',
        b"a2 NOOP",
    ]
    assert {(r.connection, r.tls) for r in server.received} == {(1, False)}
    client.close()


def test_imap_overlong_line_is_refused(serve):
    server = serve("imap")
    client = Client.connect(server)
    client.reply("imap")
    client.sock.sendall(b"a1 NOOP " + b"x" * 20000)
    assert client.line() == b"* BYE Line too long."
    assert client.at_eof()
    client.close()


# --------------------------------------------------------------------------
# HEALTHY: POP3
# --------------------------------------------------------------------------


def test_pop3_stls_user_pass_stat(serve, client_ctx):
    server = serve("pop3", messages=2)
    pop = poplib.POP3(server.address, server.port, timeout=3)
    caps = pop.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    pop.stls(client_ctx)
    caps = pop.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
    pop.user(USER)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    count, size = pop.stat()
    assert count == 2 and size > 0
    assert len(pop.list()[1]) == 2
    assert b"Subject: Fake message 1" in pop.retr(1)[1]
    assert pop.quit().startswith(b"+OK")
    assert server.successful_logins == 1
    assert not any(c.startswith((b"USER", b"PASS")) for c in server.plaintext_commands)


def test_pop3_user_before_tls_is_refused(serve):
    server = serve("pop3")
    pop = poplib.POP3(server.address, server.port, timeout=3)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Plaintext authentication disallowed"):
        pop.user(USER)
    pop.quit()


def test_pop3_wrong_password(serve, client_ctx):
    server = serve("pop3", tls=True)
    pop = poplib.POP3_SSL(server.address, server.port, context=client_ctx, timeout=3)
    pop.user(USER)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed"):
        pop.pass_("nope")
    pop.quit()
    assert server.failed_logins == 1


@pytest.mark.parametrize(
    ("password", "expected"),
    [(PASSWORD, b"+OK Logged in."), ("nope", b"-ERR [AUTH] Authentication failed.")],
)
def test_pop3s_auth_plain(serve, client_ctx, password, expected):
    server = serve("pop3", tls=True)
    client = _tls_client(server, client_ctx)
    assert client.reply("pop3").startswith(b"+OK")
    assert client.command("pop3", b"AUTH PLAIN") == b"+ "
    assert client.command("pop3", _plain_b64(password=password)) == expected
    client.close()


# --------------------------------------------------------------------------
# HEALTHY: SMTP submission
# --------------------------------------------------------------------------


def test_smtp_starttls_auth_and_submit(serve, client_ctx):
    server = serve("smtp")
    smtp = smtplib.SMTP(server.address, server.port, timeout=3)
    smtp.ehlo()
    assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
    smtp.starttls(context=client_ctx)
    smtp.ehlo()
    assert not smtp.has_extn("starttls")
    assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    assert smtp.login(USER, PASSWORD)[0] == 235
    assert smtp.sendmail(USER, ["bob@example.test"], "Subject: hi\r\n\r\nHello.\r\n") == {}
    assert smtp.quit()[0] == 221
    assert server.successful_logins == 1
    assert not any(c.startswith(b"AUTH") for c in server.plaintext_commands)


def test_smtp_auth_before_tls_is_refused(serve):
    server = serve("smtp")
    smtp = smtplib.SMTP(server.address, server.port, timeout=3)
    smtp.ehlo()
    assert smtp.docmd("AUTH", "PLAIN " + _plain_b64().decode()) == (
        530,
        b"5.7.0 Must issue a STARTTLS command first",
    )
    assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 530  # RFC 6409: auth first
    smtp.quit()
    assert server.successful_logins == 0


def test_smtps_auth_login_and_wrong_password(serve, client_ctx):
    server = serve("smtp", tls=True)
    smtp = smtplib.SMTP_SSL(server.address, server.port, context=client_ctx, timeout=3)
    smtp.ehlo()
    smtp.user, smtp.password = USER, "nope"
    with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
        smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
    assert failure.value.smtp_code == 535
    assert failure.value.smtp_error == b"5.7.8 Authentication credentials invalid"
    smtp.user, smtp.password = USER, PASSWORD
    assert smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=True)[0] == 235
    smtp.quit()
    assert (server.failed_logins, server.successful_logins) == (1, 1)


# --------------------------------------------------------------------------
# STARTTLS faults and plaintext logins
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_starttls(serve, protocol):
    server = serve(protocol, Behaviour.NO_STARTTLS)
    client = _open_session(server, protocol)
    caps = client.capabilities(protocol)
    assert STARTTLS_WORD[protocol] not in caps
    reply = client.command(protocol, STARTTLS_COMMAND[protocol])
    expected = {"imap": b"a2 BAD", "pop3": b"-ERR", "smtp": b"502 "}[protocol]
    assert reply.startswith(expected)
    client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_healthy_advertises_starttls(serve, protocol):
    server = serve(protocol)
    client = _open_session(server, protocol)
    assert STARTTLS_WORD[protocol] in client.capabilities(protocol)
    client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_starttls_refused(serve, protocol):
    server = serve(protocol, Behaviour.STARTTLS_REFUSED)
    client = _open_session(server, protocol)
    assert STARTTLS_WORD[protocol] in client.capabilities(protocol)
    reply = client.command(protocol, STARTTLS_COMMAND[protocol])
    expected = {
        "imap": b"a2 NO [UNAVAILABLE] STARTTLS failed: TLS not available.",
        "pop3": b"-ERR TLS not available.",
        "smtp": b"454 4.7.0 TLS not available",
    }[protocol]
    assert reply == expected
    # The session stays usable in plaintext, as with a real server.
    noop = {"imap": b"a3 NOOP", "pop3": b"NOOP", "smtp": b"NOOP"}[protocol]
    assert client.command(protocol, noop)[:3] in (b"a3 ", b"+OK", b"250")
    assert server.tls_handshakes == 0
    client.close()


def test_starttls_refused_with_stdlib_clients(serve, client_ctx):
    imap_server = serve("imap", Behaviour.STARTTLS_REFUSED)
    imap = imaplib.IMAP4(imap_server.address, imap_server.port, timeout=3)
    with pytest.raises(imaplib.IMAP4.error, match="Couldn't establish TLS"):
        imap.starttls(client_ctx)
    imap.logout()

    smtp_server = serve("smtp", Behaviour.STARTTLS_REFUSED)
    smtp = smtplib.SMTP(smtp_server.address, smtp_server.port, timeout=3)
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        smtp.starttls(context=client_ctx)
    assert refused.value.smtp_code == 454
    smtp.quit()


def test_plaintext_login_imap(serve):
    server = serve("imap", Behaviour.PLAINTEXT_LOGIN)
    imap = imaplib.IMAP4(server.address, server.port, timeout=3)
    assert "AUTH=PLAIN" in imap.capabilities
    assert "LOGINDISABLED" not in imap.capabilities
    assert "STARTTLS" in imap.capabilities
    assert imap.login(USER, PASSWORD)[0] == "OK"
    imap.logout()
    assert any(b"LOGIN" in c for c in server.plaintext_commands)


def test_plaintext_login_pop3(serve):
    server = serve("pop3", Behaviour.PLAINTEXT_LOGIN)
    pop = poplib.POP3(server.address, server.port, timeout=3)
    caps = pop.capa()
    assert "USER" in caps and caps["SASL"] == ["PLAIN"] and "STLS" in caps
    pop.user(USER)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    pop.quit()
    assert f"PASS {PASSWORD}".encode() in server.plaintext_commands


def test_plaintext_login_smtp(serve):
    server = serve("smtp", Behaviour.PLAINTEXT_LOGIN)
    smtp = smtplib.SMTP(server.address, server.port, timeout=3)
    smtp.ehlo()
    assert smtp.has_extn("starttls")
    assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    assert smtp.login(USER, PASSWORD)[0] == 235
    smtp.quit()
    assert any(c.startswith(b"AUTH PLAIN") for c in server.plaintext_commands)


# --------------------------------------------------------------------------
# Greeting faults
# --------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "implicit-tls"])
def test_never_greet_holds_the_connection(serve, client_ctx, tls):
    server = serve("imap", Behaviour.NEVER_GREET, tls=tls)
    client = Client.connect(server, timeout=0.5)
    if tls:  # the handshake completes; the greeting never comes
        client.starttls(client_ctx, server.address)
    with pytest.raises(TimeoutError):
        client.line()
    assert server.current_connections == 1
    client.close()
    assert server.wait_for(lambda s: s.current_connections == 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_close_after_greeting(serve, protocol):
    server = serve(protocol, Behaviour.CLOSE_AFTER_GREETING)
    client = Client.connect(server)
    assert client.reply(protocol)[:1] in (b"*", b"+", b"2")
    assert client.at_eof()
    client.close()


def test_close_immediately(serve, client_ctx):
    plain = serve("smtp", Behaviour.CLOSE_IMMEDIATELY)
    client = Client.connect(plain)
    assert client.at_eof()
    client.close()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP(plain.address, plain.port, timeout=3)

    tls = serve("smtp", Behaviour.CLOSE_IMMEDIATELY, tls=True)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        smtplib.SMTP_SSL(tls.address, tls.port, context=client_ctx, timeout=3)


def test_garbage_is_an_http_response(serve):
    server = serve("imap", Behaviour.GARBAGE)
    client = Client.connect(server)
    assert client.line() == b"HTTP/1.1 400 Bad Request"
    client.close()
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4(server.address, server.port, timeout=3)


def test_binary_greeting(serve):
    server = serve("pop3", Behaviour.BINARY)
    client = Client.connect(server)
    data = b""
    while len(data) < 4096:
        data += client.sock.recv(4096)
    assert data[:3] == b"\x00\xff\xfe"
    assert len(data) == 4096
    assert server.current_connections == 1  # sent its junk and keeps listening
    client.close()
    with pytest.raises(poplib.error_proto):
        poplib.POP3(server.address, server.port, timeout=3)


def test_huge_line_is_streamed_in_constant_memory(serve):
    server = serve("smtp", Behaviour.HUGE_LINE)
    tracemalloc.start()
    try:
        client = Client.connect(server, timeout=10)
        received = 0
        while received < HUGE_LINE_BYTES:
            chunk = client.sock.recv(1 << 16)
            assert chunk and b"\n" not in chunk
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == HUGE_LINE_BYTES
    assert peak < 2 * 1024 * 1024, f"peak traced memory {peak} bytes"
    client.close()
    assert server.wait_for(lambda s: s.current_connections == 0)


def test_huge_line_stops_when_the_client_gives_up(serve):
    server = serve("imap", Behaviour.HUGE_LINE)
    client = Client.connect(server)
    got = b""
    while len(got) < 100_000:
        got += client.sock.recv(1 << 16)
    assert got.startswith(b"* OK xxxx")
    client.close()
    assert server.wait_for(lambda s: s.current_connections == 0)
    assert server.bytes_sent < HUGE_LINE_BYTES


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("imap", b"* BYE Too many connections"),
        ("pop3", b"-ERR [SYS/TEMP] too many connections"),
        ("smtp", b"421 4.7.0 Too many connections, try again later"),
    ],
)
def test_throttle(serve, protocol, expected):
    server = serve(protocol, Behaviour.THROTTLE)
    client = Client.connect(server)
    assert client.reply(protocol) == expected
    assert client.at_eof()
    client.close()


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("imap", b"* BYE service disabled"), ("pop3", b"-ERR [SYS/PERM] service disabled")],
)
def test_unavailable(serve, client_ctx, protocol, expected):
    server = serve(protocol, Behaviour.UNAVAILABLE, tls=True)
    client = _tls_client(server, client_ctx)
    assert client.reply(protocol) == expected
    assert client.at_eof()
    client.close()


def test_unavailable_smtp_waits_for_quit(serve):
    """RFC 5321 §3.1: after a 554 greeting, 503 to everything but QUIT."""
    server = serve("smtp", Behaviour.UNAVAILABLE)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(server.address, server.port, timeout=3)
    assert refused.value.smtp_code == 554
    client = Client.connect(server)
    assert client.reply("smtp").startswith(b"554 5.3.2 ")
    assert client.command("smtp", b"EHLO client.example.test").startswith(b"503 ")
    assert client.command("smtp", b"QUIT") == b"221 2.0.0 Bye"
    assert client.at_eof()
    client.close()


def test_slow_greeting(serve):
    server = serve("smtp", Behaviour.SLOW_GREETING, delay=0.5)
    start = time.monotonic()
    smtp = smtplib.SMTP(server.address, server.port, timeout=3)
    assert time.monotonic() - start >= 0.45
    assert smtp.ehlo()[0] == 250
    smtp.quit()


def test_slow_greeting_outlasts_an_impatient_client(serve):
    server = serve("imap", Behaviour.SLOW_GREETING, delay=2.0)
    with pytest.raises(TimeoutError):
        imaplib.IMAP4(server.address, server.port, timeout=0.3)


# --------------------------------------------------------------------------
# TLS stalls
# --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_stall_on_implicit_tls_port(serve, client_ctx, protocol):
    server = serve(protocol, Behaviour.TLS_STALL, tls=True)
    sock = socket.create_connection((server.address, server.port), timeout=1.0)
    # do_handshake_on_connect=False: a failed handshake in wrap_socket would
    # close the socket, and we want to see the server still holding it.
    tls = client_ctx.wrap_socket(
        sock, server_hostname=server.address, do_handshake_on_connect=False
    )
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        tls.do_handshake()
    assert time.monotonic() - start >= 0.9
    assert server.current_connections == 1 and server.tls_handshakes == 0
    tls.close()
    assert server.wait_for(lambda s: s.current_connections == 0)


def test_tls_stall_after_starttls(serve, client_ctx):
    imap_server = serve("imap", Behaviour.TLS_STALL)
    imap = imaplib.IMAP4(imap_server.address, imap_server.port, timeout=0.5)
    with pytest.raises(TimeoutError):
        imap.starttls(client_ctx)  # "a OK Begin TLS", then silence
    # (the failed wrap_socket already closed imaplib's socket)

    pop_server = serve("pop3", Behaviour.TLS_STALL)
    pop = poplib.POP3(pop_server.address, pop_server.port, timeout=0.5)
    with pytest.raises(TimeoutError):
        pop.stls(client_ctx)

    smtp_server = serve("smtp", Behaviour.TLS_STALL)
    smtp = smtplib.SMTP(smtp_server.address, smtp_server.port, timeout=0.5)
    with pytest.raises(TimeoutError):
        smtp.starttls(context=client_ctx)
    for server in (imap_server, pop_server, smtp_server):
        assert server.tls_handshakes == 0


def test_plaintext_on_tls_port(serve, client_ctx):
    server = serve("imap", Behaviour.PLAINTEXT_ON_TLS_PORT, tls=True)
    with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER|wrong version number"):
        imaplib.IMAP4_SSL(server.address, server.port, ssl_context=client_ctx, timeout=3)
    client = Client.connect(server)
    assert client.reply("imap").startswith(b"* OK [CAPABILITY ")
    client.close()


# --------------------------------------------------------------------------
# Framing and timing
# --------------------------------------------------------------------------


def test_split_replies_arrive_in_fragments(serve):
    server = serve("smtp", Behaviour.SPLIT_REPLIES)
    sock = socket.create_connection((server.address, server.port), timeout=3)
    chunks: list[bytes] = []
    while not b"".join(chunks).endswith(b"\r\n"):
        chunks.append(sock.recv(4096))
    sock.close()
    assert b"".join(chunks).startswith(b"220 mail.example.test ESMTP")
    assert len(chunks) > 5, chunks  # a single-recv parser would see a partial reply


def test_split_replies_still_make_a_valid_session(serve, client_ctx):
    server = serve("imap", Behaviour.SPLIT_REPLIES)
    imap = imaplib.IMAP4(server.address, server.port, timeout=5)
    imap.starttls(client_ctx)
    imap.login(USER, PASSWORD)
    assert imap.select("INBOX", readonly=True) == ("OK", [b"3"])
    imap.logout()


def test_early_talker_is_rejected(serve):
    server = serve("smtp", Behaviour.EARLY_TALKER_REJECT)
    client = Client.connect(server)
    client.send(b"EHLO impatient.example.test")  # before the banner
    assert client.reply("smtp") == b"554 5.5.0 Improper pipelining/early talker"
    assert client.at_eof()
    client.close()
    assert server.commands == [b"EHLO impatient.example.test"]


def test_early_talker_patient_client_is_served(serve):
    server = serve("smtp", Behaviour.EARLY_TALKER_REJECT)
    start = time.monotonic()
    smtp = smtplib.SMTP(server.address, server.port, timeout=3)
    assert time.monotonic() - start >= 0.45
    assert smtp.ehlo()[0] == 250
    smtp.quit()


def test_idle_client_is_disconnected(serve):
    server = serve("smtp", idle_timeout=0.3)
    client = Client.connect(server)
    client.reply("smtp")
    assert client.reply("smtp") == b"421 4.4.2 Error: timeout exceeded"
    assert client.at_eof()
    client.close()


# --------------------------------------------------------------------------
# FILTERED
# --------------------------------------------------------------------------


def test_filtered_port_times_out(serve):
    server = serve("imap", Behaviour.FILTERED, address="127.0.0.78")
    for timeout in (1.0, 0.3, 0.3):  # every attempt, not just the first, is dropped
        sock = socket.socket()
        sock.settimeout(timeout)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.connect((server.address, server.port))
        assert time.monotonic() - start >= timeout * 0.9
        sock.close()
    assert server.connections_total == 0


def test_filtered_port_with_stdlib_client(serve):
    server = serve("smtp", Behaviour.FILTERED, address="127.0.0.78")
    with pytest.raises(TimeoutError):
        smtplib.SMTP(server.address, server.port, timeout=0.5)


def test_closed_port_is_refused_not_filtered(serve):
    """The twin: nothing listening answers with RST at once."""
    server = serve("imap", address="127.0.0.78")
    port = server.port
    server.stop()
    sock = socket.socket()
    sock.settimeout(1.0)
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.78", port))
    assert time.monotonic() - start < 0.5
    sock.close()


def test_filtered_port_is_free_again_after_stop(serve):
    filtered = serve("pop3", Behaviour.FILTERED, address="127.0.0.78")
    port = filtered.port
    filtered.stop()
    healthy = serve("pop3", address="127.0.0.78", port=port)
    client = Client.connect(healthy)
    assert client.reply("pop3").startswith(b"+OK")
    client.close()


# --------------------------------------------------------------------------
# Concurrency and shutdown
# --------------------------------------------------------------------------


def test_concurrency_counters_with_20_parallel_clients(serve):
    server = serve("smtp", address="127.0.0.71")
    clients = 20
    all_connected = threading.Barrier(clients + 1, timeout=10)
    may_quit = threading.Event()
    results: list[bytes] = []

    def one_client() -> None:
        client = Client.connect(server)
        greeting = client.reply("smtp")
        all_connected.wait()
        may_quit.wait(10)
        results.append(greeting + b" / " + client.command("smtp", b"QUIT"))
        client.close()

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for t in threads:
        t.start()
    all_connected.wait()
    assert server.current_connections == clients
    assert server.max_concurrent_connections == clients
    may_quit.set()
    for t in threads:
        t.join(10)
    assert len(results) == clients
    assert all(r.startswith(b"220 ") and r.endswith(b"221 2.0.0 Bye") for r in results)
    assert server.wait_for(lambda s: s.current_connections == 0)
    assert server.connections_total == clients
    assert server.max_concurrent_connections == clients
    assert server.commands.count(b"QUIT") == clients


def test_sequential_clients_do_not_raise_the_concurrency_peak(serve):
    server = serve("pop3", address="127.0.0.71")
    for _ in range(5):
        client = Client.connect(server)
        client.reply("pop3")
        client.command("pop3", b"QUIT")
        client.close()
        assert server.wait_for(lambda s: s.current_connections == 0)
    assert server.connections_total == 5
    assert server.max_concurrent_connections == 1


def test_stop_is_quick_with_stuck_connections(serve, client_ctx):
    stuck = [
        serve("imap", Behaviour.NEVER_GREET, address="127.0.0.72"),
        serve("imap", Behaviour.TLS_STALL, tls=True, address="127.0.0.72"),
        serve("smtp", Behaviour.TLS_STALL, address="127.0.0.72"),
        serve("pop3", Behaviour.HUGE_LINE, address="127.0.0.72"),
        serve("smtp", Behaviour.SLOW_GREETING, delay=30, address="127.0.0.72"),
        serve("smtp", Behaviour.SPLIT_REPLIES, address="127.0.0.72"),
        serve("imap", Behaviour.FILTERED, address="127.0.0.72"),
    ]
    clients = []
    for server in stuck[:-1]:
        for _ in range(3):
            clients.append(Client.connect(server))
    stall = stuck[2]
    smtp = _open_session(stall, "smtp")
    assert smtp.command("smtp", b"STARTTLS").startswith(b"220 ")
    clients.append(smtp)
    for server in stuck[:-1]:
        assert server.wait_for(lambda s: s.current_connections >= 3)

    start = time.monotonic()
    for server in stuck:
        server.stop()
    assert time.monotonic() - start < 1.5
    for server in stuck:
        assert server.current_connections == 0
    for client in clients:
        client.close()


def test_wait_for_gives_up_after_its_timeout(serve):
    server = serve("pop3")
    start = time.monotonic()
    assert server.wait_for(lambda s: s.connections_total == 1, timeout=0.2) is False
    assert 0.15 <= time.monotonic() - start < 1.0


def test_invalid_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown protocol"):
        FakeMailServer("nntp", ADDR, 0, implicit_tls=False)
    with pytest.raises(ValueError, match="needs an ssl_context"):
        FakeMailServer("imap", ADDR, 0, implicit_tls=True)
    with pytest.raises(ValueError):
        FakeMailServer("imap", ADDR, 0, implicit_tls=False, behaviour="sulking")  # type: ignore[arg-type]


def test_a_server_starts_only_once(serve):
    server = serve("imap")
    with pytest.raises(RuntimeError):
        server.start()


def test_no_certificate_means_no_starttls():
    with FakeMailServer("smtp", ADDR, 0, implicit_tls=False) as server:
        client = _open_session(server, "smtp")
        assert b"STARTTLS" not in client.capabilities("smtp")
        client.close()


# --------------------------------------------------------------------------
# FakeMailHost
# --------------------------------------------------------------------------


def test_mail_host_on_standard_ports(server_ctx, client_ctx):
    address = "127.0.0.79"
    behaviours = {
        "imap": Behaviour.NO_STARTTLS,
        "pop3": None,
        "submissions": Behaviour.THROTTLE,
    }
    with FakeMailHost(address, server_ctx, behaviours=behaviours) as host:
        assert sorted(host.servers) == ["imap", "imaps", "pop3s", "submission", "submissions"]
        assert host.port("imaps") == 993 and host.port("pop3") == 110

        imap = imaplib.IMAP4(address, 143, timeout=3)
        assert "STARTTLS" not in imap.capabilities
        imap.logout()

        imaps = imaplib.IMAP4_SSL(address, 993, ssl_context=client_ctx, timeout=3)
        imaps.login(USER, PASSWORD)
        imaps.logout()

        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, 110), timeout=1).close()

        pop = poplib.POP3_SSL(address, 995, context=client_ctx, timeout=3)
        pop.user(USER)
        pop.pass_(PASSWORD)
        pop.quit()

        smtp = smtplib.SMTP(address, 587, timeout=3)
        smtp.starttls(context=client_ctx)
        smtp.login(USER, PASSWORD)
        smtp.quit()

        with pytest.raises(smtplib.SMTPConnectError) as throttled:
            smtplib.SMTP_SSL(address, 465, context=client_ctx, timeout=3)
        assert throttled.value.smtp_code == 421
        servers = list(host.servers.values())
    assert all(s.current_connections == 0 and s.errors == [] for s in servers)
    assert host["submission"].successful_logins == 1


def test_mail_host_port_overrides_and_users(server_ctx, client_ctx):
    ports = {key: 0 for key in ("imap", "imaps", "pop3", "pop3s", "submission", "submissions")}
    users = {"bob@example.test": "builder"}
    with FakeMailHost("127.0.0.73", server_ctx, ports=ports, users=users) as host:
        port = host.port("imaps")
        assert port not in (0, 993)
        imap = imaplib.IMAP4_SSL("127.0.0.73", port, ssl_context=client_ctx, timeout=3)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, PASSWORD)
        imap.logout()
        imap = imaplib.IMAP4_SSL("127.0.0.73", port, ssl_context=client_ctx, timeout=3)
        assert imap.login("bob@example.test", "builder")[0] == "OK"
        imap.logout()


def test_mail_host_refuses_bad_configurations():
    with pytest.raises(ValueError, match="needs an ssl_context"):
        FakeMailHost("127.0.0.74", None)
    with pytest.raises(ValueError, match="unknown endpoint"):
        FakeMailHost("127.0.0.74", None, behaviours={"smtp": Behaviour.HEALTHY})
    # Without a certificate, closing the implicit-TLS endpoints is enough.
    closed = {"imaps": None, "pop3s": None, "submissions": None}
    with FakeMailHost("127.0.0.74", None, behaviours=closed, ports={"imap": 0}) as host:
        assert sorted(host.servers) == ["imap", "pop3", "submission"]
