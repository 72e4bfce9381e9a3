"""IMAP responses, literals, data parsing and command bytes, against recorded transcripts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from maildiag.protocols import imap
from maildiag.protocols.imap import Atom, Continuation, Tagged, Untagged
from maildiag.protocols.lines import LineTooLong, ProtocolError

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
IMAP_FILES = sorted((TRANSCRIPTS / "imap").glob("*.bin"))
WRONG_PROTOCOL = sorted((TRANSCRIPTS / "wrong_protocol").glob("*.bin"))

AnyResponse = Untagged | Tagged | Continuation


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / "imap" / name).read_bytes()


def responses(data: bytes, cuts: list[int] | None = None, **kwargs: int) -> list[AnyResponse]:
    parser = imap.ResponseParser(**kwargs)
    out: list[AnyResponse] = []
    start = 0
    for cut in [*(cuts or []), len(data)]:
        parser.feed(data[start:cut])
        start = cut
        while (response := parser.next_response()) is not None:
            out.append(response)
    return out


def one(data: bytes) -> AnyResponse:
    (response,) = responses(data)
    return response


def untagged(data: bytes) -> Untagged:
    response = one(data)
    assert isinstance(response, Untagged)
    return response


def session(name: str) -> list[AnyResponse]:
    got = responses(transcript(name))
    assert got
    return got


def by_keyword(items: list[AnyResponse], keyword: str) -> list[Untagged]:
    return [r for r in items if isinstance(r, Untagged) and r.keyword == keyword]


# --- framing ------------------------------------------------------------------


@pytest.mark.parametrize("path", IMAP_FILES, ids=lambda p: p.name)
def test_transcript_split_at_every_byte_gives_the_same_responses(path: Path) -> None:
    data = path.read_bytes()
    whole = responses(data)
    for cut in range(1, len(data)):
        assert responses(data, [cut]) == whole, cut
    assert responses(data, list(range(1, len(data)))) == whole


@pytest.mark.parametrize("path", WRONG_PROTOCOL, ids=lambda p: p.name)
def test_another_protocol_on_the_port_is_a_protocol_error(path: Path) -> None:
    with pytest.raises(ProtocolError):
        responses(path.read_bytes())


@pytest.mark.parametrize(
    "data",
    [
        b"220 mail.example.org ESMTP Postfix\r\n",
        b"+OK Dovecot ready.\r\n",
        b"*\r\n",
        b"* \r\n",
        b"*OK hi\r\n",
        b"* 5\r\n",
        b"* 5 \r\n",
        b"* 5 OK numbered status\r\n",
        b"* ?? weird\r\n",
        b"a1 MAYBE later\r\n",
        b"a1\r\n",
        b"a1  OK two spaces\r\n",
        b"\r\n",
        b"a{1 OK bad tag\r\n",
        b"\x16\x03\x01\x00\x05",
        b"\x00\x00\x00\x00",
    ],
)
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        responses(data)


def test_binary_garbage_is_refused_before_any_line_end() -> None:
    parser = imap.ResponseParser()
    parser.feed(b"\x15\x03\x03")
    with pytest.raises(ProtocolError):
        parser.next_response()


def test_a_partial_but_plausible_line_waits() -> None:
    parser = imap.ResponseParser()
    for part in (b"*", b" O", b"K hello"):
        parser.feed(part)
        assert parser.next_response() is None
    parser.feed(b"\r\n")
    assert parser.next_response() == Untagged("OK", None, None, "hello", b"* OK hello\r\n")


def test_several_responses_in_one_chunk() -> None:
    got = responses(b"* 3 EXISTS\r\n* 0 RECENT\r\na1 OK done\r\n")
    assert [type(r) for r in got] == [Untagged, Untagged, Tagged]
    assert got[0] == Untagged("EXISTS", 3, None, "", b"* 3 EXISTS\r\n")


def test_tagged_status_is_upper_cased_and_the_code_split_off() -> None:
    response = one(b"a1 no [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    assert response == Tagged("a1", "NO", "AUTHENTICATIONFAILED", "Authentication failed.")
    assert isinstance(response, Tagged) and not response.ok


def test_a_code_without_its_closing_bracket_stays_text() -> None:
    response = one(b"a1 OK [READ-WRITE done\r\n")
    assert response == Tagged("a1", "OK", None, "[READ-WRITE done")


def test_continuations() -> None:
    assert one(b"+ \r\n") == Continuation("")
    assert one(b"+\r\n") == Continuation("")
    assert one(b"+ idling\r\n") == Continuation("idling")
    assert one(b"+ VXNlcm5hbWU6\r\n") == Continuation("VXNlcm5hbWU6")


def test_a_continuation_without_its_space_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        responses(b"+idling\r\n")


def test_bare_lf_line_ends_are_accepted_and_raw_is_normalised() -> None:
    assert untagged(b"* 1 EXISTS\n").raw == b"* 1 EXISTS\r\n"


def test_errors_are_final() -> None:
    parser = imap.ResponseParser()
    parser.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()
    parser.feed(b"* OK fine now\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()


def test_an_over_long_line_is_refused_before_its_end() -> None:
    parser = imap.ResponseParser(max_line_length=1000)
    parser.feed(b"* OK " + b"x" * 995 + b"\r\n")
    assert parser.next_response() is not None
    parser.feed(b"* OK " + b"x" * 2000)
    with pytest.raises(LineTooLong):
        parser.next_response()


def test_a_10_mb_line_is_refused_with_bounded_memory() -> None:
    parser = imap.ResponseParser()
    chunk = b"x" * 65536
    parser.feed(b"* OK ")
    with pytest.raises(LineTooLong):
        for _ in range(160):
            parser.feed(chunk)
            assert parser.pending <= 64 * 1024 + 2 + len(chunk) + 5
            parser.next_response()


def test_pending_reveals_bytes_sent_after_the_starttls_answer() -> None:
    clean = imap.ResponseParser()
    clean.feed(b"a2 OK Begin TLS negotiation now.\r\n")
    assert clean.next_response() is not None and clean.pending == 0
    injected = imap.ResponseParser()
    injected.feed(b"a2 OK Begin TLS negotiation now.\r\n* OK injected\r\n")
    assert injected.next_response() is not None and injected.pending > 0


# --- literals -----------------------------------------------------------------


def test_a_literal_split_across_feeds() -> None:
    parser = imap.ResponseParser()
    for part in (b"* 1 FETCH (BODY[] {1", b"1}\r\nhello", b" w", b"orld)", b"\r"):
        parser.feed(part)
        assert parser.next_response() is None
    parser.feed(b"\n* 2 EXISTS\r\n")
    fetch = parser.next_response()
    assert isinstance(fetch, Untagged)
    assert fetch.raw == b"* 1 FETCH (BODY[] {11}\r\nhello world)\r\n"
    assert fetch.text == '(BODY[] "hello world")'
    assert imap.parse_fetch(fetch) == {"BODY[]": b"hello world"}
    assert parser.next_response() == Untagged("EXISTS", 2, None, "", b"* 2 EXISTS\r\n")


def test_a_literal_holding_crlf_parentheses_and_braces_is_taken_verbatim() -> None:
    items = session("literals.bin")
    status, fetch, done = items
    assert isinstance(status, Untagged) and isinstance(fetch, Untagged)
    assert imap.parse_status(status) == ("Archive 2023", {"MESSAGES": 7, "UIDNEXT": 8})
    assert status.text == '"Archive 2023" (MESSAGES 7 UIDNEXT 8)'
    data = imap.parse_fetch(fetch)
    assert data["UID"] == 105
    assert data["BODY[]"] == (
        b'From: probe@example.org\r\nSubject: (test) "quoted"\r\n\r\nbody {3}\r\n)\r\n'
    )
    assert data["BINARY[1]"] == b"\x00\x01\xff\r\n"
    envelope = data["ENVELOPE"]
    assert isinstance(envelope, tuple) and envelope[0] == "Mon, 6 Nov 2023 10:00:00 +0000"
    assert envelope[1:9] == (None,) * 8 and envelope[9] == "<x@example.org>"
    assert data["MODSEQ"] == 12345
    assert '\\"quoted\\"' in fetch.text  # inlined as a quoted string
    assert done == Tagged("a1", "OK", None, "Fetch completed.")


def test_empty_non_synchronising_and_consecutive_literals() -> None:
    fetch = untagged(b"* 1 FETCH (BODY[1] {0}\r\n BODY[2] {3+}\r\nabc BODY[3] {2}\r\nde)\r\n")
    assert imap.parse_fetch(fetch) == {"BODY[1]": b"", "BODY[2]": b"abc", "BODY[3]": b"de"}


def test_a_literal_over_the_bound_fails_as_soon_as_it_is_announced() -> None:
    parser = imap.ResponseParser(max_literal=1000)
    parser.feed(b"* 1 FETCH (BODY[] {1001}\r\n")
    with pytest.raises(imap.LiteralTooLarge):
        parser.next_response()
    parser = imap.ResponseParser(max_literal=1000)
    parser.feed(b"* 1 FETCH (BODY[] {" + b"9" * 5000 + b"}\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()


def test_a_literal_at_the_bound_is_accepted() -> None:
    fetch = responses(b"* 1 FETCH (BODY[] {1000}\r\n" + b"z" * 1000 + b")\r\n", max_literal=1000)
    assert isinstance(fetch[0], Untagged) and imap.parse_fetch(fetch[0])["BODY[]"] == b"z" * 1000


def test_the_whole_response_is_bounded_too() -> None:
    many = b"* 1 FETCH (" + b"".join(b"B%d {50}\r\n" % i + b"y" * 50 + b" " for i in range(10))
    parser = imap.ResponseParser(max_literal=100, max_response_size=400)
    parser.feed(many + b")\r\n")
    with pytest.raises(ProtocolError):
        parser.next_response()
    parser = imap.ResponseParser(max_literal=100, max_response_size=4000)
    parser.feed(many + b")\r\n")
    assert parser.next_response() is not None


def test_braces_at_the_end_of_status_text_are_not_literals() -> None:
    # RFC 3501 §9: resp-text runs to CRLF, so "{5}" there is just words.
    got = responses(b"* OK see {5}\r\na1 NO quota {3}\r\n* 1 EXISTS\r\n")
    assert got[0] == Untagged("OK", None, None, "see {5}", b"* OK see {5}\r\n")
    assert got[1] == Tagged("a1", "NO", None, "quota {3}")
    assert len(got) == 3


# --- greeting and capabilities ------------------------------------------------


def test_dovecot_greeting_with_capabilities() -> None:
    greeting = imap.parse_greeting(session("dovecot_greeting.bin")[0])
    assert greeting.status == "OK" and greeting.text == "Dovecot (Debian) ready."
    assert greeting.capabilities is not None
    assert greeting.capabilities[0] == "IMAP4REV1"
    assert "STARTTLS" in greeting.capabilities and "AUTH=PLAIN" in greeting.capabilities
    assert imap.auth_mechanisms(greeting.capabilities) == ("PLAIN",)


def test_greetings_without_capabilities() -> None:
    zimbra = imap.parse_greeting(session("zimbra.bin")[0])
    office = imap.parse_greeting(session("office365.bin")[0])
    assert zimbra.capabilities is None and zimbra.text.startswith("mail.example.com Zimbra")
    # Exchange's trailing "[...]" is a server id, not a response code.
    assert office.capabilities is None and office.text.endswith("]")
    assert isinstance(session("office365.bin")[0], Untagged)
    assert session("office365.bin")[0].code is None  # type: ignore[union-attr]


def test_courier_greeting() -> None:
    greeting = imap.parse_greeting(session("courier_greeting.bin")[0])
    assert greeting.capabilities is not None and "ACL2=UNION" in greeting.capabilities
    assert greeting.text.startswith("Courier-IMAP ready.")


def test_bye_and_preauth_greetings() -> None:
    (bye,) = session("bye_greeting.bin")
    greeting = imap.parse_greeting(bye)
    assert greeting.status == "BYE" and greeting.capabilities is None
    assert isinstance(bye, Untagged) and imap.response_code_name(bye.code) == "UNAVAILABLE"
    preauth = imap.parse_greeting(session("preauth.bin")[0])
    assert preauth.status == "PREAUTH" and preauth.capabilities is not None


@pytest.mark.parametrize(
    "response",
    [
        Untagged("NO", None, None, "go away", b"* NO go away\r\n"),
        Untagged("CAPABILITY", None, None, "IMAP4rev1", b"* CAPABILITY IMAP4rev1\r\n"),
        Tagged("a1", "OK", None, "hello"),
        Continuation("hello"),
    ],
)
def test_anything_else_is_not_a_greeting(response: AnyResponse) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_greeting(response)


def test_logindisabled_before_starttls() -> None:
    items = session("dovecot_starttls.bin")
    caps = imap.capabilities_from(items)
    assert caps is not None and "LOGINDISABLED" in caps and "STARTTLS" in caps
    assert imap.auth_mechanisms(caps) == ()
    assert items[-1] == Tagged("a2", "OK", None, "Begin TLS negotiation now.")
    zimbra = imap.capabilities_from(session("zimbra.bin"))
    assert zimbra is not None and "LOGINDISABLED" in zimbra


def test_capabilities_after_login_come_from_the_tagged_code_and_the_latest_wins() -> None:
    items = session("dovecot_mailbox.bin")
    caps = imap.capabilities_from(items[:2])
    assert caps is not None and "QUOTA" in caps and "LOGINDISABLED" not in caps
    gmail = session("gmail.bin")
    first = imap.capabilities_from(gmail[:3])
    latest = imap.capabilities_from(gmail)
    assert first is not None and "XYZZY" in first
    assert latest is not None and "XYZZY" not in latest and "UTF8=ACCEPT" in latest
    assert imap.auth_mechanisms(first) == (
        "XOAUTH2",
        "PLAIN",
        "PLAIN-CLIENTTOKEN",
        "OAUTHBEARER",
        "XOAUTH",
    )


def test_no_capabilities_anywhere_gives_none() -> None:
    assert imap.capabilities_from(session("office365.bin")[2:]) is None
    assert imap.capabilities_from([]) is None


def test_response_codes_that_explain_login_failures() -> None:
    refused = session("dovecot_login_refused.bin")
    alert, privacy, challenge, failed = refused
    assert isinstance(alert, Untagged) and alert.keyword == "BAD" and alert.code == "ALERT"
    assert (
        isinstance(privacy, Tagged) and imap.response_code_name(privacy.code) == "PRIVACYREQUIRED"
    )
    assert challenge == Continuation("")
    assert isinstance(failed, Tagged)
    assert imap.response_code_name(failed.code) == "AUTHENTICATIONFAILED"
    assert imap.response_code_name("UIDVALIDITY 1700000000") == "UIDVALIDITY"
    assert imap.response_code_name("overquota") == "OVERQUOTA"
    assert imap.response_code_name(None) is None
    assert imap.response_code_name("") is None
    over = [r for r in session("cyrus_quota.bin") if isinstance(r, Tagged) and r.status == "NO"]
    assert imap.response_code_name(over[0].code) == "OVERQUOTA"


# --- data responses -----------------------------------------------------------


def test_dovecot_quota_status_search_and_fetch() -> None:
    items = session("dovecot_mailbox.bin")
    (quotaroot,) = by_keyword(items, "QUOTAROOT")
    (quota,) = by_keyword(items, "QUOTA")
    (status,) = by_keyword(items, "STATUS")
    (search,) = by_keyword(items, "SEARCH")
    (fetch,) = by_keyword(items, "FETCH")
    assert imap.parse_quotaroot(quotaroot) == ("INBOX", ("User quota",))
    assert imap.parse_quota(quota) == (
        "User quota",
        (
            imap.QuotaResourceUsage("STORAGE", 10240, 1048576),
            imap.QuotaResourceUsage("MESSAGE", 42, 100000),
        ),
    )
    mailbox, counts = imap.parse_status(status)
    assert mailbox == "INBOX"
    assert counts == {
        "MESSAGES": 42,
        "UIDNEXT": 43,
        "UIDVALIDITY": 1700000000,
        "UNSEEN": 3,
        "SIZE": 10485123,
    }
    assert imap.parse_search(search) == (40, 41, 42)
    assert fetch.number == 42
    assert imap.parse_fetch(fetch) == {
        "UID": 42,
        "RFC822.SIZE": 2345,
        "FLAGS": ("\\Seen", "\\Flagged"),
        "BODY[HEADER.FIELDS (SUBJECT)]": b"Subject: maildiag probe 1234\r\n\r\n",
    }
    (exists,) = by_keyword(items, "EXISTS")
    assert exists.number == 42
    codes = [imap.response_code_name(r.code) for r in by_keyword(items, "OK")]
    assert codes == [
        "CAPABILITY",
        "PERMANENTFLAGS",
        "UNSEEN",
        "UIDVALIDITY",
        "UIDNEXT",
        "HIGHESTMODSEQ",
    ]


def test_gmail_empty_quota_root_and_fetch_extensions() -> None:
    items = session("gmail.bin")
    assert imap.parse_quotaroot(by_keyword(items, "QUOTAROOT")[0]) == ("INBOX", ("",))
    root, resources = imap.parse_quota(by_keyword(items, "QUOTA")[0])
    assert root == "" and resources == (imap.QuotaResourceUsage("STORAGE", 1234567, 15728640),)
    assert imap.parse_fetch(by_keyword(items, "FETCH")[0]) == {
        "X-GM-MSGID": 1781234567890123456,
        "X-GM-LABELS": ("\\Important", "Work/Projects"),
        "UID": 17,
        "FLAGS": ("\\Seen",),
    }


def test_cyrus_atom_quota_root() -> None:
    items = session("cyrus_quota.bin")
    assert imap.parse_quotaroot(by_keyword(items, "QUOTAROOT")[0]) == ("INBOX", ("user.alice",))
    assert imap.parse_quota(by_keyword(items, "QUOTA")[0]) == (
        "user.alice",
        (imap.QuotaResourceUsage("STORAGE", 513, 51200),),
    )


def test_quotaroot_with_no_root_or_several_roots() -> None:
    # RFC 9208 §4.3: no root means no quota; several roots are allowed.
    assert imap.parse_quotaroot(untagged(b"* QUOTAROOT INBOX\r\n")) == ("INBOX", ())
    assert imap.parse_quotaroot(untagged(b'* QUOTAROOT "Sent Items" "" user.bob\r\n')) == (
        "Sent Items",
        ("", "user.bob"),
    )
    assert imap.parse_quotaroot(untagged(b"* QUOTAROOT {5}\r\nInbox r\r\n")) == ("Inbox", ("r",))


@pytest.mark.parametrize(
    "data",
    [
        b"* QUOTAROOT\r\n",
        b"* QUOTAROOT (INBOX)\r\n",
        b'* QUOTAROOT "INBOX\r\n',
    ],
)
def test_malformed_quotaroot_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_quotaroot(untagged(data))


@pytest.mark.parametrize(
    "data",
    [
        b'* QUOTA "" (STORAGE 10)\r\n',
        b'* QUOTA "" (STORAGE ten 512)\r\n',
        b'* QUOTA "" (STORAGE -1 512)\r\n',
        b'* QUOTA "" STORAGE 10 512\r\n',
        b'* QUOTA ""\r\n',
        b'* QUOTA "" (STORAGE 10 512\r\n',
        b'* QUOTA "" (STORAGE 10 512))\r\n',
        b'* QUOTA "" (STORAGE 10 512) extra\r\n',
        b'* QUOTA "" (STORAGE 10 (512))\r\n',
        b'* QUOTA "" (STORAGE 10 999999999999999999999)\r\n',
    ],
)
def test_malformed_quota_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_quota(untagged(data))


def test_parsers_refuse_the_wrong_response_kind() -> None:
    exists = untagged(b"* 3 EXISTS\r\n")
    for parse in (
        imap.parse_quota,
        imap.parse_quotaroot,
        imap.parse_status,
        imap.parse_search,
        imap.parse_fetch,
    ):
        with pytest.raises(ValueError):
            parse(exists)


def test_status_with_odd_spacing_and_big_numbers() -> None:
    status = untagged(b'* STATUS "INBOX"  (MESSAGES 3  HIGHESTMODSEQ 18446744073709551615 )\r\n')
    assert imap.parse_status(status) == (
        "INBOX",
        {"MESSAGES": 3, "HIGHESTMODSEQ": 18446744073709551615},
    )
    assert imap.parse_status(untagged(b"* STATUS INBOX ()\r\n")) == ("INBOX", {})


@pytest.mark.parametrize(
    "data",
    [
        b"* STATUS INBOX (MESSAGES)\r\n",
        b"* STATUS INBOX (MESSAGES NIL)\r\n",
        b"* STATUS INBOX MESSAGES 3\r\n",
        b"* STATUS (MESSAGES 3)\r\n",
        b"* STATUS INBOX ((MESSAGES) 3)\r\n",
    ],
)
def test_malformed_status_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_status(untagged(data))


def test_search_results() -> None:
    assert imap.parse_search(untagged(b"* SEARCH\r\n")) == ()
    assert imap.parse_search(untagged(b"* SEARCH \r\n")) == ()
    assert imap.parse_search(untagged(b"* SEARCH 2 5 9\r\n")) == (2, 5, 9)
    assert imap.parse_search(untagged(b"* SEARCH 2 5 (MODSEQ 917162500)\r\n")) == (2, 5)


@pytest.mark.parametrize(
    "data", [b"* SEARCH 2 x 9\r\n", b'* SEARCH "2"\r\n', b"* SEARCH (1) 2\r\n"]
)
def test_malformed_search_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_search(untagged(data))


def test_fetch_generic_items_and_nil_content() -> None:
    fetch = untagged(
        b'* 7 FETCH (INTERNALDATE "06-Nov-2023 10:00:00 +0000" BODY[TEXT] NIL'
        b" RFC822.HEADER {2}\r\nhi BINARY.SIZE[1] 77 flags ())\r\n"
    )
    assert imap.parse_fetch(fetch) == {
        "INTERNALDATE": "06-Nov-2023 10:00:00 +0000",
        "BODY[TEXT]": None,
        "RFC822.HEADER": b"hi",
        "BINARY.SIZE[1]": 77,
        "FLAGS": (),
    }


@pytest.mark.parametrize(
    "data",
    [
        b"* FETCH (UID 1)\r\n",
        b"* 1 FETCH (UID)\r\n",
        b"* 1 FETCH (UID x)\r\n",
        b"* 1 FETCH UID 1\r\n",
        b"* 1 FETCH (UID 1) (FLAGS ())\r\n",
        b'* 1 FETCH ("UID" 1)\r\n',
        b'* 1 FETCH (FLAGS ("\\\\Seen"))\r\n',
        b"* 1 FETCH (FLAGS \\Seen)\r\n",
        b"* 1 FETCH (MODSEQ 5)\r\n",
        b"* 1 FETCH (MODSEQ (5 6))\r\n",
        b"* 1 FETCH (BODY[] (x))\r\n",
        b"* 1 FETCH (BODY[] nothing)\r\n",
        b"* 1 FETCH (BODY[HEADER 1)\r\n",
    ],
)
def test_malformed_fetch_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_fetch(untagged(data))


# --- tokenizer ----------------------------------------------------------------


def test_tokenize_values() -> None:
    values = imap.tokenize(
        b'A "q \\"x\\" \\\\" NIL (1 (2 "")) BODY[HEADER.FIELDS (A B)]<0.5> {3}\r\nx y'
    )
    assert values == (
        Atom("A"),
        b'q "x" \\',
        Atom("NIL"),
        (Atom("1"), (Atom("2"), b"")),
        Atom("BODY[HEADER.FIELDS (A B)]<0.5>"),
        b"x y",
    )
    assert imap.to_python(values[2]) is None
    assert imap.to_python(values[3]) == ("1", ("2", ""))


def test_tokenize_bounds_nesting() -> None:
    assert imap.tokenize(b"(" * 64 + b")" * 64)
    with pytest.raises(ProtocolError):
        imap.tokenize(b"(" * 65 + b")" * 65)


@pytest.mark.parametrize(
    "data",
    [b'"open', b"(a", b"a)", b"{5}\r\nabc", b"{x}\r\nabc", b"{3}abc", b"a\rb", b'"a\nb"', b"\x01"],
)
def test_tokenize_refuses_malformed_data(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.tokenize(data)


# --- commands -----------------------------------------------------------------


def test_command_builder_numbers_tags() -> None:
    builder = imap.CommandBuilder()
    assert builder.command("CAPABILITY") == ("a1", b"a1 CAPABILITY\r\n")
    assert builder.command("NOOP") == ("a2", b"a2 NOOP\r\n")
    assert imap.CommandBuilder("md").command("LOGOUT") == ("md1", b"md1 LOGOUT\r\n")


def test_command_arguments_are_atoms_quoted_strings_or_raw_bytes() -> None:
    builder = imap.CommandBuilder()
    _, line = builder.command("LOGIN", "alice@example.org", 'pa ss"\\word')
    assert line == b'a1 LOGIN alice@example.org "pa ss\\"\\\\word"\r\n'
    _, line = builder.command("STATUS", "Sent Items", b"(MESSAGES UIDNEXT)")
    assert line == b'a2 STATUS "Sent Items" (MESSAGES UIDNEXT)\r\n'
    _, line = builder.command("UID FETCH", b"1:*", b"(FLAGS)")
    assert line == b"a3 UID FETCH 1:* (FLAGS)\r\n"
    _, line = builder.command("LIST", "", "*")
    assert line == b'a4 LIST "" "*"\r\n'
    _, line = builder.command("SELECT", "Entwürfe")
    assert line == 'a5 SELECT "Entwürfe"\r\n'.encode()


def test_authenticate_with_sasl_ir() -> None:
    initial = imap.authenticate_plain_initial("alice", "s3cret")
    assert base64.b64decode(initial) == b"\0alice\0s3cret"
    _, line = imap.CommandBuilder().command("AUTHENTICATE", b"PLAIN", initial)
    assert line == b"a1 AUTHENTICATE PLAIN " + initial + b"\r\n"


@pytest.mark.parametrize(
    "args",
    [("hunter2\r\na2 DELETE INBOX",), ("hunter2\n",), ("hunter2\0",), (b"1:*\r\n",), (b"",)],
)
def test_command_arguments_that_would_break_framing_are_refused(args: tuple[str | bytes]) -> None:
    with pytest.raises(ValueError) as info:
        imap.CommandBuilder().command("LOGIN", "alice", *args)
    assert "hunter2" not in str(info.value) and "DELETE" not in str(info.value)


@pytest.mark.parametrize("name", ["", "LOGIN\r\n", "1X", "UID  FETCH", "X(Y)"])
def test_bad_command_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        imap.CommandBuilder().command(name)


@pytest.mark.parametrize("prefix", ["", "a b", "+", "*", "ä", "a{"])
def test_bad_tag_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        imap.CommandBuilder(prefix)


def test_quote() -> None:
    assert imap.quote("") == '""'
    assert imap.quote('a"b\\c') == '"a\\"b\\\\c"'
    assert imap.tokenize(imap.quote('a"b\\c').encode()) == (b'a"b\\c',)


def test_quote_refuses_line_breaks_without_echoing() -> None:
    with pytest.raises(ValueError) as info:
        imap.quote("hunter2\r\n")
    assert "hunter2" not in str(info.value)


# --- LIST / XLIST -----------------------------------------------------------------


def test_dovecot_list_return_special_use() -> None:
    data = (
        b'* LIST (\\HasNoChildren) "." INBOX\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "." Sent\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "." "Deleted Messages"\r\n'
        b'* LIST (\\Noselect \\HasChildren) "." Archiv\r\n'
        b'* LIST (\\HasNoChildren \\Drafts) "." "Entw&APw-rfe"\r\n'
    )
    entries = [imap.parse_list(r) for r in responses(data) if isinstance(r, Untagged)]
    assert [e.name for e in entries] == ["INBOX", "Sent", "Deleted Messages", "Archiv", "Entwürfe"]
    assert [e.special_use for e in entries] == [(), ("\\Sent",), ("\\Trash",), (), ("\\Drafts",)]
    assert [e.selectable for e in entries] == [True, True, True, False, True]
    assert entries[4].wire_name == "Entw&APw-rfe" and entries[1].delimiter == "."


def test_gmail_xlist_names_are_mapped_to_rfc_6154() -> None:
    data = (
        b'* XLIST (\\HasNoChildren \\Inbox) "/" "Inbox"\r\n'
        b'* XLIST (\\Noselect \\HasChildren) "/" "[Gmail]"\r\n'
        b'* XLIST (\\HasNoChildren \\AllMail) "/" "[Gmail]/All Mail"\r\n'
        b'* XLIST (\\HasNoChildren \\Spam) "/" "[Gmail]/Spam"\r\n'
        b'* XLIST (\\HasNoChildren \\Starred) "/" "[Gmail]/Starred"\r\n'
        b'* XLIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"\r\n'
    )
    entries = [imap.parse_list(r) for r in responses(data) if isinstance(r, Untagged)]
    assert [e.special_use for e in entries] == [
        (),
        (),
        ("\\All",),
        ("\\Junk",),
        ("\\Flagged",),
        ("\\Sent",),
    ]


def test_list_with_a_literal_name_nil_delimiter_and_extended_data() -> None:
    data = (
        b"* LIST (\\Sent) NIL {18}\r\nGesendete Elemente\r\n"
        b'* LIST (\\Subscribed) "/" "Lists" ("CHILDINFO" ("SUBSCRIBED"))\r\n'
        b'* LIST (\\sent \\NonExistent) "/" Gone\r\n'
    )
    first, second, third = (imap.parse_list(r) for r in responses(data) if isinstance(r, Untagged))
    assert first.name == "Gesendete Elemente" and first.delimiter is None
    assert second.name == "Lists" and second.special_use == ()
    assert third.special_use == ("\\Sent",) and not third.selectable  # attributes are case-blind


@pytest.mark.parametrize(
    "data",
    [
        b"* LIST\r\n",
        b'* LIST (\\Sent) "."\r\n',
        b'* LIST \\Sent "." Sent\r\n',
        b'* LIST ("Sent") "." Sent\r\n',
        b'* LIST () ".." Sent\r\n',
        b'* LIST () "." ""\r\n',
        b'* LIST () "." (Sent)\r\n',
    ],
)
def test_malformed_list_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        imap.parse_list(untagged(data))


def test_parse_list_refuses_other_responses() -> None:
    with pytest.raises(ValueError):
        imap.parse_list(untagged(b"* STATUS INBOX (MESSAGES 1)\r\n"))


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        ("Entw&APw-rfe", "Entwürfe"),
        ("Gel&APY-schte Elemente", "Gelöschte Elemente"),
        ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
        ("Tom &- Jerry", "Tom & Jerry"),
        ("&ZeVnLIqe-", "日本語"),
        ("plain", "plain"),
        # Not modified UTF-7: shown as the server sent it.
        ("Entw&APw", "Entw&APw"),
        ("a&!!-b", "a&!!-b"),
        ("&AP-", "&AP-"),
        ("Entwürfe", "Entwürfe"),
    ],
)
def test_modified_utf7_mailbox_names(wire: str, name: str) -> None:
    assert imap.decode_mailbox_name(wire) == name
