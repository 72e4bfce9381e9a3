"""The session driver on a real socket: one step per answer, SASL steps, goodbyes.

The peer is a script on the other end of a socket pair: what it sends is
fixed, what maildiag sends is recorded.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from maildiag.deadline import Deadline
from maildiag.probes.sessions import ImapSession, Pop3Session, SmtpSession
from maildiag.protocols.sasl import SaslExchange
from maildiag.transport import Connection, ReadTimeout

PASSWORD = "pa55 word"


class Peer:
    """The server's end: runs ``script(peer, sock)`` in a thread; ``received`` is what we sent."""

    def __init__(self, script: Callable[[Peer, socket.socket], None]) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.received = bytearray()
        self._thread = threading.Thread(target=self._run, args=(script,), daemon=True)

    def _run(self, script: Callable[[Peer, socket.socket], None]) -> None:
        try:
            script(self, self.theirs)
        except OSError:
            pass

    def read(self, sock: socket.socket) -> bytes:
        data = sock.recv(65536)
        self.received += data
        return data

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ours.close()
        self.theirs.close()
        self._thread.join(5)


@pytest.fixture
def deadline() -> Iterator[Deadline]:
    run = Deadline(20)
    yield run
    run.cancel()


def test_untagged_lines_without_end_time_out_within_one_step(deadline: Deadline) -> None:
    # Every line would restart a per-read timeout; the command's wait is one step.
    def script(peer: Peer, sock: socket.socket) -> None:
        sock.sendall(b"* OK ready\r\n")
        peer.read(sock)
        while True:
            sock.sendall(b"* OK still working\r\n")
            time.sleep(0.02)

    with Peer(script) as peer:
        session = ImapSession(Connection(peer.ours, timeout=0.5, deadline=deadline))
        session.greeting()
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            session.run("NOOP")
        assert time.monotonic() - started < 0.9
        assert not session.ready
        session.close()  # no goodbye behind an answer that never came
        assert bytes(peer.received) == b"a1 NOOP\r\n"


def challenges_forever(greeting: bytes, challenge: bytes) -> Callable[[Peer, socket.socket], None]:
    def script(peer: Peer, sock: socket.socket) -> None:
        sock.sendall(greeting)
        while peer.read(sock):
            sock.sendall(challenge)

    return script


def test_smtp_login_sends_the_password_once_then_cancels(deadline: Deadline) -> None:
    with Peer(challenges_forever(b"220 hi\r\n", b"334 UGFzc3dvcmQ6\r\n")) as peer:
        session = SmtpSession(Connection(peer.ours, timeout=2, deadline=deadline))
        session.greeting()
        assert session.authenticate(SaslExchange("LOGIN", "alice", PASSWORD)) is None
        sent = bytes(peer.received)
    encoded = base64.b64encode(PASSWORD.encode())
    assert sent.count(encoded) == 1
    assert sent.endswith(b"*\r\n")
    assert not session.ready  # the server still asks: no QUIT goes behind that


def test_pop3_plain_with_initial_response_never_repeats_it(deadline: Deadline) -> None:
    with Peer(challenges_forever(b"+OK hi\r\n", b"+ \r\n")) as peer:
        session = Pop3Session(Connection(peer.ours, timeout=2, deadline=deadline))
        session.greeting()
        exchange = SaslExchange("PLAIN", "alice", PASSWORD, initial_response=True)
        assert session.authenticate(exchange) is None
        sent = bytes(peer.received)
    blob = base64.b64encode(f"\0alice\0{PASSWORD}".encode())
    assert sent.count(blob) == 1
    assert sent.splitlines()[-1] == b"*"


def test_imap_authenticate_answers_the_challenge_once_then_cancels(deadline: Deadline) -> None:
    with Peer(challenges_forever(b"* OK hi\r\n", b"+ \r\n")) as peer:
        session = ImapSession(Connection(peer.ours, timeout=2, deadline=deadline))
        session.greeting()
        untagged, answer = session.authenticate(SaslExchange("PLAIN", "alice", PASSWORD))
        sent = bytes(peer.received)
    assert answer is None and untagged == []
    blob = base64.b64encode(f"\0alice\0{PASSWORD}".encode())
    assert sent.count(blob) == 1
    assert sent.startswith(b"a1 AUTHENTICATE PLAIN\r\n") and sent.endswith(b"*\r\n")


def test_a_clean_twin_logs_in_and_says_goodbye(deadline: Deadline) -> None:
    def script(peer: Peer, sock: socket.socket) -> None:
        sock.sendall(b"* OK hi\r\n")
        answers = [
            b"+ \r\n",
            b"a1 OK [CAPABILITY IMAP4rev1 QUOTA] Logged in\r\n",
            b"* BYE bye\r\na2 OK done\r\n",
        ]
        for answer in answers:
            peer.read(sock)
            sock.sendall(answer)

    with Peer(script) as peer:
        session = ImapSession(Connection(peer.ours, timeout=2, deadline=deadline))
        session.greeting()
        _, answer = session.authenticate(SaslExchange("PLAIN", "alice", PASSWORD))
        assert answer is not None and answer.code == "CAPABILITY IMAP4rev1 QUOTA"
        assert session.client.capabilities == ("IMAP4REV1", "QUOTA")
        assert session.ready
        with pytest.raises(Exception, match="bye"):
            session.close()  # LOGOUT's BYE: the probe's polite close swallows it
