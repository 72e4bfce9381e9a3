"""POP3 responses, CAPA facts and command bytes, against recorded server transcripts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from maildiag.protocols import pop3
from maildiag.protocols.lines import LineTooLong, ProtocolError

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
WRONG_PROTOCOL = sorted((TRANSCRIPTS / "wrong_protocol").glob("*.bin"))

# Whether each response in a transcript answers a multi-line command (RFC 1939
# §3): only the client knows, so the transcripts come with this table.
M, S = True, False
MULTILINE = {
    "dovecot_stls.bin": [S, M, S],
    "dovecot_session.bin": [S, S, S, M, M, S],
    "dovecot_login_failed.bin": [S, S, S, S],
    "courier.bin": [S, M],
    "gmail.bin": [S, M, S],
    "qmail_apop.bin": [S, M, S, S],
    "office365.bin": [S, M, S, S],
    "cyrus_greeting.bin": [S],
}


def test_every_pop3_transcript_has_a_table_entry() -> None:
    assert {p.name for p in (TRANSCRIPTS / "pop3").glob("*.bin")} == set(MULTILINE)


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / "pop3" / name).read_bytes()


def responses(data: bytes, flags: list[bool], cuts: list[int] | None = None) -> list[pop3.Response]:
    parser = pop3.ResponseParser()
    out: list[pop3.Response] = []
    start = 0
    for cut in [*(cuts or []), len(data)]:
        parser.feed(data[start:cut])
        start = cut
        while len(out) < len(flags):
            response = parser.next_response(multiline=flags[len(out)])
            if response is None:
                break
            out.append(response)
    assert parser.pending == 0
    return out


def session(name: str) -> list[pop3.Response]:
    got = responses(transcript(name), MULTILINE[name])
    assert len(got) == len(MULTILINE[name])
    return got


@pytest.mark.parametrize("name", sorted(MULTILINE))
def test_transcript_split_at_every_byte_gives_the_same_responses(name: str) -> None:
    data = transcript(name)
    whole = session(name)
    for cut in range(1, len(data)):
        assert responses(data, MULTILINE[name], [cut]) == whole, cut
    assert responses(data, MULTILINE[name], list(range(1, len(data)))) == whole


@pytest.mark.parametrize("path", WRONG_PROTOCOL, ids=lambda p: p.name)
def test_another_protocol_on_the_port_is_a_protocol_error(path: Path) -> None:
    with pytest.raises(ProtocolError):
        responses(path.read_bytes(), [S])


@pytest.mark.parametrize(
    "data",
    [
        b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
        b"220 mail.example.org ESMTP Postfix\r\n",
        b"+OKAY\r\n",
        b"-ERROR\r\n",
        b"\r\n",
        b"OK\r\n",
        b"\x00\x01\x02",
    ],
)
def test_lines_that_are_not_pop3_status_lines_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        responses(data, [S])


def test_dovecot_greeting_capa_and_stls() -> None:
    greeting, capa, stls = session("dovecot_stls.bin")
    assert greeting.ok and greeting.text == "Dovecot (Debian) ready."
    assert pop3.apop_timestamp(greeting) is None
    assert capa.ok and capa.text == ""
    info = pop3.parse_capa(capa)
    assert info.stls and info.user
    assert info.sasl_mechanisms == ("PLAIN",)
    assert info.capabilities[0] == "CAPA" and "RESP-CODES" in info.capabilities
    assert info.login_delay is None and info.expire is None and info.implementation is None
    assert info.has("pipelining") and not info.has("IMPLEMENTATION")
    assert stls.ok and stls.text == "Begin TLS negotiation now."


def test_courier_login_delay_and_implementation() -> None:
    info = pop3.parse_capa(session("courier.bin")[1])
    assert info.stls and info.user and info.sasl_mechanisms == ()
    assert info.login_delay == 10
    assert info.implementation == "Courier Mail Server"


def test_gmail_expire_login_delay_and_sasl() -> None:
    greeting, capa, failure = session("gmail.bin")
    info = pop3.parse_capa(capa)
    assert not info.stls
    assert info.expire == "0" and info.login_delay == 300
    assert info.sasl_mechanisms == ("PLAIN", "XOAUTH2", "OAUTHBEARER")
    assert not failure.ok and failure.code == "AUTH"


def test_office365_auth_continuation() -> None:
    greeting, capa, challenge, failure = session("office365.bin")
    assert pop3.parse_capa(capa).sasl_mechanisms == ("PLAIN", "XOAUTH2")
    assert challenge.continuation and challenge.ok and challenge.text == ""
    assert pop3.decode_challenge(challenge) == ""
    assert not failure.ok and failure.code is None
    assert failure.text == "Logon failure: unknown user name or bad password."


def test_response_codes_from_rfc_2449_and_3206() -> None:
    _, auth, in_use, sys_temp = session("dovecot_login_failed.bin")
    assert (auth.code, in_use.code, sys_temp.code) == ("AUTH", "IN-USE", "SYS/TEMP")
    assert str(auth) == "-ERR [AUTH] Authentication failed."


def test_text_without_a_code_or_with_a_broken_one_has_no_code() -> None:
    assert pop3.Response(False, "authorization failed").code is None
    assert pop3.Response(False, "[IN-USE no closing bracket").code is None
    assert pop3.Response(False, "[] empty").code is None
    assert pop3.Response(False, "[sys/perm] lower case").code == "SYS/PERM"


def test_qmail_apop_timestamp_and_a_refused_capa_is_one_line() -> None:
    greeting, capa, user_ok, pass_failed = session("qmail_apop.bin")
    assert pop3.apop_timestamp(greeting) == "<12345.1700000000@mail.example.net>"
    # Asked as multi-line, but RFC 1939 §3: a -ERR never has a body.
    assert not capa.ok and capa.lines == () and capa.text == "authorization first"
    assert user_ok.ok and user_ok.text == ""
    assert not pass_failed.ok
    with pytest.raises(ValueError):
        pop3.parse_capa(capa)


def test_cyrus_apop_timestamp_after_the_text() -> None:
    (greeting,) = session("cyrus_greeting.bin")
    assert pop3.apop_timestamp(greeting) == "<1896.1700000000@pop.example.org>"
    assert pop3.apop_timestamp(pop3.Response(False, "<1.2@x>")) is None
    assert pop3.apop_timestamp(pop3.Response(True, "ready <no-at-sign>")) is None


def test_stat_list_and_dot_unstuffing() -> None:
    user, password, stat, listing, retr, quit_ = session("dovecot_session.bin")
    assert pop3.parse_stat(stat) == (2, 4600)
    assert listing.text == "2 messages:" and listing.lines == ("1 1200", "2 3400")
    assert retr.lines == ("Subject: maildiag probe", "", ".a line that starts with a dot", ".")
    assert quit_.text == "Logging out."


@pytest.mark.parametrize("text", ["", "two 4600", "2", "-1 5", "2  4600", "2 4600x"])
def test_malformed_stat_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        pop3.parse_stat(pop3.Response(True, text))


def test_stat_tolerates_trailing_text_but_not_a_refusal() -> None:
    assert pop3.parse_stat(pop3.Response(True, "3 1024 octets")) == (3, 1024)
    with pytest.raises(ValueError):
        pop3.parse_stat(pop3.Response(False, "[SYS/TEMP] try later"))


def test_several_responses_in_one_chunk() -> None:
    got = responses(b"+OK\r\n+OK Logged in.\r\n-ERR nope\r\n", [S, S, S])
    assert [r.ok for r in got] == [True, True, False]


def test_status_indicators_are_matched_case_blind() -> None:
    (ok,) = responses(b"+ok fine\r\n", [S])
    (err,) = responses(b"-err bad\n", [S])
    assert ok.ok and ok.text == "fine" and not err.ok and err.text == "bad"


def test_a_bare_plus_is_a_continuation() -> None:
    (challenge,) = responses(b"+\r\n", [S])
    assert challenge.continuation and challenge.text == ""
    (challenge,) = responses(b"+ VXNlcm5hbWU6\r\n", [S])
    assert pop3.decode_challenge(challenge) == "Username:"
    assert str(challenge) == "+ VXNlcm5hbWU6"


def test_decode_challenge_refuses_non_continuations() -> None:
    with pytest.raises(ValueError):
        pop3.decode_challenge(pop3.Response(True, "VXNlcm5hbWU6"))


def test_a_multi_line_body_split_mid_line_waits() -> None:
    parser = pop3.ResponseParser()
    parser.feed(b"+OK\r\nTOP\r\nUI")
    assert parser.next_response(multiline=True) is None
    parser.feed(b"DL\r\n.")
    assert parser.next_response(multiline=True) is None
    parser.feed(b"\r\n")
    response = parser.next_response(multiline=True)
    assert response is not None and response.lines == ("TOP", "UIDL")


def test_switching_to_single_line_mid_body_is_a_caller_error() -> None:
    parser = pop3.ResponseParser()
    parser.feed(b"+OK\r\nTOP\r\n")
    assert parser.next_response(multiline=True) is None
    with pytest.raises(RuntimeError):
        parser.next_response()


def test_too_many_body_lines_is_a_protocol_error() -> None:
    data = b"+OK\r\na\r\nb\r\nc\r\n.\r\n"
    parser = pop3.ResponseParser(max_lines=3)
    parser.feed(data)
    response = parser.next_response(multiline=True)
    assert response is not None and len(response.lines) == 3
    parser = pop3.ResponseParser(max_lines=2)
    parser.feed(data)
    with pytest.raises(ProtocolError):
        parser.next_response(multiline=True)


def test_an_over_long_body_line_is_refused_before_its_end() -> None:
    parser = pop3.ResponseParser(max_line_length=100)
    parser.feed(b"+OK\r\n" + b"x" * 100 + b"\r\n")
    assert parser.next_response(multiline=True) is None
    parser.feed(b"y" * 200)
    with pytest.raises(LineTooLong):
        parser.next_response(multiline=True)


def test_errors_are_final() -> None:
    parser = pop3.ResponseParser()
    parser.feed(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()
    parser.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()


def test_pending_reveals_bytes_sent_after_the_stls_answer() -> None:
    clean = pop3.ResponseParser()
    clean.feed(b"+OK Begin TLS negotiation now.\r\n")
    assert clean.next_response() is not None and clean.pending == 0
    injected = pop3.ResponseParser()
    injected.feed(b"+OK Begin TLS negotiation now.\r\n+OK injected\r\n")
    assert injected.next_response() is not None and injected.pending > 0


def test_login_commands() -> None:
    assert pop3.user_command("alice") == b"USER alice\r\n"
    # RFC 1939 §7: the PASS argument is the rest of the line, spaces included.
    assert pop3.pass_command("correct horse") == b"PASS correct horse\r\n"
    assert pop3.CAPA_COMMAND == b"CAPA\r\n" and pop3.STLS_COMMAND == b"STLS\r\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda: pop3.user_command("alice\r\nDELE 1"),
        lambda: pop3.pass_command("hunter2\r\nDELE 1"),
        lambda: pop3.auth_plain_command("alice", "hunter2\0"),
    ],
)
def test_login_commands_refuse_injection_without_echoing(call: object) -> None:
    with pytest.raises(ValueError) as info:
        call()  # type: ignore[operator]
    assert "hunter2" not in str(info.value) and "DELE" not in str(info.value)


def test_auth_plain_command_with_initial_response() -> None:
    line = pop3.auth_plain_command("alice", "s3cret")
    assert line.startswith(b"AUTH PLAIN ") and line.endswith(b"\r\n")
    assert base64.b64decode(line[11:-2]) == b"\0alice\0s3cret"
    assert pop3.auth_plain_response("alice", "s3cret") == line[11:]


def test_auth_plain_command_too_long_for_rfc_5034_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        pop3.auth_plain_command("alice", "p" * 200)
    assert "ppp" not in str(info.value)
    assert len(pop3.auth_plain_response("alice", "p" * 200)) > 255
