"""SMTP replies, EHLO facts and command bytes, against recorded server transcripts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from maildiag.protocols import smtp
from maildiag.protocols.lines import LineTooLong, ProtocolError

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
SMTP_FILES = sorted((TRANSCRIPTS / "smtp").glob("*.bin"))
WRONG_PROTOCOL = sorted((TRANSCRIPTS / "wrong_protocol").glob("*.bin"))


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / "smtp" / name).read_bytes()


def replies(data: bytes, **kwargs: int) -> list[smtp.Reply]:
    parser = smtp.ReplyParser(**kwargs)
    parser.feed(data)
    out = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out


def replies_in_pieces(data: bytes, cuts: list[int]) -> list[smtp.Reply]:
    parser = smtp.ReplyParser()
    out = []
    start = 0
    for cut in [*cuts, len(data)]:
        parser.feed(data[start:cut])
        start = cut
        while (reply := parser.next_reply()) is not None:
            out.append(reply)
    return out


@pytest.mark.parametrize("path", SMTP_FILES, ids=lambda p: p.name)
def test_transcript_split_at_every_byte_gives_the_same_replies(path: Path) -> None:
    data = path.read_bytes()
    whole = replies(data)
    assert whole, "every transcript holds at least one reply"
    for cut in range(1, len(data)):
        assert replies_in_pieces(data, [cut]) == whole, cut
    assert replies_in_pieces(data, list(range(1, len(data)))) == whole


@pytest.mark.parametrize("path", WRONG_PROTOCOL, ids=lambda p: p.name)
def test_another_protocol_on_the_port_is_a_protocol_error(path: Path) -> None:
    with pytest.raises(ProtocolError):
        replies(path.read_bytes())


@pytest.mark.parametrize(
    "greeting",
    [
        b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
        b"+OK Dovecot ready.\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
    ],
)
def test_an_imap_pop3_or_binary_greeting_is_a_protocol_error(greeting: bytes) -> None:
    with pytest.raises(ProtocolError):
        replies(greeting)


def test_postfix_greeting_ehlo_and_starttls() -> None:
    greeting, ehlo, starttls = replies(transcript("postfix_starttls.bin"))
    assert greeting.code == 220 and greeting.is_positive
    assert greeting.text == "mail.example.org ESMTP Postfix (Debian/GNU)"
    info = smtp.parse_ehlo(ehlo)
    assert info.server_name == "mail.example.org"
    assert info.starttls is True
    assert info.size_limit == 10240000
    assert info.auth_mechanisms == ()
    assert "AUTH" not in info.keywords
    assert info.capabilities[:3] == ("PIPELINING", "SIZE 10240000", "ETRN")
    assert info.keywords["SIZE"] == ("10240000",)
    assert info.has("chunking") and not info.has("AUTH")
    assert starttls.code == 220 and starttls.enhanced_status == "2.0.0"


def test_postfix_after_tls_announces_auth_in_both_forms_but_no_starttls() -> None:
    info = smtp.parse_ehlo(replies(transcript("postfix_after_tls.bin"))[0])
    assert info.starttls is False
    assert info.auth_mechanisms == ("PLAIN", "LOGIN")
    assert info.keywords["AUTH"] == ("PLAIN", "LOGIN")
    assert "AUTH=PLAIN LOGIN" in info.capabilities
    assert "AUTH=PLAIN" not in info.keywords


def test_legacy_auth_equals_alone_still_gives_mechanisms() -> None:
    # Exchange 2003: "AUTH GSSAPI NTLM LOGIN" and the old "AUTH=LOGIN".
    info = smtp.parse_ehlo(replies(transcript("exchange2003.bin"))[1])
    assert info.auth_mechanisms == ("GSSAPI", "NTLM", "LOGIN")
    only_legacy = smtp.Reply(250, ("mx.example", "AUTH=login plain", "8BITMIME"))
    info = smtp.parse_ehlo(only_legacy)
    assert info.auth_mechanisms == ("LOGIN", "PLAIN")
    assert info.keywords["AUTH"] == ("LOGIN", "PLAIN")


def test_exchange2003_size_without_number_and_lower_case_keywords() -> None:
    info = smtp.parse_ehlo(replies(transcript("exchange2003.bin"))[1])
    assert info.server_name == "mail.corp.example.com"
    assert info.size_limit is None
    assert info.keywords["SIZE"] == ()
    assert info.has("8BITMIME")
    assert "8bitmime" in info.capabilities
    assert info.starttls is False


def test_size_zero_means_no_limit_and_garbage_size_is_ignored() -> None:
    assert smtp.parse_ehlo(smtp.Reply(250, ("h", "SIZE 0"))).size_limit is None
    assert smtp.parse_ehlo(smtp.Reply(250, ("h", "SIZE lots"))).size_limit is None
    assert smtp.parse_ehlo(smtp.Reply(250, ("h", "SIZE 52428800"))).size_limit == 52428800


def test_office365_offers_auth_only_inside_tls() -> None:
    before = smtp.parse_ehlo(replies(transcript("office365.bin"))[1])
    after_replies = replies(transcript("office365_after_tls.bin"))
    after = smtp.parse_ehlo(after_replies[0])
    assert before.starttls and before.auth_mechanisms == ()
    assert not after.starttls and after.auth_mechanisms == ("LOGIN", "XOAUTH2")
    assert before.size_limit == 157286400
    challenge_user, challenge_password, failure = after_replies[1:]
    assert smtp.decode_challenge(challenge_user) == "Username:"
    assert smtp.decode_challenge(challenge_password) == "Password:"
    assert failure.is_permanent and failure.enhanced_status == "5.7.139"
    assert "SmtpClientAuthentication is disabled" in failure.text


def test_exim_multi_line_greeting() -> None:
    greeting, ehlo, tls = replies(transcript("exim.bin"))
    assert greeting.code == 220
    assert len(greeting.lines) == 3
    assert greeting.lines[0].startswith("mx.example.net ESMTP Exim 4.96")
    assert greeting.lines[2] == "and/or bulk e-mail."
    info = smtp.parse_ehlo(ehlo)
    assert info.server_name == "mx.example.net"
    assert info.has("PIPE_CONNECT") and info.starttls
    assert tls.text == "TLS go ahead"


def test_gmail_multi_line_535_keeps_each_line() -> None:
    ehlo, failure = replies(transcript("gmail_after_tls.bin"))
    assert smtp.parse_ehlo(ehlo).auth_mechanisms[:3] == ("LOGIN", "PLAIN", "XOAUTH2")
    assert failure.code == 535 and failure.is_permanent
    assert failure.enhanced_status == "5.7.8"
    assert len(failure.lines) == 2
    assert failure.text.startswith("5.7.8 Username and Password not accepted.")
    assert str(failure).startswith("535 5.7.8 Username")


def test_multi_line_421_is_transient() -> None:
    (reply,) = replies(transcript("gmail_throttled.bin"))
    assert reply.code == 421 and reply.is_transient and not reply.is_permanent
    assert reply.enhanced_status == "4.7.0"
    assert len(reply.lines) == 3


def test_single_line_421_and_554_greetings() -> None:
    (throttled,) = replies(transcript("exim_throttled.bin"))
    (rejected,) = replies(transcript("postfix_rejected.bin"))
    assert throttled.is_transient and throttled.enhanced_status is None
    assert rejected.is_permanent and rejected.enhanced_status == "5.7.1"


def test_qmail_has_no_starttls_and_refuses_it() -> None:
    greeting, ehlo, refused, bye = replies(transcript("qmail.bin"))
    assert greeting.text == "mail.example.com ESMTP"
    info = smtp.parse_ehlo(ehlo)
    assert not info.starttls and info.capabilities == ("PIPELINING", "8BITMIME")
    assert refused.code == 502 and refused.is_permanent
    assert refused.enhanced_status is None  # "(#5.5.1)" is qmail's own style
    assert bye.code == 221


def test_postfix_submission_dialogue_codes() -> None:
    codes = [r.code for r in replies(transcript("postfix_after_tls.bin"))]
    assert codes == [250, 535, 334, 334, 235, 250, 250, 354, 250, 221]
    data = replies(transcript("postfix_after_tls.bin"))[7]
    assert data.is_intermediate and not data.is_positive


def test_several_replies_in_one_chunk() -> None:
    got = replies(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n")
    assert [r.code for r in got] == [250, 250, 354]


def test_a_bare_code_line_is_a_complete_reply() -> None:
    (reply,) = replies(b"250\r\n")
    assert reply.code == 250 and reply.lines == ("",) and reply.text == ""
    assert reply.enhanced_status is None


def test_a_reply_ending_in_bare_lf_is_accepted() -> None:
    (reply,) = replies(b"220-a\n220 b\n")
    assert reply.lines == ("a", "b")


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    (reply,) = replies(b"220 caf\xe9\r\n")
    assert reply.text == "caf\ufffd"


def test_code_change_inside_a_multi_line_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        replies(b"250-first\r\n251 second\r\n")


@pytest.mark.parametrize(
    "line",
    [b"", b"25 x", b"2500 x", b"250x", b"abc def", b"150 old", b"650 huh", b"\t250 x", b"25"],
)
def test_malformed_reply_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        replies(line + b"\r\n")


def test_too_many_lines_is_a_protocol_error() -> None:
    data = b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n"
    assert len(replies(data, max_lines=4)[0].lines) == 4
    with pytest.raises(ProtocolError):
        replies(data, max_lines=3)


def test_an_over_long_line_is_refused_before_its_end() -> None:
    parser = smtp.ReplyParser(max_line_length=512)
    parser.feed(b"250-" + b"x" * 508 + b"\r\n")
    assert parser.next_reply() is None
    parser.feed(b"250 " + b"y" * 600)
    with pytest.raises(LineTooLong):
        parser.next_reply()


def test_errors_are_final() -> None:
    parser = smtp.ReplyParser()
    parser.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()
    parser.feed(b"220 ok\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()


def test_pending_reveals_bytes_sent_after_the_starttls_answer() -> None:
    clean = smtp.ReplyParser()
    clean.feed(b"220 2.0.0 Ready to start TLS\r\n")
    assert clean.next_reply() is not None and clean.pending == 0
    injected = smtp.ReplyParser()
    injected.feed(b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
    assert injected.next_reply() is not None and injected.pending > 0


def test_enhanced_status_needs_the_rfc_3463_shape() -> None:
    assert smtp.Reply(550, ("5.1.1 <x@y>: Recipient address rejected",)).enhanced_status == "5.1.1"
    assert smtp.Reply(550, ("5.1 unknown",)).enhanced_status is None
    assert smtp.Reply(550, ("6.1.1 odd",)).enhanced_status is None
    assert smtp.Reply(550, ("5.1.1x odd",)).enhanced_status is None
    assert smtp.Reply(550, ()).enhanced_status is None


def test_parse_ehlo_refuses_a_negative_reply_and_an_odd_positive_one() -> None:
    with pytest.raises(ValueError):
        smtp.parse_ehlo(smtp.Reply(502, ("5.5.1 EHLO not implemented",)))
    with pytest.raises(ProtocolError):
        smtp.parse_ehlo(smtp.Reply(220, ("mx.example ESMTP",)))


def test_ehlo_command() -> None:
    assert smtp.ehlo_command("maildiag.invalid") == b"EHLO maildiag.invalid\r\n"
    assert smtp.ehlo_command("[192.0.2.1]") == b"EHLO [192.0.2.1]\r\n"
    assert smtp.helo_command("maildiag.invalid") == b"HELO maildiag.invalid\r\n"


@pytest.mark.parametrize("name", ["", "two words", "x\r\nQUIT", "bücher.example", "a\tb"])
def test_ehlo_command_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        smtp.ehlo_command(name)


def test_auth_plain_command() -> None:
    line = smtp.auth_plain_command("alice", "s3cret")
    assert line.startswith(b"AUTH PLAIN ") and line.endswith(b"\r\n")
    assert base64.b64decode(line[11:-2]) == b"\0alice\0s3cret"


def test_auth_plain_command_refuses_nul_without_leaking_the_password() -> None:
    with pytest.raises(ValueError) as info:
        smtp.auth_plain_command("alice", "hunter\0two")
    assert "hunter" not in str(info.value) and "hunter" not in repr(info.value)


def test_auth_login_exchange() -> None:
    assert smtp.auth_login_command() == b"AUTH LOGIN\r\n"
    assert smtp.auth_login_response("alice") == b"YWxpY2U=\r\n"
    assert smtp.auth_login_response("pässword") == base64.b64encode("pässword".encode()) + b"\r\n"


def test_decode_challenge_is_tolerant_about_padding() -> None:
    assert smtp.decode_challenge(smtp.Reply(334, ("YWI",))) == "ab"
    assert smtp.decode_challenge(smtp.Reply(334, ("",))) == ""


def test_decode_challenge_refuses_non_challenges_and_garbage() -> None:
    with pytest.raises(ValueError):
        smtp.decode_challenge(smtp.Reply(235, ("2.7.0 Authentication successful",)))
    with pytest.raises(ProtocolError):
        smtp.decode_challenge(smtp.Reply(334, ("Username:",)))


def test_envelope_commands() -> None:
    assert smtp.mail_from_command("probe@example.org") == b"MAIL FROM:<probe@example.org>\r\n"
    assert smtp.mail_from_command("") == b"MAIL FROM:<>\r\n"
    assert (
        smtp.mail_from_command("p@example.org", ["SIZE=1200", "BODY=8BITMIME"])
        == b"MAIL FROM:<p@example.org> SIZE=1200 BODY=8BITMIME\r\n"
    )
    assert smtp.rcpt_to_command("alice@example.org") == b"RCPT TO:<alice@example.org>\r\n"
    assert smtp.DATA_COMMAND == b"DATA\r\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda: smtp.mail_from_command("a@b\r\nRCPT TO:<victim@example.org>"),
        lambda: smtp.mail_from_command("<a@b>"),
        lambda: smtp.rcpt_to_command(""),
        lambda: smtp.rcpt_to_command("a@b\n"),
        lambda: smtp.mail_from_command("a@b", ["SIZE=1 BODY=7BIT"]),
        lambda: smtp.mail_from_command("a@b", [""]),
    ],
)
def test_envelope_commands_refuse_injection(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_dot_stuff_doubles_leading_dots_and_normalises_line_ends() -> None:
    message = b".hidden\nSubject: x\r\n\r\nbody\r.\r\n..two\nend"
    assert smtp.dot_stuff(message) == (
        b"..hidden\r\nSubject: x\r\n\r\nbody\r\n..\r\n...two\r\nend\r\n"
    )


def test_dot_stuff_leaves_other_dots_and_empty_messages_alone() -> None:
    assert smtp.dot_stuff(b"a.b\r\nc .\r\n") == b"a.b\r\nc .\r\n"
    assert smtp.dot_stuff(b"") == b""


def test_data_payload_ends_with_the_end_marker() -> None:
    assert smtp.data_payload(b"Subject: x\r\n\r\nhi") == b"Subject: x\r\n\r\nhi\r\n.\r\n"
    assert smtp.data_payload(b"") == b".\r\n"


# -- the sending check's replies ---------------------------------------------------


def _reply(*lines: str) -> smtp.Reply:
    parser = smtp.ReplyParser()
    parser.feed("".join(f"{line}\r\n" for line in lines).encode())
    reply = parser.next_reply()
    assert reply is not None
    return reply


@pytest.mark.parametrize(
    "line",
    [
        # Postfix reject_sender_login_mismatch (at RCPT, smtpd_delay_reject)
        "553 5.7.1 <info@kunde.example>: Sender address rejected: not owned by user web123",
        # Microsoft 365 (SendAsDenied)
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        # Exim with an ACL on the authenticated sender
        "550 Sender not authorized for this login",
        # RFC 3463 X.1.8: bad sender's system address
        "553 5.1.8 <a@nowhere.invalid>: Sender address rejected: Domain not found",
    ],
)
def test_sender_refusals_are_recognised(line: str) -> None:
    assert smtp.refuses_sender(_reply(line))


@pytest.mark.parametrize(
    "line",
    [
        "550 5.1.1 <bob@kunde.example>: Recipient address rejected: User unknown",
        "554 5.7.1 <bob@elsewhere.example>: Relay access denied",
        "450 4.1.8 <a@b.example>: Sender address rejected: Domain not found",  # temporary
        "250 2.1.5 Ok",
    ],
)
def test_other_replies_are_not_sender_refusals(line: str) -> None:
    assert not smtp.refuses_sender(_reply(line))


def test_size_limit_from_ehlo_lines() -> None:
    assert smtp.size_limit_from(("PIPELINING", "SIZE 10240000", "8BITMIME")) == 10240000
    assert smtp.size_limit_from(("size 52428800",)) == 52428800
    assert smtp.size_limit_from(("SIZE",)) is None  # RFC 1870 §4: no fixed limit
    assert smtp.size_limit_from(("SIZE 0",)) is None
    assert smtp.size_limit_from(("SIZE lots",)) is None
    assert smtp.size_limit_from(("PIPELINING", "SIZEABLE 5")) is None
