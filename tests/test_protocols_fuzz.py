"""Fuzzing the sans-IO parsers (in the spirit of h11's fuzz harness).

Two properties:

* whatever bytes arrive, split however, a parser raises nothing but
  ``ProtocolError`` (and the ``parse_*`` helpers nothing but ``ProtocolError``
  on the responses it produced);
* a recorded transcript gives the same events however it is split.

``MAILDIAG_FUZZ_EXAMPLES=20000 python3 -m pytest --timeout=0 tests/test_protocols_fuzz.py``
runs a longer campaign than the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maildiag.protocols import imap, pop3, smtp
from maildiag.protocols.lines import LineBuffer, ProtocolError
from tests.test_protocols_pop3 import MULTILINE

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"

EXAMPLES = int(os.environ.get("MAILDIAG_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The transcripts are also split at every byte in the per-protocol tests.
SPLITS = settings(FUZZ, max_examples=max(10, EXAMPLES // 6))

# Pieces of real protocol text, so random inputs get past the first byte and
# reach literals, multi-line replies and the data parsers.
FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b" ", b"*", b"* ", b"+", b"+ ", b"a1 ", b"OK", b"NO", b"BAD",
    b"BYE", b"PREAUTH", b"[", b"]", b"(", b")", b'"', b"\\", b"{", b"}", b"~{", b"+}",
    b"{0}\r\n", b"{3}\r\n", b"{5+}\r\n", b"{99999999999}\r\n", b"0", b"7", b"42", b"NIL",
    b"CAPABILITY", b"IMAP4rev1", b"AUTH=PLAIN", b"QUOTA", b"QUOTAROOT", b"STATUS",
    b"SEARCH", b"FETCH", b"UID", b"FLAGS", b"MODSEQ", b"RFC822.SIZE", b"BODY[", b"BODY[]",
    b"STORAGE", b"MESSAGES", b"INBOX", b"\\Seen", b"+OK", b"-ERR", b".", b"..", b"SASL",
    b"STLS", b"LOGIN-DELAY", b"EXPIRE", b"IMPLEMENTATION", b"220", b"250", b"250-",
    b"334 ", b"421-", b"535 ", b"5.7.8", b"AUTH", b"AUTH=", b"SIZE", b"STARTTLS", b"\x00",
    b"\xff", b"\xc3\xa9", b"LIST", b"XLIST", b"\\Sent", b"\\Noselect", b"&", b"&-",
    b"&APw-", b"&ZeVnLIqe-",
]  # fmt: skip

noise = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(FRAGMENTS), max_size=120).map(b"".join),
)
cut_points = st.lists(st.integers(min_value=0, max_value=2000), max_size=20)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, start = [], 0
    for point in [*points, len(data)]:
        out.append(data[start:point])
        start = point
    return out


def only_protocol_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except ProtocolError:
        pass


@FUZZ
@given(name=st.text(max_size=40))
def test_mailbox_name_decoding_never_raises(name: str) -> None:
    assert isinstance(imap.decode_mailbox_name(name), str)


# --- random bytes -------------------------------------------------------------


@FUZZ
@given(data=noise, cuts=cut_points)
def test_line_buffer_returns_exactly_what_was_fed(data: bytes, cuts: list[int]) -> None:
    buf = LineBuffer(max_line_length=10_000)
    lines: list[bytes] = []
    for chunk in pieces(data, cuts):
        buf.feed(chunk)
        while (line := buf.next_line()) is not None:
            lines.append(line)
    *complete, rest = data.split(b"\n")
    assert lines == [c[:-1] if c.endswith(b"\r") else c for c in complete]
    assert buf.pending == len(rest)


@FUZZ
@given(data=noise, cuts=cut_points)
def test_line_buffer_raises_only_line_too_long(data: bytes, cuts: list[int]) -> None:
    buf = LineBuffer(max_line_length=16)
    try:
        for chunk in pieces(data, cuts):
            buf.feed(chunk)
            while buf.next_line() is not None:
                pass
            assert buf.pending <= 16 + 1 + len(chunk) + 1
    except ProtocolError:
        pass


def exercise_imap(response: imap.Untagged | imap.Tagged | imap.Continuation) -> None:
    only_protocol_errors(lambda: imap.parse_greeting(response))
    imap.capabilities_from([response])
    if isinstance(response, imap.Continuation):
        return
    imap.response_code_name(response.code)
    if isinstance(response, imap.Untagged):
        parsers: dict[str, Callable[[imap.Untagged], object]] = {
            "QUOTA": imap.parse_quota,
            "QUOTAROOT": imap.parse_quotaroot,
            "STATUS": imap.parse_status,
            "SEARCH": imap.parse_search,
            "FETCH": imap.parse_fetch,
            "LIST": imap.parse_list,
            "XLIST": imap.parse_list,
        }
        parse = parsers.get(response.keyword)
        if parse is not None:
            only_protocol_errors(lambda: parse(response))
        only_protocol_errors(lambda: imap.tokenize(response.raw[:-2]))


@FUZZ
@given(data=noise, cuts=cut_points)
def test_imap_parser_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    parser = imap.ResponseParser(max_line_length=200, max_literal=100)
    try:
        for chunk in pieces(data, cuts):
            parser.feed(chunk)
            while (response := parser.next_response()) is not None:
                exercise_imap(response)
    except ProtocolError:
        pass


@FUZZ
@given(data=noise)
def test_imap_tokenizer_raises_only_protocol_errors(data: bytes) -> None:
    only_protocol_errors(lambda: imap.to_python(imap.tokenize(data)))


@FUZZ
@given(data=noise, cuts=cut_points, flags=st.lists(st.booleans(), min_size=1, max_size=8))
def test_pop3_parser_raises_only_protocol_errors(
    data: bytes, cuts: list[int], flags: list[bool]
) -> None:
    parser = pop3.ResponseParser(max_line_length=200, max_lines=20)
    count = 0
    try:
        for chunk in pieces(data, cuts):
            parser.feed(chunk)
            # A response keeps its flag until it is complete, as a real client would.
            while (response := parser.next_response(flags[count % len(flags)])) is not None:
                count += 1
                response.code  # noqa: B018 - the property must not raise
                pop3.apop_timestamp(response)
                if response.ok and not response.continuation:
                    pop3.parse_capa(response)
                    only_protocol_errors(partial(pop3.parse_stat, response))
                if response.continuation:
                    only_protocol_errors(partial(pop3.decode_challenge, response))
    except ProtocolError:
        pass


@FUZZ
@given(data=noise, cuts=cut_points)
def test_smtp_parser_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    parser = smtp.ReplyParser(max_line_length=200, max_lines=20)
    try:
        for chunk in pieces(data, cuts):
            parser.feed(chunk)
            while (reply := parser.next_reply()) is not None:
                reply.enhanced_status  # noqa: B018 - the property must not raise
                if reply.is_positive:
                    only_protocol_errors(partial(smtp.parse_ehlo, reply))
                if reply.code == 334:
                    only_protocol_errors(partial(smtp.decode_challenge, reply))
    except ProtocolError:
        pass


# --- transcripts in any split ---------------------------------------------------


def imap_events(chunks: list[bytes]) -> list[object]:
    parser = imap.ResponseParser()
    out: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        while (response := parser.next_response()) is not None:
            out.append(response)
    return out


def smtp_events(chunks: list[bytes]) -> list[object]:
    parser = smtp.ReplyParser()
    out: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        while (reply := parser.next_reply()) is not None:
            out.append(reply)
    return out


def pop3_events(chunks: list[bytes], flags: list[bool]) -> list[object]:
    parser = pop3.ResponseParser()
    out: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        while len(out) < len(flags):
            response = parser.next_response(flags[len(out)])
            if response is None:
                break
            out.append(response)
    return out


@pytest.mark.parametrize("path", sorted((TRANSCRIPTS / "imap").glob("*.bin")), ids=lambda p: p.name)
@SPLITS
@given(cuts=cut_points)
def test_imap_transcript_in_any_split(path: Path, cuts: list[int]) -> None:
    data = path.read_bytes()
    assert imap_events(pieces(data, cuts)) == imap_events([data])


@pytest.mark.parametrize("path", sorted((TRANSCRIPTS / "smtp").glob("*.bin")), ids=lambda p: p.name)
@SPLITS
@given(cuts=cut_points)
def test_smtp_transcript_in_any_split(path: Path, cuts: list[int]) -> None:
    data = path.read_bytes()
    assert smtp_events(pieces(data, cuts)) == smtp_events([data])


@pytest.mark.parametrize("name", sorted(MULTILINE))
@SPLITS
@given(cuts=cut_points)
def test_pop3_transcript_in_any_split(name: str, cuts: list[int]) -> None:
    data = (TRANSCRIPTS / "pop3" / name).read_bytes()
    flags = MULTILINE[name]
    whole = pop3_events([data], flags)
    assert len(whole) == len(flags)
    assert pop3_events(pieces(data, cuts), flags) == whole


@FUZZ
@given(data=st.data())
def test_all_transcripts_concatenated_in_any_split(data: st.DataObject) -> None:
    # Several replies in one packet and replies spanning packets, at once.
    blob = b"".join(p.read_bytes() for p in sorted((TRANSCRIPTS / "smtp").glob("*.bin")))
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=200))
    assert smtp_events(pieces(blob, cuts)) == smtp_events([blob])
    blob = b"".join(p.read_bytes() for p in sorted((TRANSCRIPTS / "imap").glob("*.bin")))
    cuts = data.draw(st.lists(st.integers(0, len(blob)), max_size=200))
    assert imap_events(pieces(blob, cuts)) == imap_events([blob])
