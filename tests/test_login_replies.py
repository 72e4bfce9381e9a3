"""The table of login refusals, against recorded server replies and their failure twins.

Every rule of ``maildiag.login_replies.RULES`` decides at least one reply in
fixtures/transcripts/login/, and has a twin: a reply that looks alike (same
provider, code or words) and must be decided by another rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import structs

from maildiag.deadline import Deadline
from maildiag.findings import CATALOGUE
from maildiag.login_replies import (
    RULES,
    LoginReply,
    classify,
    from_imap,
    from_pop3,
    from_smtp,
    oauth_only,
)
from maildiag.model import AuthResult, AuthStatus, LoginHint, Protocol
from maildiag.probes.auth import LoginGate, Turn
from maildiag.protocols import imap, pop3, smtp

LOGIN = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts" / "login"
PLAIN = False  # the login went over an unencrypted connection (--allow-plaintext)

# transcript -> the rule that must decide each refusal in it, in order; a
# (rule, False) pair marks a refusal read on an unencrypted connection.
EXPECTED: dict[str, list[str | tuple[str, bool]]] = {
    "imap/gmail.bin": [
        "imap-app-password",
        "imap-web-login",
        "imap-google-invalid-credentials",
        "imap-limit",
        "imap-google-invalid-credentials",
    ],
    "imap/dovecot.bin": [
        ("imap-privacy-required", PLAIN),
        "imap-plaintext-over-tls",
        "imap-authentication-failed",
        "imap-contactadmin-disabled",
        "imap-contactadmin",
        "imap-unavailable",
        "imap-authorization-failed",
        "imap-serverbug",
        "imap-too-many-connections",
        "imap-rate-limited",
        "imap-mechanism-words",
        "imap-bye",
    ],
    "imap/cyrus.bin": [
        "imap-expired",
        "imap-in-use",
        "imap-authentication-failed",
        "imap-rate-limited",
        "imap-bad",
    ],
    "imap/courier.bin": ["imap-no", "imap-temporary-words"],
    "imap/exchange.bin": ["imap-no", "imap-no"],
    "imap/office365.bin": [
        "imap-microsoft-basic-auth-off",
        "imap-microsoft-basic-auth-off",
        "imap-web-login",
    ],
    "imap/yahoo.bin": ["imap-web-login", "imap-authentication-failed"],
    "pop3/gmail.bin": [
        "pop3-app-password",
        "pop3-web-login",
        "pop3-google-not-accepted",
        "pop3-login-delay",
    ],
    "pop3/dovecot.bin": [
        ("pop3-plaintext", PLAIN),
        "pop3-plaintext-over-tls",
        "pop3-auth",
        "pop3-disabled",
        "pop3-in-use",
        "pop3-sys-temp",
        "pop3-too-many-connections",
        "pop3-sys-perm",
        "pop3-mechanism-words",
        "pop3-in-use",
    ],
    "pop3/courier.bin": [
        ("pop3-plaintext", PLAIN),
        "pop3-err",
        "pop3-temporary-words",
        "pop3-rate-limited",
    ],
    "pop3/office365.bin": ["pop3-microsoft-basic-auth-off", "pop3-disabled"],
    "pop3/exchange.bin": ["pop3-err", "pop3-temporary-words"],
    "smtp/office365.bin": [
        "smtp-m365-smtp-auth-disabled",
        "smtp-m365-smtp-auth-disabled",
        "smtp-wrong-credentials",
        "smtp-m365-basic-auth-disabled",
        "smtp-m365-basic-auth-disabled",
        "smtp-m365-conditional-access",
        "smtp-wrong-credentials",
        "smtp-454",
    ],
    "smtp/gmail.bin": [
        "smtp-app-password",
        "smtp-web-login",
        "smtp-google-bad-credentials",
        "smtp-454",
    ],
    "smtp/postfix.bin": [
        "smtp-wrong-credentials",
        "smtp-wrong-credentials",
        ("smtp-starttls-first", PLAIN),
        "smtp-plaintext-over-tls",
        ("smtp-encryption-required", PLAIN),
        "smtp-454",
        "smtp-too-many-errors",
        "smtp-disabled-words",
        "smtp-mechanism",
        "smtp-mechanism",
        ("smtp-5xx", PLAIN),
        "smtp-account-disabled",
        "smtp-5.7.8",
    ],
    "smtp/exim.bin": ["smtp-wrong-credentials", "smtp-too-many-connections", "smtp-5xx"],
}

# The server each transcript came from, where a rule looks at the host name;
# every other one is "mail.example.org" (an on-premises server).
HOSTS = {
    "imap/office365.bin": "outlook.office365.com",
    "pop3/office365.bin": "outlook.office365.com",
    "smtp/office365.bin": "smtp.office365.com",
    "imap/gmail.bin": "imap.gmail.com",
    "pop3/gmail.bin": "pop.gmail.com",
    "smtp/gmail.bin": "smtp.gmail.com",
    "imap/yahoo.bin": "imap.mail.yahoo.com",
}

# rule -> its failure twin: (transcript, number of the refusal in it).
TWINS: dict[str, tuple[str, int]] = {
    "imap-app-password": ("imap/gmail.bin", 4),  # Gmail's [ALERT] Invalid credentials
    "imap-web-login": ("imap/gmail.bin", 4),
    "imap-plaintext-over-tls": ("imap/dovecot.bin", 0),  # the same reply before TLS
    "imap-privacy-required": ("imap/dovecot.bin", 1),  # the same reply inside TLS
    # Google's app-password reply (the twin of the same words elsewhere, which
    # shares the cause: see test_the_google_hint_needs_google).
    "imap-google-invalid-credentials": ("imap/gmail.bin", 0),
    "pop3-google-not-accepted": ("pop3/gmail.bin", 0),
    "smtp-google-bad-credentials": ("smtp/gmail.bin", 0),
    "imap-authentication-failed": ("imap/yahoo.bin", 0),  # the code, but "verify your account"
    "imap-authorization-failed": ("imap/dovecot.bin", 2),
    "imap-expired": ("imap/cyrus.bin", 2),
    "imap-contactadmin-disabled": ("imap/dovecot.bin", 4),  # CONTACTADMIN, not "disabled"
    "imap-contactadmin": ("imap/dovecot.bin", 3),  # CONTACTADMIN, "Account disabled"
    "imap-in-use": ("imap/cyrus.bin", 3),  # "locked" after failed attempts
    "imap-limit": ("imap/dovecot.bin", 9),  # "Too many" invalid commands
    "imap-too-many-connections": ("imap/dovecot.bin", 11),  # another BYE
    "imap-rate-limited": ("imap/gmail.bin", 3),  # "Too many" connections
    "imap-unavailable": ("imap/dovecot.bin", 9),  # [UNAVAILABLE] after too many errors
    "imap-serverbug": ("imap/dovecot.bin", 6),
    "imap-temporary-words": ("imap/courier.bin", 0),
    "imap-bye": ("imap/dovecot.bin", 8),  # a BYE for too many connections
    "imap-mechanism-words": ("imap/courier.bin", 0),
    "imap-bad": ("imap/dovecot.bin", 0),  # a NO after an untagged BAD [ALERT]
    "imap-no": ("imap/office365.bin", 0),  # the same NO from Microsoft's hosted servers
    "imap-microsoft-basic-auth-off": ("imap/exchange.bin", 0),  # the same NO, on premises
    "pop3-microsoft-basic-auth-off": ("pop3/exchange.bin", 0),
    "pop3-app-password": ("pop3/gmail.bin", 2),
    "pop3-web-login": ("pop3/gmail.bin", 2),
    "pop3-plaintext-over-tls": ("pop3/dovecot.bin", 0),
    "pop3-plaintext": ("pop3/dovecot.bin", 1),
    "pop3-in-use": ("pop3/office365.bin", 1),  # "Account locked"
    "pop3-login-delay": ("pop3/courier.bin", 3),  # "wait 60 seconds" after failed logins
    "pop3-too-many-connections": ("pop3/courier.bin", 3),  # too many failed logins
    "pop3-rate-limited": ("pop3/dovecot.bin", 6),  # too many connections
    "pop3-sys-temp": ("pop3/courier.bin", 3),  # [SYS/TEMP], but failed logins
    "pop3-disabled": ("pop3/dovecot.bin", 4),  # [IN-USE] "Mailbox is locked"
    "pop3-auth": ("pop3/dovecot.bin", 3),  # [AUTH] Account disabled
    "pop3-sys-perm": ("pop3/office365.bin", 1),  # [SYS/PERM] Account locked
    "pop3-temporary-words": ("pop3/courier.bin", 1),
    "pop3-mechanism-words": ("pop3/courier.bin", 1),
    "pop3-err": ("pop3/courier.bin", 2),
    "smtp-m365-smtp-auth-disabled": ("smtp/office365.bin", 2),  # 5.7.139, wrong password
    "smtp-m365-basic-auth-disabled": ("smtp/office365.bin", 0),
    "smtp-m365-conditional-access": ("smtp/office365.bin", 4),  # also "Contact your admin..."
    "smtp-app-password": ("smtp/postfix.bin", 9),  # 534 5.7.9 in RFC 4954's meaning
    "smtp-web-login": ("smtp/gmail.bin", 2),
    "smtp-account-disabled": ("smtp/postfix.bin", 12),
    "smtp-plaintext-over-tls": ("smtp/postfix.bin", 2),
    "smtp-starttls-first": ("smtp/postfix.bin", 3),
    "smtp-encryption-required": ("smtp/postfix.bin", 10),
    "smtp-too-many-errors": ("smtp/exim.bin", 1),  # too many connections
    "smtp-too-many-connections": ("smtp/postfix.bin", 6),  # too many errors
    "smtp-disabled-words": ("smtp/office365.bin", 0),  # "SmtpClientAuthentication is disabled"
    "smtp-wrong-credentials": ("smtp/postfix.bin", 7),  # 535 ... account disabled
    "smtp-5.7.8": ("smtp/postfix.bin", 11),
    "smtp-mechanism": ("smtp/gmail.bin", 0),  # 534 5.7.9 from Gmail
    "smtp-454": ("smtp/postfix.bin", 6),  # 421 4.7.0 too many errors
    "smtp-5xx": ("smtp/postfix.bin", 0),
}


def _imap_refusals(data: bytes) -> list[tuple[imap.Tagged | imap.Untagged, list[imap.Untagged]]]:
    parser = imap.ResponseParser()
    parser.feed(data)
    out: list[tuple[imap.Tagged | imap.Untagged, list[imap.Untagged]]] = []
    before: list[imap.Untagged] = []
    while (response := parser.next_response()) is not None:
        if isinstance(response, imap.Tagged) or (
            isinstance(response, imap.Untagged) and response.keyword == "BYE"
        ):
            out.append((response, before))
            before = []
        elif isinstance(response, imap.Untagged):
            before.append(response)
    return out


def replies(name: str, encrypted: list[bool] | None = None) -> list[LoginReply]:
    """The refusals of a transcript as LoginReplies (all encrypted unless told)."""
    data = (LOGIN / name).read_bytes()
    host = HOSTS.get(name, "mail.example.org")
    if name.startswith("imap/"):
        answers = _imap_refusals(data)
        flags = encrypted or [True] * len(answers)
        return [
            from_imap(a, u, encrypted=e, host=host)
            for (a, u), e in zip(answers, flags, strict=True)
        ]
    if name.startswith("pop3/"):
        parser = pop3.ResponseParser()
        parser.feed(data)
        found = []
        while (response := parser.next_response()) is not None:
            found.append(response)
        flags = encrypted or [True] * len(found)
        return [from_pop3(r, encrypted=e, host=host) for r, e in zip(found, flags, strict=True)]
    smtp_parser = smtp.ReplyParser()
    smtp_parser.feed(data)
    got = []
    while (reply := smtp_parser.next_reply()) is not None:
        got.append(reply)
    flags = encrypted or [True] * len(got)
    return [from_smtp(r, encrypted=e, host=host) for r, e in zip(got, flags, strict=True)]


def _expected(name: str) -> list[tuple[str, bool]]:
    return [e if isinstance(e, tuple) else (e, True) for e in EXPECTED[name]]


def _reply(name: str, index: int) -> LoginReply:
    return replies(name, [enc for _, enc in _expected(name)])[index]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recorded_refusal_is_decided_by_its_rule(name: str) -> None:
    expected = _expected(name)
    found = replies(name, [enc for _, enc in expected])
    assert [classify(r).rule for r in found] == [rule for rule, _ in expected]


def test_every_transcript_is_in_the_table() -> None:
    assert {str(p.relative_to(LOGIN)) for p in LOGIN.glob("*/*.bin")} == set(EXPECTED)


def test_every_rule_is_seen_in_a_transcript_and_has_a_twin() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    seen = {rule if isinstance(rule, str) else rule[0] for e in EXPECTED.values() for rule in e}
    assert set(ids) == seen
    assert set(ids) == set(TWINS)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_the_failure_twin_is_decided_by_another_rule(rule) -> None:
    # The table is tried in order, so a twin may match a later rule's fields;
    # what counts is that an earlier or a later rule decides it, for another cause.
    verdict = classify(_reply(*TWINS[rule.id]))
    assert verdict.rule != rule.id
    assert verdict.cause != rule.cause


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_every_cause_is_a_catalogued_finding(rule) -> None:
    assert rule.cause in CATALOGUE
    assert rule.cause.startswith("AUTH_")


def test_the_two_misdiagnoses_of_the_issue_are_gone() -> None:
    microsoft = classify(_reply("smtp/office365.bin", 0))
    assert (microsoft.status, microsoft.cause) == (
        AuthStatus.PASSWORD_LOGIN_DISABLED,
        "AUTH_SMTP_AUTH_DISABLED_M365",
    )
    google = classify(_reply("smtp/gmail.bin", 0))
    assert (google.status, google.cause) == (
        AuthStatus.PASSWORD_LOGIN_DISABLED,
        "AUTH_APP_PASSWORD_REQUIRED",
    )


def test_an_imap_alert_before_the_refusal_is_read_with_it() -> None:
    first = _reply("imap/dovecot.bin", 0)
    assert first.code == "PRIVACYREQUIRED"
    assert first.alerts and "password was exposed" in first.alerts[0]
    assert _reply("imap/dovecot.bin", 1).alerts == ()


def test_the_pop3_text_is_read_without_its_code() -> None:
    reply = _reply("pop3/dovecot.bin", 3)
    assert (reply.code, reply.text) == ("AUTH", "Account disabled by the mail administrator.")


def test_a_multi_line_smtp_reply_is_read_without_its_status_codes() -> None:
    reply = _reply("smtp/gmail.bin", 0)
    assert (reply.reply_code, reply.enhanced, reply.kind) == (534, "5.7.9", "5xx")
    assert reply.text.startswith("Application-specific password required. Learn more at https:")
    assert "5.7.9" not in reply.text


def test_googles_wrong_credentials_carry_the_app_password_hint() -> None:
    # Still wrong credentials (the lockout gate stops), not "app password
    # required" (that is 534 5.7.9): a hint for the fix, from the rule's data.
    for name, index in (("smtp/gmail.bin", 2), ("imap/gmail.bin", 2), ("imap/gmail.bin", 4)):
        verdict = classify(_reply(name, index))
        assert (verdict.status, verdict.cause) == (AuthStatus.WRONG_CREDENTIALS, "AUTH_FAILED")
        assert verdict.hint is LoginHint.GOOGLE_APP_PASSWORD
    pop3_verdict = classify(_reply("pop3/gmail.bin", 2))
    assert pop3_verdict.hint is LoginHint.GOOGLE_APP_PASSWORD


def test_the_google_hint_needs_google() -> None:
    # The twins: the same words from another server are a plain wrong password.
    dovecot = _reply("imap/dovecot.bin", 2)  # NO [AUTHENTICATIONFAILED]
    assert classify(dovecot).rule == "imap-authentication-failed"
    assert classify(dovecot).hint is None
    elsewhere = structs.replace(_reply("imap/gmail.bin", 2), host="mail.example.org")
    assert (classify(elsewhere).cause, classify(elsewhere).hint) == ("AUTH_FAILED", None)
    pop3_elsewhere = structs.replace(_reply("pop3/gmail.bin", 2), host="mail.example.org")
    assert (classify(pop3_elsewhere).rule, classify(pop3_elsewhere).hint) == ("pop3-auth", None)
    for index in (0, 1):  # Postfix's 535 5.7.8 Authentication failed
        postfix = classify(_reply("smtp/postfix.bin", index))
        assert (postfix.cause, postfix.hint) == ("AUTH_FAILED", None)
    # Google's missing app password is still a verdict of its own, without a hint.
    app_password = classify(_reply("smtp/gmail.bin", 0))
    assert (app_password.cause, app_password.hint) == ("AUTH_APP_PASSWORD_REQUIRED", None)


def test_a_reply_no_rule_knows_gets_a_refusal_verdict() -> None:
    odd = LoginReply(Protocol.SMTP, "3xx", "odd", reply_code=354)
    assert classify(odd).rule is None
    assert classify(odd).cause == "AUTH_REFUSED"


# --- servers that take only OAuth --------------------------------------------------

OAUTH_ONLY = [
    (Protocol.IMAP, ["IMAP4rev1", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "LOGINDISABLED"]),
    (Protocol.IMAP, ["IMAP4rev1", "SASL-IR", "LOGINDISABLED", "AUTH=XOAUTH2"]),
    (Protocol.POP3, ["TOP", "UIDL", "SASL XOAUTH2 OAUTHBEARER"]),
    (Protocol.SMTP, ["SIZE 157286400", "AUTH XOAUTH2", "ENHANCEDSTATUSCODES"]),
    (Protocol.SMTP, ["AUTH=XOAUTH2 OAUTHBEARER"]),
]
# The twins: OAuth beside a password login (Gmail, Microsoft 365's SMTP), or no OAuth.
NOT_OAUTH_ONLY = [
    (Protocol.IMAP, ["IMAP4rev1", "AUTH=XOAUTH2", "AUTH=PLAIN", "AUTH=OAUTHBEARER"]),
    (Protocol.IMAP, ["IMAP4rev1", "AUTH=XOAUTH2"]),  # IMAP LOGIN is still allowed
    (Protocol.IMAP, ["IMAP4rev1", "LOGINDISABLED", "AUTH=GSSAPI"]),
    (Protocol.POP3, ["USER", "SASL XOAUTH2 OAUTHBEARER"]),
    (Protocol.POP3, ["SASL PLAIN XOAUTH2"]),
    (Protocol.SMTP, ["AUTH LOGIN XOAUTH2"]),
    (Protocol.SMTP, ["AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"]),
    (Protocol.SMTP, ["SIZE 10240000", "AUTH CRAM-MD5"]),
    (Protocol.SMTP, []),
]


@pytest.mark.parametrize(("protocol", "caps"), OAUTH_ONLY)
def test_a_server_with_only_oauth_mechanisms_is_oauth_only(protocol, caps) -> None:
    assert oauth_only(protocol, caps)
    assert set(oauth_only(protocol, caps)) <= {"XOAUTH2", "OAUTHBEARER"}


@pytest.mark.parametrize(("protocol", "caps"), NOT_OAUTH_ONLY)
def test_oauth_beside_a_password_login_is_not_oauth_only(protocol, caps) -> None:
    assert oauth_only(protocol, caps) == ()


# --- the verdicts the login gate acts on --------------------------------------------

STOPPING = [
    ("smtp/office365.bin", 0),  # SMTP AUTH off: the password is not taken this way
    ("smtp/gmail.bin", 0),  # app password required
    ("imap/office365.bin", 0),  # OAuth only
    ("imap/dovecot.bin", 3),  # disabled account
    ("imap/cyrus.bin", 0),  # expired password
    ("imap/gmail.bin", 2),  # wrong password
    ("smtp/postfix.bin", 6),  # "too many errors": the server counts this address
]
HANDING_ON = [
    ("imap/dovecot.bin", 5),  # [UNAVAILABLE]: the password was not judged
    ("pop3/dovecot.bin", 4),  # [IN-USE]
    ("imap/gmail.bin", 3),  # [LIMIT] too many connections
    ("smtp/postfix.bin", 8),  # no usable mechanism
]


def _gate_turn_after(verdict_of: tuple[str, int]) -> Turn:
    verdict = classify(_reply(*verdict_of))
    gate = LoginGate()
    _, pilot = gate.wait_turn(Deadline(5))
    gate.report(pilot, "pilot", AuthResult(verdict.status, "PLAIN", "r", cause=verdict.cause))
    return gate.wait_turn(Deadline(5))[0]


@pytest.mark.parametrize("where", STOPPING, ids=str)
def test_a_definite_refusal_stops_every_further_login(where) -> None:
    assert _gate_turn_after(where) is Turn.SKIP


@pytest.mark.parametrize("where", HANDING_ON, ids=str)
def test_a_refusal_that_did_not_judge_the_password_hands_the_login_on(where) -> None:
    assert _gate_turn_after(where) is Turn.PILOT


# --- any reply gets a catalogued verdict ---------------------------------------------

words = st.lists(
    st.sampled_from(
        list("abcdefg ./-[]@:") + ["disabled", "too many", "app password", "LOGIN failed", "TLS"]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=300, deadline=None, database=None)
@given(
    protocol=st.sampled_from(list(Protocol)),
    kind=st.sampled_from(["NO", "BAD", "BYE", "-ERR", "4xx", "5xx", "2xx"]),
    text=words,
    code=st.one_of(st.none(), st.sampled_from(["AUTH", "SYS/TEMP", "EXPIRED", "ALERT", "X"])),
    reply_code=st.one_of(st.none(), st.integers(200, 599)),
    encrypted=st.booleans(),
    host=st.sampled_from(["", "outlook.office365.com", "mail.example.org"]),
)
def test_any_reply_gets_a_catalogued_verdict(
    protocol, kind, text, code, reply_code, encrypted, host
) -> None:
    reply = LoginReply(
        protocol, kind, text, code=code, reply_code=reply_code, encrypted=encrypted, host=host
    )
    verdict = classify(reply)
    assert verdict.cause in CATALOGUE
    assert isinstance(verdict.status, AuthStatus)
