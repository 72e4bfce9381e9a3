"""Nothing may follow the go-ahead to STARTTLS/STLS: the parsers report what did.

Bytes a server (or a man in the middle) sends behind "OK Begin TLS", "+OK"
or "220" arrive before the TLS handshake and can only be read as if they had
come inside TLS (CVE-2011-0411; Poddebniak et al., "Why TLS is better without
STARTTLS", USENIX Security 2021). Each parser's ``end_plaintext`` raises
``StarttlsInjection`` with them, and nothing else whatever the bytes and
however they are split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maildiag.protocols import imap, pop3, smtp
from maildiag.protocols.lines import LineBuffer, ProtocolError, StarttlsInjection
from tests.test_protocols_fuzz import FUZZ, cut_points, noise, pieces


@dataclass(frozen=True)
class Case:
    """A parser, the go-ahead as a server sends it, and what an attacker appends."""

    name: str
    make: Callable[[], imap.ResponseParser | pop3.ResponseParser | smtp.ReplyParser]
    go_ahead: bytes
    injected: bytes

    def next(self, parser: object) -> object:
        if isinstance(parser, smtp.ReplyParser):
            return parser.next_reply()
        assert isinstance(parser, imap.ResponseParser | pop3.ResponseParser)
        return parser.next_response()


CASES = [
    Case(
        "imap",
        imap.ResponseParser,
        b". OK Begin TLS negotiation now.\r\n",
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]\r\n",
    ),
    Case(
        "pop3",
        pop3.ResponseParser,
        b"+OK Begin TLS negotiation now.\r\n",
        b"+OK Capability list follows\r\nUSER\r\n.\r\n",
    ),
    Case(
        "smtp",
        smtp.ReplyParser,
        b"220 2.0.0 Ready to start TLS\r\n",
        b"250-mail.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
    ),
]
by_name = pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)


def go_ahead_then_end(case: Case, chunks: list[bytes]) -> tuple[object, int]:
    """Feeds ``chunks`` as a client reads them until the go-ahead is parsed, then ends
    the plaintext. Returns the go-ahead and how many bytes had been fed by then."""
    parser = case.make()
    fed = 0
    for chunk in chunks:
        parser.feed(chunk)
        fed += len(chunk)
        response = case.next(parser)
        if response is not None:
            parser.end_plaintext()
            return response, fed
    raise AssertionError("the go-ahead never completed")


@by_name
def test_injection_in_the_same_segment_as_the_go_ahead(case: Case) -> None:
    parser = case.make()
    parser.feed(case.go_ahead + case.injected)
    assert case.next(parser) is not None
    with pytest.raises(StarttlsInjection) as caught:
        parser.end_plaintext()
    assert caught.value.received == case.injected
    assert caught.value.size == len(case.injected)
    assert caught.value.text == case.injected.decode()
    assert isinstance(caught.value, ProtocolError)  # a peer error, like any other


@by_name
def test_the_clean_twin_ends_quietly(case: Case) -> None:
    parser = case.make()
    parser.feed(case.go_ahead)
    assert case.next(parser) is not None
    parser.end_plaintext()
    assert parser.pending == 0


@by_name
def test_an_injection_is_final_and_its_bytes_are_never_handed_out(case: Case) -> None:
    parser = case.make()
    parser.feed(case.go_ahead + case.injected)
    case.next(parser)
    with pytest.raises(StarttlsInjection):
        parser.end_plaintext()
    assert parser.pending == 0
    with pytest.raises(StarttlsInjection):
        case.next(parser)
    with pytest.raises(StarttlsInjection):
        parser.end_plaintext()


@by_name
def test_half_a_line_behind_the_go_ahead_counts(case: Case) -> None:
    parser = case.make()
    parser.feed(case.go_ahead + case.injected[:7])
    case.next(parser)
    with pytest.raises(StarttlsInjection) as caught:
        parser.end_plaintext()
    assert caught.value.received == case.injected[:7]


def test_a_long_injection_is_reported_in_part_and_counted_in_full() -> None:
    parser = smtp.ReplyParser()
    flood = b"250-x\r\n" * 10_000
    parser.feed(b"220 go ahead\r\n" + flood)
    parser.next_reply()
    with pytest.raises(StarttlsInjection) as caught:
        parser.end_plaintext()
    assert caught.value.size == len(flood)
    assert len(caught.value.received) == StarttlsInjection.SHOWN
    assert f"{len(flood)} more bytes" in str(caught.value)


def test_the_line_buffer_alone() -> None:
    buf = LineBuffer()
    buf.end_plaintext()  # empty: nothing to report
    buf.feed(b"x")
    with pytest.raises(StarttlsInjection):
        buf.end_plaintext()
    assert buf.pending == 0


@FUZZ
@given(case=st.sampled_from(CASES), cuts=cut_points)
def test_any_split_reports_exactly_the_bytes_read_behind_the_go_ahead(
    case: Case, cuts: list[int]
) -> None:
    # Whatever the split, what the client had read past the go-ahead when it
    # was parsed is reported; the rest would reach the TLS handshake as its
    # first bytes, which the probe reports as the same injection.
    data = case.go_ahead + case.injected
    chunks = pieces(data, cuts)
    try:
        _, fed = go_ahead_then_end(case, chunks)
    except StarttlsInjection as exc:
        read = b"".join(chunks)[: exc.size + len(case.go_ahead)]
        assert exc.received == read[len(case.go_ahead) :]
        assert 0 < exc.size <= len(case.injected)
    else:
        assert fed == len(case.go_ahead)


@FUZZ
@given(case=st.sampled_from(CASES), cuts=cut_points)
def test_the_clean_go_ahead_ends_quietly_in_any_split(case: Case, cuts: list[int]) -> None:
    response, fed = go_ahead_then_end(case, pieces(case.go_ahead, cuts))
    assert response is not None and fed == len(case.go_ahead)


@FUZZ
@given(case=st.sampled_from(CASES), behind=noise, cuts=cut_points)
def test_random_bytes_behind_the_go_ahead_raise_only_protocol_errors(
    case: Case, behind: bytes, cuts: list[int]
) -> None:
    try:
        go_ahead_then_end(case, pieces(case.go_ahead + behind, cuts))
    except StarttlsInjection as exc:
        assert 0 < exc.size <= len(behind)
        assert behind.startswith(exc.received)
    except ProtocolError:
        pass


@FUZZ
@given(case=st.sampled_from(CASES), data=noise, cuts=cut_points, stop=st.integers(0, 30))
def test_ending_the_plaintext_anywhere_in_random_bytes_raises_only_protocol_errors(
    case: Case, data: bytes, cuts: list[int], stop: int
) -> None:
    parser = case.make()
    count = 0
    try:
        for chunk in pieces(data, cuts):
            parser.feed(chunk)
            while case.next(parser) is not None:
                count += 1
                if count == stop:
                    parser.end_plaintext()
        parser.end_plaintext()
    except ProtocolError:
        pass
