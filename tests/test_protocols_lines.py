"""Line framing: CRLF/LF lines, exact byte counts, and the line-length bound."""

from __future__ import annotations

import base64

import pytest

from maildiag.protocols.lines import (
    LineBuffer,
    LineTooLong,
    ProtocolError,
    check_command_text,
    sasl_decode,
    sasl_encode,
    sasl_plain,
)


def drain(buf: LineBuffer) -> list[bytes]:
    lines = []
    while (line := buf.next_line()) is not None:
        lines.append(line)
    return lines


def test_crlf_lines_come_out_without_their_line_end() -> None:
    buf = LineBuffer()
    buf.feed(b"one\r\ntwo\r\n")
    assert drain(buf) == [b"one", b"two"]
    assert buf.pending == 0


def test_bare_lf_ends_a_line_too() -> None:
    buf = LineBuffer()
    buf.feed(b"one\ntwo\r\n\n")
    assert drain(buf) == [b"one", b"two", b""]


def test_a_bare_cr_does_not_end_a_line() -> None:
    buf = LineBuffer()
    buf.feed(b"one\rtwo\r\n")
    assert drain(buf) == [b"one\rtwo"]


def test_an_incomplete_line_waits_for_more_data() -> None:
    buf = LineBuffer()
    buf.feed(b"+OK hel")
    assert buf.next_line() is None
    assert buf.pending == 7
    buf.feed(b"lo\r")
    assert buf.next_line() is None
    buf.feed(b"\n+OK")
    assert buf.next_line() == b"+OK hello"
    assert buf.next_line() is None
    assert buf.pending == 3


def test_lines_split_at_every_byte_come_out_the_same() -> None:
    data = b"220-first\r\n220-second\n220 last\r\n"
    for cut in range(len(data) + 1):
        buf = LineBuffer()
        buf.feed(data[:cut])
        got = drain(buf)
        buf.feed(data[cut:])
        got += drain(buf)
        assert got == [b"220-first", b"220-second", b"220 last"], cut


def test_a_line_of_exactly_the_bound_is_accepted() -> None:
    buf = LineBuffer(max_line_length=10)
    # The CR arrives alone first: at max+1 bytes the buffer must still wait for LF.
    buf.feed(b"x" * 10 + b"\r")
    assert buf.next_line() is None
    buf.feed(b"\n")
    assert buf.next_line() == b"x" * 10


def test_a_line_one_byte_over_the_bound_is_refused() -> None:
    buf = LineBuffer(max_line_length=10)
    buf.feed(b"x" * 11 + b"\r\n")
    with pytest.raises(LineTooLong):
        buf.next_line()


def test_an_unterminated_line_is_refused_before_its_newline_arrives() -> None:
    buf = LineBuffer(max_line_length=10)
    buf.feed(b"x" * 10)
    assert buf.next_line() is None
    buf.feed(b"xx")
    with pytest.raises(LineTooLong):
        buf.next_line()


def test_a_10_mb_stream_without_newline_is_refused_after_the_bound() -> None:
    buf = LineBuffer()  # 64 KiB
    chunk = b"A" * 4096
    fed = 0
    with pytest.raises(LineTooLong):
        while fed < 10 * 1024 * 1024:
            buf.feed(chunk)
            fed += len(chunk)
            assert buf.pending <= 64 * 1024 + 2 + len(chunk)
            buf.next_line()
    assert fed <= 64 * 1024 + 2 * len(chunk)
    # Once condemned, the buffer holds nothing and accepts nothing.
    buf.feed(chunk)
    assert buf.pending == 0


def test_a_10_mb_line_in_one_chunk_is_refused_without_scanning_it_all() -> None:
    buf = LineBuffer()
    buf.feed(b"A" * (10 * 1024 * 1024) + b"\r\n")
    with pytest.raises(LineTooLong):
        buf.next_line()
    assert buf.pending == 0


def test_a_line_too_long_error_is_a_protocol_error_and_final() -> None:
    buf = LineBuffer(max_line_length=4)
    buf.feed(b"toolong\r\nok\r\n")
    with pytest.raises(ProtocolError):
        buf.next_line()
    with pytest.raises(LineTooLong):
        buf.next_line()
    with pytest.raises(LineTooLong):
        buf.take_bytes(1)


def test_take_bytes_returns_exact_counts_including_line_ends() -> None:
    buf = LineBuffer()
    buf.feed(b"ab\r\ncd")
    assert buf.take_bytes(7) is None
    assert buf.take_bytes(5) == b"ab\r\nc"
    buf.feed(b")\r\n")
    assert buf.next_line() == b"d)"
    assert buf.take_bytes(0) == b""


def test_take_bytes_ignores_the_line_bound() -> None:
    # IMAP literals are bounded by the IMAP parser, not by the line length.
    buf = LineBuffer(max_line_length=4)
    buf.feed(b"x" * 100)
    assert buf.take_bytes(100) == b"x" * 100


def test_peek_does_not_consume() -> None:
    buf = LineBuffer()
    buf.feed(b"250 ok\r\n")
    assert buf.peek(3) == b"250"
    assert buf.peek(100) == b"250 ok\r\n"
    assert buf.next_line() == b"250 ok"
    assert buf.peek(3) == b""


def test_take_bytes_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError):
        LineBuffer().take_bytes(-1)


def test_max_line_length_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LineBuffer(0)


def test_pending_counts_unconsumed_bytes() -> None:
    buf = LineBuffer()
    buf.feed(b"220 Ready\r\nINJECTED\r\n")
    assert buf.next_line() == b"220 Ready"
    assert buf.pending == len(b"INJECTED\r\n")


def test_sasl_plain_matches_rfc_4616() -> None:
    # RFC 4616 §4 example: authcid "tim", password "tanstaaftanstaaf".
    assert sasl_plain("tim", "tanstaaftanstaaf") == base64.b64encode(b"\0tim\0tanstaaftanstaaf")
    assert base64.b64decode(sasl_plain("u", "p", authzid="admin")) == b"admin\0u\0p"


def test_sasl_plain_refuses_nul_without_showing_the_secret() -> None:
    with pytest.raises(ValueError) as info:
        sasl_plain("tim", "sec\0ret")
    assert "sec" not in str(info.value)


def test_sasl_encode_and_decode_round_trip_utf8() -> None:
    assert sasl_decode(sasl_encode("Benutzername: ü").decode()) == "Benutzername: ü".encode()


def test_sasl_decode_tolerates_missing_padding_and_whitespace() -> None:
    assert sasl_decode("YWI") == b"ab"
    assert sasl_decode(" VXNl cm5hbWU6 ") == b"Username:"
    assert sasl_decode("") == b""


def test_sasl_decode_refuses_non_base64() -> None:
    with pytest.raises(ProtocolError):
        sasl_decode("Username:")


def test_check_command_text_refuses_line_breaks_without_echoing() -> None:
    check_command_text("fine text", "the password")
    for bad in ("a\r\nQUIT", "a\nb", "a\0b"):
        with pytest.raises(ValueError) as info:
            check_command_text(bad, "the password")
        assert "QUIT" not in str(info.value)
