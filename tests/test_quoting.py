"""Server text made safe: control characters, secrets in every encoding, length."""

from __future__ import annotations

import base64

from msgspec import structs

from maildiag.credentials_input import Credentials, Secret
from maildiag.model import Endpoint, Outcome, ProbeResult, Protocol, Security
from maildiag.quoting import REDACTED, Sanitizer, SecretScrubber, bound, escape_controls

USER, PASSWORD = "info@kunde.test", 'pa"ss\\Wort-42'


def test_control_characters_are_escaped_and_plain_text_kept():
    assert escape_controls("554 \x1b[31mred\x1b[0m") == "554 \\x1b[31mred\\x1b[0m"
    assert escape_controls("a\r\nb\tc\x00\x7f\x9b") == "a\\x0d\\x0ab\\x09c\\x00\\x7f\\x9b"
    assert escape_controls("evil\u202etxt.exe \u2066x") == "evil\\u202etxt.exe \\u2066x"
    text = "220 mx.kunde.test ESMTP Postfix — Grüße ✓"
    assert escape_controls(text) is text or escape_controls(text) == text


def test_every_form_of_the_password_is_scrubbed():
    scrub = SecretScrubber(USER, PASSWORD)
    raw = PASSWORD.encode()
    forms = [
        PASSWORD,
        '"pa\\"ss\\\\Wort-42"',  # IMAP quoted string
        base64.b64encode(raw).decode(),  # AUTH LOGIN
        base64.b64encode(b"\0" + USER.encode() + b"\0" + raw).decode(),  # PLAIN
        base64.b64encode(USER.encode() + b"\0" + USER.encode() + b"\0" + raw).decode(),
    ]
    for form in forms:
        cleaned = scrub(f"535 5.7.8 Error: authentication failed: {form} (retry)")
        assert form not in cleaned and REDACTED in cleaned
        assert cleaned.startswith("535 5.7.8 Error: authentication failed:")
    # A server that re-encodes at another offset, or cuts the blob.
    shifted = base64.b64encode(b"xy\0" + USER.encode() + b"\0" + raw).decode()
    assert REDACTED in scrub(f"NO {shifted}")
    cut = forms[3][:24]
    assert scrub(f"NO [ALERT] {cut}") == f"NO [ALERT] {REDACTED}"


def test_ordinary_base64_and_words_survive_the_scrubber():
    scrub = SecretScrubber(USER, PASSWORD)
    text = "334 VXNlcm5hbWU6 and 235 2.7.0 Authentication successful"
    assert scrub(text) == text


def test_sanitizer_walks_results_and_keeps_enums_and_identity():
    endpoint = Endpoint(Protocol.SMTP, "mail.kunde.test", 465, Security.TLS)
    result = ProbeResult(
        endpoint,
        Outcome.UNAVAILABLE,
        error="554 \x1b[2J" + "x" * 5000,
        greeting="220 fine",
        capabilities=("AUTH PLAIN", f"X-ECHO {PASSWORD}"),
    )
    creds = Credentials(USER, Secret(PASSWORD))
    cleaned = Sanitizer.for_credentials(creds, limit=1000)((result,))[0]
    assert cleaned.endpoint is endpoint and cleaned.outcome is Outcome.UNAVAILABLE
    assert cleaned.greeting is result.greeting
    assert "\x1b" not in cleaned.error and len(cleaned.error) < 1100
    assert cleaned.error.endswith("more characters)")
    assert cleaned.capabilities == ("AUTH PLAIN", f"X-ECHO {REDACTED}")
    untouched = structs.replace(result, error="ok", capabilities=())
    assert Sanitizer.for_credentials(None)(untouched) is untouched


def test_bound_leaves_short_text_alone():
    assert bound("short") == "short"
    assert bound("x" * 20, 10) == "x" * 10 + "… (10 more characters)"
