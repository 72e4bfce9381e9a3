"""The sans-IO protocol clients: tags, multi-line replies, SASL, STARTTLS, fuzzing.

The clients sit on the parsers (tests/test_protocols_*.py); these tests
drive them with the recorded server transcripts of fixtures/transcripts and
the commands their README lists, feed the bytes in random pieces and in
random garbage (like tests/test_protocols_fuzz.py), and check that every
client reports bytes behind a STARTTLS go-ahead as an injection, with the
clean twin ending quietly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maildiag.protocols import imap, imap_client, pop3, pop3_client, smtp, smtp_client
from maildiag.protocols.imap_client import (
    Bye,
    Command,
    Completed,
    ContinuationRequest,
    ImapClient,
    Unsolicited,
)
from maildiag.protocols.lines import ProtocolError, StarttlsInjection
from maildiag.protocols.pop3_client import Pop3Client
from maildiag.protocols.sasl import SaslExchange
from maildiag.protocols.smtp_client import SmtpClient
from tests.test_protocols_fuzz import FUZZ, SPLITS, cut_points, noise, pieces

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
PASSWORD = "s3cret pass"

Client = ImapClient | Pop3Client | SmtpClient
Reaction = Callable[[object], bytes | None]


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def converse(client: Client, chunks: list[bytes], react: Reaction) -> tuple[list[object], bytes]:
    """Feeds ``chunks``; after every event, ``react`` may send: (events, everything sent)."""
    events: list[object] = []
    sent = bytearray()
    for chunk in chunks:
        client.receive_data(chunk)
        while (event := client.next_event()) is not None:
            events.append(event)
            out = react(event)
            if out:
                sent += out
    return events, bytes(sent)


def script(steps: list[Callable[[object], bytes | None]]) -> Reaction:
    """One step per event, in order; events beyond the script send nothing."""
    queue: Iterator[Callable[[object], bytes | None]] = iter(steps)

    def react(event: object) -> bytes | None:
        step = next(queue, None)
        return None if step is None else step(event)

    return react


# --- IMAP -----------------------------------------------------------------------


def imap_mailbox_dialogue(client: ImapClient) -> Reaction:
    # fixtures/transcripts/README.md: the commands behind dovecot_mailbox.bin.
    commands = [
        Command("LOGIN", "alice", PASSWORD),
        Command("GETQUOTAROOT", "INBOX"),
        Command("STATUS", "INBOX", b"(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)"),
        Command("SELECT", "INBOX"),
        Command("SEARCH", b"ALL"),
        Command("FETCH", b"42", b"(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
        Command("LOGOUT"),
    ]
    return script([lambda _e, c=c: client.send(c) for c in commands])


def test_imap_tags_and_gathered_untagged_responses() -> None:
    client = ImapClient()
    events, sent = converse(
        client, [transcript("imap/dovecot_mailbox.bin")], imap_mailbox_dialogue(client)
    )
    assert isinstance(events[0], imap.Greeting)
    assert "AUTH=PLAIN" in (events[0].capabilities or ())
    completed = [e for e in events if isinstance(e, Completed)]
    assert [c.tagged.tag for c in completed] == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert [c.name for c in completed] == [
        "LOGIN", "GETQUOTAROOT", "STATUS", "SELECT", "SEARCH", "FETCH",
    ]  # fmt: skip
    assert [u.keyword for u in completed[1].untagged] == ["QUOTAROOT", "QUOTA"]
    assert len(completed[3].untagged) == 8  # SELECT's data, all before its tagged OK
    assert imap.parse_fetch(completed[5].untagged[0])["UID"] == 42
    # The LOGOUT's "* BYE" ends the session; the tagged OK behind it is not read.
    assert isinstance(events[-1], Bye) and events[-1].text == "Logging out"
    assert client.state is imap_client.State.CLOSED
    assert sent.startswith(b'a1 LOGIN alice "s3cret pass"\r\na2 GETQUOTAROOT INBOX\r\n')
    assert sent.endswith(b"a7 LOGOUT\r\n")
    # The capabilities of the login's tagged OK replace the greeting's.
    assert "QUOTA" in (client.capabilities or ())


def test_imap_a_stray_tagged_reply_is_not_the_answer() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n")
    assert isinstance(client.next_event(), imap.Greeting)
    client.send(Command("NOOP"))
    client.receive_data(b"* 3 EXISTS\r\nzz9 OK not yours\r\n")
    assert client.next_event() is None
    client.receive_data(b"a1 OK done\r\n")
    event = client.next_event()
    assert isinstance(event, Completed) and event.ok
    assert [u.keyword for u in event.untagged] == ["EXISTS"]


def test_imap_bytes_between_commands_wait_for_the_next_command() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n* 4 EXISTS\r\n")
    assert isinstance(client.next_event(), imap.Greeting)
    assert client.next_event() is None  # nothing asked: the EXISTS stays queued
    client.send(Command("NOOP"))
    client.receive_data(b"a1 OK\r\n")
    event = client.next_event()
    assert isinstance(event, Completed) and event.untagged[0].number == 4


def test_imap_one_command_at_a_time() -> None:
    client = ImapClient()
    with pytest.raises(RuntimeError):
        client.send(Command("CAPABILITY"))  # before the greeting
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    client.send(Command("CAPABILITY"))
    with pytest.raises(RuntimeError):
        client.send(Command("NOOP"))


def test_imap_a_continuation_where_none_belongs_is_a_peer_error() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    client.send(Command("CAPABILITY"))
    client.receive_data(b"+ go on\r\n")
    with pytest.raises(ProtocolError, match="unexpected continuation request after CAPABILITY"):
        client.next_event()


def test_imap_too_many_untagged_responses_is_a_peer_error() -> None:
    client = ImapClient(max_untagged=3)
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    client.send(Command("NOOP"))
    client.receive_data(b"* OK noise\r\n" * 4)
    with pytest.raises(ProtocolError, match="more than 3 untagged"):
        client.next_event()


def test_imap_sasl_plain_after_the_continuation_then_a_cancel() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    line = client.authenticate(SaslExchange("PLAIN", "alice", PASSWORD))
    assert line == b"a1 AUTHENTICATE PLAIN\r\n"
    client.receive_data(b"+ \r\n")
    challenge = client.next_event()
    assert isinstance(challenge, ContinuationRequest)
    assert client.answer(challenge) == imap.authenticate_plain_initial("alice", PASSWORD) + b"\r\n"
    client.receive_data(b"+ more?\r\n")
    again = client.next_event()
    assert isinstance(again, ContinuationRequest)
    assert client.answer(again) == b"*\r\n"  # never the password twice
    client.receive_data(b"a1 BAD [AUTHENTICATIONFAILED] cancelled\r\n")
    done = client.next_event()
    assert isinstance(done, Completed) and done.tagged.status == "BAD"


def test_imap_sasl_ir_goes_on_the_command_line() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    line = client.authenticate(SaslExchange("PLAIN", "alice", PASSWORD, initial_response=True))
    assert (
        line
        == b"a1 AUTHENTICATE PLAIN " + imap.authenticate_plain_initial("alice", PASSWORD) + b"\r\n"
    )
    client.receive_data(b"+ \r\n")
    challenge = client.next_event()
    assert isinstance(challenge, ContinuationRequest)
    assert client.answer(challenge) == b"*\r\n"


def test_imap_the_refused_login_transcript() -> None:
    client = ImapClient()
    client.receive_data(b"* OK ready\r\n")
    client.next_event()
    exchange = SaslExchange("PLAIN", "alice", PASSWORD)
    client.send(Command("LOGIN", "alice", PASSWORD))
    events, _ = converse(
        client,
        [transcript("imap/dovecot_login_refused.bin")],
        script(
            [
                lambda _e: client.authenticate(exchange),
                lambda e: client.answer(e),  # type: ignore[arg-type]
            ]
        ),
    )
    first, challenge, second = events
    assert isinstance(first, Completed) and first.tagged.code == "PRIVACYREQUIRED"
    assert first.untagged[0].code == "ALERT"
    assert isinstance(challenge, ContinuationRequest)
    assert isinstance(second, Completed) and second.tagged.code == "AUTHENTICATIONFAILED"


def test_imap_idle_hands_out_untagged_responses_as_they_come() -> None:
    client2 = ImapClient()
    client2.receive_data(b"* OK ready\r\n")
    client2.next_event()
    client2.send(Command("IDLE"))
    client2.receive_data(b"+ idling\r\n* 3 EXISTS\r\n* 1 FETCH (FLAGS (\\Flagged))\r\n")
    assert isinstance(client2.next_event(), ContinuationRequest)
    exists = client2.next_event()
    assert isinstance(exists, Unsolicited) and exists.response.keyword == "EXISTS"
    fetch = client2.next_event()
    assert isinstance(fetch, Unsolicited) and fetch.response.keyword == "FETCH"
    assert client2.done() == b"DONE\r\n"
    client2.receive_data(b"* 4 EXISTS\r\na1 OK Idle completed\r\n")
    done = client2.next_event()
    assert isinstance(done, Completed) and done.name == "IDLE"
    assert [u.number for u in done.untagged] == [4]


def test_imap_a_login_command_hides_its_arguments() -> None:
    assert PASSWORD not in repr(Command("LOGIN", "alice", PASSWORD))
    assert PASSWORD not in repr(SaslExchange("LOGIN", "alice", PASSWORD))


# --- POP3 -----------------------------------------------------------------------


def test_pop3_knows_which_commands_answer_with_a_body() -> None:
    client = Pop3Client()
    client.receive_data(b"+OK ready\r\n")
    client.next_event()
    client.send(pop3.user_command("alice"))
    commands = [
        pop3.pass_command(PASSWORD),
        pop3.STAT_COMMAND,
        b"LIST\r\n",
        b"RETR 1\r\n",
        pop3.QUIT_COMMAND,
    ]
    events, _ = converse(
        client,
        [transcript("pop3/dovecot_session.bin")],
        script([lambda _e, c=c: client.send(c) for c in commands]),
    )
    user, password, stat, listing, retr, quit_ = events
    assert isinstance(user, pop3_client.Reply) and user.ok and user.command == "USER"
    assert pop3.parse_stat(stat.response) == (2, 4600)  # type: ignore[attr-defined]
    assert listing.response.lines == ("1 1200", "2 3400")  # type: ignore[attr-defined]
    assert retr.response.lines[-2:] == (".a line that starts with a dot", ".")  # type: ignore[attr-defined]
    assert quit_.command == "QUIT"  # type: ignore[attr-defined]
    assert pop3_client.expects_body(b"LIST 2\r\n") is False
    assert pop3_client.expects_body(b"UIDL\r\n") is True
    assert pop3_client.expects_body(b"TOP 1 0\r\n") is True


def test_pop3_sasl_plain_after_the_challenge_and_a_cancel_after_that() -> None:
    client = Pop3Client()
    client.receive_data(b"+OK ready\r\n")
    client.next_event()
    long_user = "u" * 200  # too long for an initial response (RFC 5034 §4: 255 octets)
    exchange = SaslExchange("PLAIN", long_user, PASSWORD, initial_response=True)
    assert client.authenticate(exchange) == b"AUTH PLAIN\r\n"
    client.receive_data(b"+ \r\n")
    challenge = client.next_event()
    assert isinstance(challenge, pop3_client.Reply) and challenge.challenge
    assert client.answer(challenge) == pop3.auth_plain_response(long_user, PASSWORD)
    client.receive_data(b"+ again\r\n")
    again = client.next_event()
    assert isinstance(again, pop3_client.Reply)
    assert client.answer(again) == b"*\r\n"
    client.receive_data(b"-ERR cancelled\r\n")
    done = client.next_event()
    assert isinstance(done, pop3_client.Reply) and not done.ok


def test_pop3_initial_response_when_it_fits() -> None:
    client = Pop3Client()
    client.receive_data(b"+OK ready\r\n")
    client.next_event()
    exchange = SaslExchange("PLAIN", "alice", PASSWORD, initial_response=True)
    assert client.authenticate(exchange) == pop3.auth_plain_command("alice", PASSWORD)


# --- SMTP -----------------------------------------------------------------------


def test_smtp_multiline_replies_sasl_login_and_the_message() -> None:
    client = SmtpClient()
    login = SaslExchange("LOGIN", "alice", PASSWORD)
    steps: list[Callable[[object], bytes | None]] = [
        lambda _e: client.send(smtp.ehlo_command("maildiag.invalid")),
        lambda _e: client.authenticate(
            SaslExchange("PLAIN", "alice", "bad", initial_response=True)
        ),
        lambda _e: client.authenticate(login),
        lambda e: client.answer(e),  # type: ignore[arg-type]
        lambda e: client.answer(e),  # type: ignore[arg-type]
        lambda _e: client.send(smtp.mail_from_command("alice@example.org")),
        lambda _e: client.send(smtp.rcpt_to_command("alice@example.org")),
        lambda _e: client.send(smtp.DATA_COMMAND),
        lambda _e: client.send_message(b"Subject: x\n\n.dot\n"),
        lambda _e: client.send(smtp.QUIT_COMMAND),
    ]
    data = b"220 mail.example.org ESMTP\r\n" + transcript("smtp/postfix_after_tls.bin")
    events, sent = converse(client, [data], script(steps))
    ehlo = events[1]
    assert isinstance(ehlo, smtp_client.Reply) and len(ehlo.reply.lines) == 11
    assert smtp.parse_ehlo(ehlo.reply).auth_mechanisms == ("PLAIN", "LOGIN")
    codes = [e.reply.code for e in events[1:]]  # type: ignore[attr-defined]
    assert codes == [250, 535, 334, 334, 235, 250, 250, 354, 250, 221]
    assert smtp.auth_login_response("alice") + smtp.auth_login_response(PASSWORD) in sent
    assert b"\r\n..dot\r\n.\r\n" in sent
    assert client.state is smtp_client.State.READY


def test_smtp_a_third_login_challenge_is_cancelled() -> None:
    client = SmtpClient()
    client.receive_data(b"220 hi\r\n")
    client.next_event()
    client.authenticate(SaslExchange("LOGIN", "alice", PASSWORD))
    answers = []
    for _ in range(3):
        client.receive_data(b"334 VXNlcm5hbWU6\r\n")
        event = client.next_event()
        assert isinstance(event, smtp_client.Reply)
        answers.append(client.answer(event))
    assert answers[2] == b"*\r\n"


def test_smtp_data_needs_its_354() -> None:
    client = SmtpClient()
    client.receive_data(b"220 hi\r\n")
    client.next_event()
    client.send(smtp.DATA_COMMAND)
    client.receive_data(b"554 no valid recipients\r\n")
    client.next_event()
    with pytest.raises(RuntimeError):
        client.send_message(b"x")


# --- STARTTLS: the go-ahead ends the plaintext, on every client -----------------

GO_AHEAD_CASES = {
    "imap": (b"* OK ready\r\n", b"a1 OK Begin TLS now.\r\n", b"* OK [CAPABILITY X] injected\r\n"),
    "pop3": (b"+OK ready\r\n", b"+OK Begin TLS negotiation now.\r\n", b"+OK injected\r\n"),
    "smtp": (b"220 ready\r\n", b"220 2.0.0 Ready to start TLS\r\n", b"250-AUTH PLAIN\r\n"),
}  # fmt: skip


def start_tls(name: str) -> Client:
    client: Client
    if name == "imap":
        client = ImapClient()
        client.receive_data(GO_AHEAD_CASES[name][0])
        client.next_event()
        client.send(Command("STARTTLS"))
    elif name == "pop3":
        client = Pop3Client()
        client.receive_data(GO_AHEAD_CASES[name][0])
        client.next_event()
        client.send(pop3.STLS_COMMAND)
    else:
        client = SmtpClient()
        client.receive_data(GO_AHEAD_CASES[name][0])
        client.next_event()
        client.send(smtp.STARTTLS_COMMAND)
    return client


@pytest.mark.parametrize("name", sorted(GO_AHEAD_CASES))
def test_bytes_behind_the_go_ahead_are_an_injection(name: str) -> None:
    _, go_ahead, injected = GO_AHEAD_CASES[name]
    client = start_tls(name)
    client.receive_data(go_ahead + injected)
    with pytest.raises(StarttlsInjection) as caught:
        client.next_event()
    assert caught.value.received == injected
    with pytest.raises(ProtocolError):
        client.next_event()  # final: the stream cannot be trusted again
    with pytest.raises(RuntimeError):
        client.tls_started()


@pytest.mark.parametrize("name", sorted(GO_AHEAD_CASES))
def test_the_clean_go_ahead_twin_starts_tls(name: str) -> None:
    _, go_ahead, _ = GO_AHEAD_CASES[name]
    client = start_tls(name)
    client.receive_data(go_ahead)
    assert client.next_event() is not None
    assert client.state.value == "tls"
    client.tls_started()
    assert client.state.value == "ready"
    if isinstance(client, ImapClient):
        assert client.capabilities is None  # RFC 3501 §6.2.1: forgotten with the plaintext


@pytest.mark.parametrize("name", sorted(GO_AHEAD_CASES))
@SPLITS
@given(cuts=cut_points)
def test_an_injection_in_any_split_is_caught(name: str, cuts: list[int]) -> None:
    _, go_ahead, injected = GO_AHEAD_CASES[name]
    client = start_tls(name)
    fed = 0
    caught: StarttlsInjection | None = None
    try:
        for chunk in pieces(go_ahead + injected, cuts):
            client.receive_data(chunk)
            fed += len(chunk)
            if client.next_event() is not None:
                break
    except StarttlsInjection as exc:
        caught = exc
    if caught is None:
        # The go-ahead ended a segment: what follows reaches the TLS handshake,
        # which the transport reports (PlaintextInsteadOfTls -> injection).
        assert fed == len(go_ahead)
        assert client.state.value == "tls"
    else:
        assert caught.received == (go_ahead + injected)[len(go_ahead) : fed]


def test_the_recorded_starttls_dialogues_end_quietly() -> None:
    imap_c = ImapClient()
    events, _ = converse(
        imap_c,
        [transcript("imap/dovecot_starttls.bin")],
        script(
            [
                lambda _e: imap_c.send(Command("CAPABILITY")),
                lambda _e: imap_c.send(Command("STARTTLS")),
            ]
        ),
    )
    assert imap_c.state is imap_client.State.TLS and len(events) == 3
    pop = Pop3Client()
    converse(
        pop,
        [transcript("pop3/dovecot_stls.bin")],
        script([lambda _e: pop.send(pop3.CAPA_COMMAND), lambda _e: pop.send(pop3.STLS_COMMAND)]),
    )
    assert pop.state is pop3_client.State.TLS
    sm = SmtpClient()
    converse(
        sm,
        [transcript("smtp/postfix_starttls.bin")],
        script(
            [
                lambda _e: sm.send(smtp.ehlo_command("maildiag.invalid")),
                lambda _e: sm.send(smtp.STARTTLS_COMMAND),
            ]
        ),
    )
    assert sm.state is smtp_client.State.TLS


# --- fuzzing: recorded dialogues in any split, random bytes ------------------------


def imap_recorded(chunks: list[bytes]) -> tuple[list[object], bytes]:
    client = ImapClient()
    return converse(client, chunks, imap_mailbox_dialogue(client))


POP3_COMMANDS = {
    "courier": [pop3.CAPA_COMMAND],
    "dovecot_session": [
        pop3.user_command("a"),
        pop3.pass_command("b"),
        pop3.STAT_COMMAND,
        b"LIST\r\n",
        b"RETR 1\r\n",
        pop3.QUIT_COMMAND,
    ],
    "gmail": [pop3.CAPA_COMMAND, pop3.auth_plain_command("a", "b")],
    "qmail_apop": [pop3.CAPA_COMMAND, pop3.user_command("a"), pop3.pass_command("b")],
}


def pop3_recorded(name: str, chunks: list[bytes]) -> tuple[list[object], bytes]:
    client = Pop3Client()
    commands = POP3_COMMANDS[name]
    return converse(client, chunks, script([lambda _e, c=c: client.send(c) for c in commands]))


def smtp_recorded(chunks: list[bytes]) -> tuple[list[object], bytes]:
    client = SmtpClient()
    login = SaslExchange("LOGIN", "alice", PASSWORD)
    return converse(
        client,
        chunks,
        script(
            [
                lambda _e: client.send(smtp.ehlo_command("x.invalid")),
                lambda _e: client.send(smtp.NOOP_COMMAND),
                lambda _e: client.authenticate(login),
                lambda e: client.answer(e),  # type: ignore[arg-type]
                lambda e: client.answer(e),  # type: ignore[arg-type]
            ]
        ),
    )


RECORDED: dict[str, tuple[Callable[[list[bytes]], tuple[list[object], bytes]], bytes]] = {
    "imap/dovecot_mailbox": (imap_recorded, transcript("imap/dovecot_mailbox.bin")),
    "pop3/courier": (partial(pop3_recorded, "courier"), transcript("pop3/courier.bin")),
    "pop3/dovecot_session": (
        partial(pop3_recorded, "dovecot_session"),
        b"+OK hi\r\n" + transcript("pop3/dovecot_session.bin"),
    ),
    "pop3/gmail": (partial(pop3_recorded, "gmail"), transcript("pop3/gmail.bin")),
    "pop3/qmail_apop": (partial(pop3_recorded, "qmail_apop"), transcript("pop3/qmail_apop.bin")),
    "smtp/postfix_after_tls": (
        smtp_recorded,
        b"220 hi\r\n" + transcript("smtp/postfix_after_tls.bin"),
    ),
    "smtp/exim": (smtp_recorded, transcript("smtp/exim.bin")),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
@SPLITS
@given(cuts=cut_points)
def test_a_recorded_dialogue_gives_the_same_events_in_any_split(name: str, cuts: list[int]) -> None:
    run, data = RECORDED[name]
    assert run(pieces(data, cuts)) == run([data])


def imap_anything(client: ImapClient) -> Reaction:
    """Reacts to any event with a plausible next step, cycling through the commands."""
    commands = itertools.cycle(["CAPABILITY", "AUTH", "IDLE", "LOGIN", "STARTTLS", "NOOP"])

    def react(event: object) -> bytes | None:
        if isinstance(event, ContinuationRequest):
            if client.exchanging:
                return client.answer(event)
            if client.state is imap_client.State.BUSY:
                return client.cancel()
            return None
        if isinstance(event, Unsolicited):
            return client.done()
        if client.state is imap_client.State.TLS:
            client.tls_started()
        if client.state is not imap_client.State.READY:
            return None
        name = next(commands)
        if name == "AUTH":
            return client.authenticate(SaslExchange("LOGIN", "u", "p"))
        if name == "LOGIN":
            return client.send(Command("LOGIN", "u", "p"))
        return client.send(Command(name))

    return react


def pop3_anything(client: Pop3Client) -> Reaction:
    commands = itertools.cycle(
        [b"CAPA\r\n", b"AUTH", b"STAT\r\n", b"LIST\r\n", b"STLS\r\n", b"RETR 1\r\n"]
    )

    def react(event: object) -> bytes | None:
        if isinstance(event, pop3_client.Reply) and event.challenge:
            return client.answer(event) if client.exchanging else client.cancel()
        if client.state is pop3_client.State.TLS:
            client.tls_started()
        if client.state is not pop3_client.State.READY:
            return None
        command = next(commands)
        if command == b"AUTH":
            return client.authenticate(SaslExchange("PLAIN", "u", "p", initial_response=True))
        return client.send(command)

    return react


def smtp_anything(client: SmtpClient) -> Reaction:
    commands = itertools.cycle([b"EHLO x\r\n", b"AUTH", b"DATA\r\n", b"STARTTLS\r\n", b"NOOP\r\n"])

    def react(event: object) -> bytes | None:
        if (
            isinstance(event, smtp_client.Reply)
            and event.challenge
            and client.state is smtp_client.State.BUSY
        ):
            return client.answer(event) if client.exchanging else client.cancel()
        if client.state is smtp_client.State.TLS:
            client.tls_started()
        if client.state is smtp_client.State.DATA:
            return client.send_message(b"x")
        if client.state is not smtp_client.State.READY:
            return None
        command = next(commands)
        if command == b"AUTH":
            return client.authenticate(SaslExchange("LOGIN", "u", "p"))
        return client.send(command)

    return react


def only_protocol_errors(client: Client, react: Reaction, chunks: list[bytes]) -> None:
    try:
        converse(client, chunks, react)
    except ProtocolError:
        pass


@FUZZ
@given(data=noise, cuts=cut_points)
def test_imap_client_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    client = ImapClient(max_line_length=200, max_literal=100, max_untagged=20)
    only_protocol_errors(client, imap_anything(client), pieces(b"* OK hi\r\n" + data, cuts))


@FUZZ
@given(data=noise, cuts=cut_points)
def test_pop3_client_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    client = Pop3Client(max_line_length=200, max_lines=20)
    only_protocol_errors(client, pop3_anything(client), pieces(data, cuts))


@FUZZ
@given(data=noise, cuts=cut_points)
def test_smtp_client_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    client = SmtpClient(max_line_length=200, max_lines=20)
    only_protocol_errors(client, smtp_anything(client), pieces(data, cuts))


@FUZZ
@given(data=st.data())
def test_replies_to_every_command_in_random_order(data: st.DataObject) -> None:
    # Real replies, shuffled: a client may be handed any of them at any time.
    lines = [
        b"* OK x\r\n", b"a1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] y\r\n", b"+ \r\n",
        b"* BYE z\r\n", b"a2 NO no\r\n", b"a3 OK Begin TLS\r\n", b"* 3 EXISTS\r\n",
        b"a4 BAD bad\r\n", b"a5 OK\r\n", b"* CAPABILITY IMAP4rev1 STARTTLS\r\n",
    ]  # fmt: skip
    chosen = data.draw(st.lists(st.sampled_from(lines), max_size=40))
    client = ImapClient()
    only_protocol_errors(client, imap_anything(client), [b"* OK hi\r\n", *chosen])
