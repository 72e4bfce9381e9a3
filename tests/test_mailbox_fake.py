"""The mailbox checks against scriptable fake servers: what a real server won't do on demand.

A temporary authentication failure, a server without a usable login
mechanism, one without QUOTA, one without UIDPLUS, a delivery that is slow
or never comes, a certificate that does not verify, a deliberately
unencrypted endpoint. Plus the small pieces on their own: the secret that
does not show itself, the password sources, the login gate.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import jsonschema
import pytest
from msgspec import structs

from maildiag.cli import main
from maildiag.credentials import profiles_from_env
from maildiag.credentials_input import (
    Credentials,
    CredentialsInputError,
    Secret,
    read_password_file,
    resolve_password,
)
from maildiag.deadline import Deadline
from maildiag.model import AuthResult, AuthStatus, Endpoint, Outcome, Protocol, Security, Thresholds
from maildiag.probes.auth import LoginGate, Turn
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from maildiag.probes.mailbox import MailboxChecks
from maildiag.runner import CheckRequest, diagnose
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import (
    Behaviour,
    FakeMailbox,
    FakeMailHost,
    FakeMailServer,
    FolderStyle,
)
from tests.lab.https_server import HttpsServer

SCHEMA = json.loads((Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text())
DNS_ADDRESS = "127.0.4.2"
HOST = "mail.kunde.test"
USER = "alice@kunde.test"
PASSWORD = "Wonder-Land-7"
KEYS = ("imap", "imaps", "pop3", "pop3s", "submission", "submissions")
LOGIN_VERBS = (b"LOGIN", b"AUTHENTICATE", b"AUTH", b"USER", b"PASS")
_DEFAULT_QUOTA = object()


def _zone(address: str) -> dict:
    return {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        "_imap._tcp": {"SRV": ["0 1 143 mail"]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail"]},
        "_pop3._tcp": {"SRV": ["0 1 110 mail"]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
        "_submissions._tcp": {"SRV": ["0 1 465 mail"]},
    }


@pytest.fixture
def fake(pki, loopback_address):
    """start(...) runs a FakeMailHost for kunde.test and DNS for it; returns (host, dns)."""
    stack = ExitStack()

    def start(behaviours=None, *, cert=None, quota=_DEFAULT_QUOTA, mailbox=None, **options):
        extra = {} if quota is _DEFAULT_QUOTA else {"quota": quota}
        extra.update(options)
        host = stack.enter_context(
            FakeMailHost(
                loopback_address,
                (cert or pki.good([HOST])).server_context(),
                hostname=HOST,
                behaviours=behaviours or {},
                users={USER: PASSWORD},
                mailbox=mailbox,
                **extra,
            )
        )
        dns = stack.enter_context(DnsServer({"kunde.test": _zone(loopback_address)}, DNS_ADDRESS))
        return host, dns

    yield start
    stack.close()


@pytest.fixture
def check(pki, capsys, monkeypatch):
    def run(dns, *args: str, password: str = PASSWORD):
        monkeypatch.setenv("MAILDIAG_PASSWORD", password)
        code = main(
            [
                "check",
                "kunde.test",
                "--nameserver",
                dns.nameserver,
                "--ca-file",
                str(pki.ca_pem_path),
                "--timeout",
                "3",
                "--no-autoconfig",
                "--format",
                "json",
                "--user",
                USER,
                *args,
            ]
        )
        out, err = capsys.readouterr()
        assert password not in out + err
        report = json.loads(out)
        jsonschema.validate(report, SCHEMA)
        return code, report

    return run


def _auth(report: dict) -> dict[int, dict]:
    return {e["port"]: e.get("auth") or {} for e in report["endpoints"]}


def _statuses(report: dict) -> list[str]:
    return sorted(a.get("status") for a in _auth(report).values())


def _codes(report: dict, severity: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if severity in (None, f["severity"])]


def _logins_sent(server: FakeMailServer) -> list[bytes]:
    # IMAP commands start with a tag, POP3 and SMTP commands with the verb.
    return [c for c in server.commands if set(c.upper().split()[:2]) & set(LOGIN_VERBS)]


# -- logins -------------------------------------------------------------------------


def test_healthy_servers_log_in_with_the_announced_mechanisms(fake, check):
    host, dns = fake()
    code, report = check(dns)
    assert code == 0
    mechanisms = {port: a["mechanism"] for port, a in _auth(report).items()}
    assert mechanisms == {
        143: "PLAIN (SASL-IR)",
        993: "PLAIN (SASL-IR)",
        110: "PLAIN",
        995: "PLAIN",
        587: "PLAIN",
        465: "PLAIN",
    }
    # The password never travels before TLS: nothing about logins in plaintext.
    for key in KEYS:
        plain = host[key].plaintext_commands
        assert not [c for c in plain if any(v in c.upper() for v in (b"AUTH", b"LOGIN"))], key
    assert sum(host[key].successful_logins for key in KEYS) == 6


def test_wrong_password_on_fakes_is_one_failed_login(fake, check):
    host, dns = fake()
    code, report = check(dns, password="not-" + PASSWORD)
    assert code == 2
    assert _statuses(report) == ["skipped"] * 5 + ["wrong_credentials"]
    assert sum(host[key].failed_logins for key in KEYS) == 1


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_login_without_an_answer_in_time_is_tried_nowhere_else(fake, check):
    # Courier's authdaemon answers a wrong password only after ~5 s. With a
    # shorter timeout the first login gets no verdict; the server counts a
    # failure all the same, so no other endpoint may send the password.
    host, dns = fake(login_failure_delay=4.0)
    started = time.monotonic()
    code, report = check(dns, "--timeout", "1.5", password="not-" + PASSWORD)
    assert time.monotonic() - started < 4.0
    assert _statuses(report) == ["no_answer"] + ["skipped"] * 5
    assert sum(len(_logins_sent(host[key])) for key in KEYS) == 1
    codes = _codes(report)
    assert codes.count("AUTH_NO_ANSWER") == 1 and codes.count("AUTH_SKIPPED_LOCKOUT") == 5
    for wrong in ("SERVER_STALLED", "AUTH_REFUSED", "IMAP_UNREACHABLE", "AUTH_FAILED"):
        assert wrong not in codes
    skipped = [a for a in _auth(report).values() if a["status"] == "skipped"]
    assert all("got no answer in time" in a["detail"] for a in skipped)
    assert code == 1
    # The server still judges the password once, after its pause: one failure, not six.
    assert _wait_for(lambda: sum(host[k].failed_logins for k in KEYS) == 1, 5.0)
    assert sum(host[k].failed_logins for k in KEYS) == 1


def test_a_slow_refusal_within_the_timeout_is_a_wrong_password(fake, check):
    host, dns = fake(login_failure_delay=0.5)
    code, report = check(dns, password="not-" + PASSWORD)
    assert _statuses(report) == ["skipped"] * 5 + ["wrong_credentials"]
    assert "AUTH_NO_ANSWER" not in _codes(report)
    assert code == 2
    assert sum(host[k].failed_logins for k in KEYS) == 1


def test_temporary_failure_is_reported_and_hands_the_pilot_on(fake, check):
    host, dns = fake(dict.fromkeys(KEYS[:-1], Behaviour.AUTH_TEMPORARY_FAILURE))
    code, report = check(dns)
    # Nobody was skipped: a temporary failure says nothing about the password.
    assert _statuses(report) == ["ok"] + ["temporary_failure"] * 5
    temporary = [f for f in report["findings"] if f["code"] == "AUTH_TEMPORARY_FAILURE"]
    assert len(temporary) == 5 and {f["severity"] for f in temporary} == {"warning"}
    by_port = _auth(report)
    assert "[UNAVAILABLE]" in by_port[993]["detail"]
    assert "[SYS/TEMP]" in by_port[995]["detail"]
    assert by_port[587]["detail"].startswith("454")
    assert code == 1
    assert sum(host[key].failed_logins for key in KEYS) == 0


def test_temporary_failure_then_a_wrong_password_still_costs_one_failure(fake, check):
    host, dns = fake(
        {"imaps": Behaviour.AUTH_TEMPORARY_FAILURE, "pop3s": Behaviour.AUTH_TEMPORARY_FAILURE}
    )
    code, report = check(dns, password="Bad-Pass-42")
    assert code == 2
    statuses = _statuses(report)
    assert statuses.count("wrong_credentials") == 1
    assert statuses.count("ok") == 0
    assert sum(host[key].failed_logins for key in KEYS) == 1


def test_no_usable_mechanism_is_reported_without_sending_anything(fake, check):
    host, dns = fake(
        {
            "imaps": Behaviour.NO_LOGIN_MECHANISM,
            "pop3s": Behaviour.NO_LOGIN_MECHANISM,
            "submissions": Behaviour.NO_LOGIN_MECHANISM,
        }
    )
    code, report = check(dns)
    by_port = _auth(report)
    for port in (993, 995, 465):
        assert by_port[port]["status"] == "mechanism_unavailable"
    for port in (143, 110, 587):
        assert by_port[port]["status"] == "ok"
    for key in ("imaps", "pop3s", "submissions"):
        assert _logins_sent(host[key]) == [], key
    unavailable = [f for f in report["findings"] if f["code"] == "AUTH_MECHANISM_UNAVAILABLE"]
    assert len(unavailable) == 3 and {f["severity"] for f in unavailable} == {"warning"}
    # A submission port without AUTH is critical with or without --user: nobody can send there.
    no_auth = [
        f["endpoint"]["port"] for f in report["findings"] if f["code"] == "SUBMISSION_NO_AUTH"
    ]
    assert no_auth == [465]
    assert code == 2


def test_untrusted_certificate_gets_no_password(fake, check, pki):
    host, dns = fake(cert=pki.self_signed([HOST]))
    code, report = check(dns)
    assert _statuses(report) == ["skipped"] * 6
    assert {a["skipped_because"] for a in _auth(report).values()} == {"untrusted_certificate"}
    assert _codes(report).count("AUTH_SKIPPED_UNTRUSTED") == 6
    for key in KEYS:
        assert _logins_sent(host[key]) == [], key
    assert code == 2  # the certificate findings


# -- read-only mailbox facts ---------------------------------------------------------


def test_quota_and_inbox_are_read_without_changing_anything(fake, check):
    host, dns = fake(quota=(950, 1000))
    code, report = check(dns)
    assert "QUOTA_NEAR_LIMIT" in _codes(report, "warning")
    assert code == 1
    imap_commands = b"\n".join(host["imaps"].commands + host["imap"].commands).upper()
    assert b"GETQUOTAROOT INBOX" in imap_commands and b"STATUS INBOX" in imap_commands
    for verb in (b" SELECT ", b" EXAMINE ", b" STORE ", b" EXPUNGE", b" APPEND "):
        assert verb not in imap_commands
    pop_commands = [c.upper() for c in host["pop3s"].commands + host["pop3"].commands]
    assert b"STAT" in pop_commands
    assert not [c for c in pop_commands if c.startswith((b"DELE", b"RETR", b"TOP"))]
    pop3 = next(e for e in report["endpoints"] if e["port"] == 995)
    assert pop3["mailbox"]["inbox_messages"] == 3


def test_server_without_quota_is_info_not_error(fake, check):
    host, dns = fake(quota=None)
    code, report = check(dns)
    assert code == 0
    assert "QUOTA_UNSUPPORTED" in _codes(report, "info")
    imap = next(e for e in report["endpoints"] if e["port"] == 993)
    assert imap["mailbox"]["quota_supported"] is False and imap["mailbox"]["quota"] == []
    assert imap["mailbox"]["inbox_messages"] == 3
    assert not [c for c in host["imaps"].commands if b"GETQUOTAROOT" in c.upper()]


def test_server_with_quota_room_is_quota_ok(fake, check):
    _, dns = fake()
    code, report = check(dns)
    assert code == 0
    assert "QUOTA_OK" in _codes(report, "ok") and "QUOTA_UNSUPPORTED" not in _codes(report)


def test_only_pop3_working_advises_leaving_a_copy_on_the_server(fake, check):
    _, dns = fake({"imap": None, "imaps": None})
    _, report = check(dns)
    advice = next(f for f in report["findings"] if f["code"] == "ADVICE_USE_IMAP")
    assert "Only POP3 works" in advice["explanation"]
    assert "leave a copy" in advice["fix"]


def test_imap_working_advises_imap(fake, check):
    _, dns = fake()
    _, report = check(dns)
    advice = next(f for f in report["findings"] if f["code"] == "ADVICE_USE_IMAP")
    assert advice["severity"] == "info"
    assert "IMAP works" in advice["explanation"] and "port 993" in advice["fix"]


def test_no_login_anywhere_gives_no_advice(fake, check):
    _, dns = fake()
    _, report = check(dns, password="Bad-Pass-42")
    assert "ADVICE_USE_IMAP" not in _codes(report)


# -- sync -----------------------------------------------------------------------------


def test_sync_without_uidplus_expunges_only_when_the_probe_is_alone(fake, check):
    box = FakeMailbox(uidplus=False)
    before = box.snapshot()
    host, dns = fake(mailbox=box)
    code, report = check(dns, "--sync")
    sync = report["sync"]
    assert sync["error"] is None, sync
    # The fake offers no IDLE: NOOP polling.
    assert sync["delivery_method"] == "noop-poll" and sync["flag_sync_method"] == "noop-poll"
    assert sync["delivery_latency_s"] >= 0 and sync["flag_sync_latency_s"] >= 0
    assert sync["cleaned_up"] is True and code == 0
    assert box.find("maildiag sync probe") == [] and box.snapshot() == before
    commands = [c.split(b" ", 1)[1].upper() for c in host["imaps"].commands if b" " in c]
    assert b"UID SEARCH DELETED" in commands and b"EXPUNGE" in commands
    assert not [c for c in commands if c.startswith(b"UID EXPUNGE")]
    assert not [c for c in commands if c.startswith(b"IDLE")]


def test_sync_without_uidplus_leaves_the_probe_when_others_are_marked_deleted(fake, check):
    box = FakeMailbox(uidplus=False)
    other = box.add(b"Subject: keep me\r\n\r\nbody\r\n", ("\\Deleted",))
    host, dns = fake(mailbox=box)
    code, report = check(dns, "--sync")
    sync = report["sync"]
    assert sync["delivery_latency_s"] is not None and sync["flag_sync_latency_s"] is not None
    assert sync["cleaned_up"] is False
    assert "other message(s) are marked deleted" in sync["error"]
    assert "SYNC_CLEANUP_FAILED" in _codes(report, "warning")
    assert code == 1
    # The user's own deleted message survived: no plain EXPUNGE was sent.
    assert other in [uid for uid, _ in box.snapshot()]
    commands = [c.split(b" ", 1)[1].upper() for c in host["imaps"].commands if b" " in c]
    assert b"EXPUNGE" not in commands
    probe = box.find("maildiag sync probe")
    assert len(probe) == 1 and "\\Deleted" in dict(box.snapshot())[probe[0]]


def test_sync_with_uidplus_removes_only_the_probe(fake, check):
    box = FakeMailbox(uidplus=True)
    other = box.add(b"Subject: keep me\r\n\r\nbody\r\n", ("\\Deleted",))
    host, dns = fake(mailbox=box)
    code, report = check(dns, "--sync")
    assert report["sync"]["cleaned_up"] is True and code == 0
    assert box.find("maildiag sync probe") == []
    assert other in [uid for uid, _ in box.snapshot()]
    commands = [c.split(b" ", 1)[1].upper() for c in host["imaps"].commands if b" " in c]
    assert [c for c in commands if c.startswith(b"UID EXPUNGE")]
    assert b"EXPUNGE" not in commands


def _sync_request(dns, pki, thresholds: Thresholds | None = None, deadline=30.0):
    return CheckRequest(
        "kunde.test",
        nameserver=dns.nameserver,
        ca_file=str(pki.ca_pem_path),
        timeout=3,
        deadline=deadline,
        autoconfig=False,
        thresholds=thresholds or Thresholds(),
        credentials=Credentials(USER, Secret(PASSWORD)),
        sync=True,
    )


def test_slow_delivery_is_a_finding(fake, pki):
    _, dns = fake(mailbox=FakeMailbox(delivery_delay=0.6))
    diagnosis = diagnose(_sync_request(dns, pki, Thresholds(sync_delivery_slow_s=0.3)))
    assert diagnosis.sync is not None and diagnosis.sync.delivery_latency_s is not None
    assert diagnosis.sync.delivery_latency_s >= 0.6
    assert "SYNC_DELIVERY_SLOW" in [f.code for f in diagnosis.findings]
    assert diagnosis.user == USER


def test_quick_delivery_is_not_a_finding(fake, pki):
    _, dns = fake(mailbox=FakeMailbox())
    diagnosis = diagnose(_sync_request(dns, pki, Thresholds(sync_delivery_slow_s=0.3)))
    codes = [f.code for f in diagnosis.findings]
    assert "SYNC_DELIVERY_SLOW" not in codes and "SYNC_OK" in codes


def test_a_message_that_never_arrives_fails_within_the_deadline(fake, pki):
    _, dns = fake(mailbox=FakeMailbox(delivery_delay=3600))
    started = time.monotonic()
    diagnosis = diagnose(_sync_request(dns, pki, deadline=5.0))
    assert time.monotonic() - started < 6.0
    sync = diagnosis.sync
    assert sync is not None and sync.delivery_latency_s is None
    assert "did not arrive" in (sync.error or "")
    assert sync.cleaned_up is False
    codes = [f.code for f in diagnosis.findings]
    assert "SYNC_FAILED" in codes and "SYNC_CLEANUP_FAILED" in codes


def test_sync_without_a_working_submission_is_not_measured(fake, check):
    box = FakeMailbox()
    _, dns = fake({"submission": None, "submissions": None}, mailbox=box)
    _, report = check(dns, "--sync")
    assert report["sync"]["error"] == (
        "not measured: no SMTP submission endpoint where the login worked"
    )
    assert len(box.snapshot()) == 3


# -- deliberately unencrypted endpoints (autoconfig "plain") -------------------------


def _probe_plain(server: FakeMailServer, *, allow_plaintext: bool):
    endpoint = Endpoint(Protocol.IMAP, server.address, server.port, Security.PLAIN)
    checks = MailboxChecks(Credentials(USER, Secret(PASSWORD)), allow_plaintext=allow_plaintext)
    return probe_endpoint(
        endpoint,
        lambda _h, _d: [server.address],
        ProbeSettings(timeout=3),
        Deadline(10),
        checks.hook_for(endpoint),
    )


@pytest.fixture
def plain_imap(loopback_address):
    servers = []

    def start(behaviour):
        server = FakeMailServer(
            "imap",
            loopback_address,
            0,
            implicit_tls=False,
            behaviour=behaviour,
            users={USER: PASSWORD},
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_plaintext_login_is_not_tried_unless_allowed(plain_imap):
    server = plain_imap(Behaviour.PLAINTEXT_LOGIN)
    result = _probe_plain(server, allow_plaintext=False)
    assert result.outcome is Outcome.OK
    assert result.auth is not None and result.auth.status == AuthStatus.SKIPPED
    assert result.auth.skipped_because == "plaintext"
    assert _logins_sent(server) == []


def test_plaintext_login_is_tried_when_allowed(plain_imap):
    server = plain_imap(Behaviour.PLAINTEXT_LOGIN)
    result = _probe_plain(server, allow_plaintext=True)
    assert result.auth is not None and result.auth.status == AuthStatus.OK
    assert server.successful_logins == 1


def test_a_server_refusing_plaintext_login_is_good_and_gets_nothing(plain_imap):
    server = plain_imap(Behaviour.HEALTHY)  # LOGINDISABLED before TLS
    result = _probe_plain(server, allow_plaintext=True)
    assert result.auth is not None and result.auth.status == AuthStatus.PLAINTEXT_REFUSED
    assert _logins_sent(server) == []


# -- the pieces on their own ---------------------------------------------------------


def test_secret_never_shows_itself():
    secret = Secret("hunter2-Top")
    creds = Credentials("alice", secret)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        repr(creds),
        str(creds),
        repr(CheckRequest("kunde.test", credentials=creds)),
    ]
    assert not [text for text in shown if "hunter2" in text]
    assert secret.reveal() == "hunter2-Top"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_a_profile_is_the_one_credential_type_with_a_secret_password():
    environ = {
        "MAILDIAG_PROFILE_BOB_USER": "bob@kunde.test",
        "MAILDIAG_PROFILE_BOB_PASSWORD": "pw-1",
    }
    profile = profiles_from_env(environ)["bob"]
    assert profile == Credentials("bob@kunde.test", Secret("pw-1"))
    assert isinstance(profile.password, Secret) and "pw-1" not in repr(profile)
    with pytest.raises(TypeError):
        pickle.dumps(profile)


def test_password_file_rules(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret word\nsecond line\n")
    path.chmod(0o600)
    assert read_password_file(path).reveal() == "s3cret word"
    path.chmod(0o640)
    with pytest.raises(CredentialsInputError, match="others can access") as err:
        read_password_file(path)
    assert "s3cret" not in str(err.value)
    with pytest.raises(CredentialsInputError, match="no such"):
        read_password_file(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(CredentialsInputError, match="empty"):
        read_password_file(empty)


def test_password_sources_in_order(tmp_path):
    path = tmp_path / "pw"
    path.write_text("from-file")
    path.chmod(0o600)

    def no_prompt(text: str) -> str:
        raise AssertionError("must not prompt")

    env = {"MAILDIAG_PASSWORD": "from-env"}
    resolve = resolve_password
    assert (
        resolve("u", password_file=path, environ=env, interactive=True, prompt=no_prompt).reveal()
        == "from-file"
    )
    assert (
        resolve("u", password_file=None, environ=env, interactive=False, prompt=no_prompt).reveal()
        == "from-env"
    )
    asked = []
    secret = resolve(
        "u",
        password_file=None,
        environ={},
        interactive=True,
        prompt=lambda text: asked.append(text) or "typed",
    )
    assert secret.reveal() == "typed" and asked == ["Password for u"]
    with pytest.raises(CredentialsInputError, match="MAILDIAG_PASSWORD"):
        resolve("u", password_file=None, environ={}, interactive=False, prompt=no_prompt)


def _ok() -> AuthResult:
    return AuthResult(AuthStatus.OK, "PLAIN", None)


def test_login_gate_pilot_then_everyone_goes():
    gate = LoginGate()
    turn, pilot = gate.wait_turn(Deadline(5))
    assert turn is Turn.PILOT
    waiting: list[Turn] = []
    waiter = threading.Thread(target=lambda: waiting.append(gate.wait_turn(Deadline(5))[0]))
    waiter.start()
    time.sleep(0.1)
    assert waiting == []  # blocked while the pilot flies
    gate.report(pilot, "IMAP", _ok())
    waiter.join(2)
    assert waiting == [Turn.GO]


def test_login_gate_refusal_skips_and_other_failures_hand_over():
    gate = LoginGate()
    _, pilot = gate.wait_turn(Deadline(5))
    results: list[Turn] = []
    waiter = threading.Thread(target=lambda: results.append(gate.wait_turn(Deadline(5))[0]))
    waiter.start()
    gate.report(pilot, "IMAP", AuthResult(AuthStatus.TEMPORARY_FAILURE, "PLAIN", "busy"))
    waiter.join(2)
    assert results == [Turn.PILOT]  # the next waiter takes over
    gate.report(object(), "POP3", AuthResult(AuthStatus.WRONG_CREDENTIALS, "PLAIN", "-ERR"))
    assert gate.wait_turn(Deadline(5))[0] is Turn.SKIP
    assert gate.refusal is not None and gate.refusal.where == "POP3"


@pytest.mark.parametrize(
    "verdict", [None, AuthResult(AuthStatus.NO_ANSWER, "PLAIN", "no answer within 4 s")]
)
def test_login_gate_stops_everyone_when_the_pilot_gets_no_answer(verdict):
    gate = LoginGate()
    _, pilot = gate.wait_turn(Deadline(5))
    results: list[Turn] = []
    waiter = threading.Thread(target=lambda: results.append(gate.wait_turn(Deadline(5))[0]))
    waiter.start()
    gate.report(pilot, "IMAP mail:993", verdict)
    waiter.join(2)
    assert results == [Turn.SKIP]
    assert gate.refusal is not None and gate.refusal.result.status == AuthStatus.NO_ANSWER


def test_login_gate_gives_up_at_the_deadline():
    gate = LoginGate()
    gate.wait_turn(Deadline(5))
    started = time.monotonic()
    assert gate.wait_turn(Deadline(0.7), margin=0.5)[0] is Turn.GIVE_UP
    assert time.monotonic() - started < 1.0


# -- every login path, by hiding what the fake announces ----------------------------

# (server key, capabilities to keep inside TLS, expected mechanism)
LOGIN_PATHS = {
    "imap-plain-after-continuation": ("imaps", lambda c: c != "SASL-IR", "PLAIN"),
    "imap-login-command": ("imaps", lambda c: not c.startswith("AUTH="), "LOGIN"),
    "pop3-user-pass": ("pop3s", lambda c: not c.upper().startswith("SASL"), "USER/PASS"),
    "smtp-auth-login": ("submissions", lambda c: not c.upper().startswith("AUTH"), "LOGIN"),
}


def _login_with(host: FakeMailHost, key: str, keep, password: str) -> AuthResult:
    from maildiag.probes.mailbox import _login  # the dispatcher the session hook uses

    protocol = {"imaps": Protocol.IMAP, "pop3s": Protocol.POP3, "submissions": Protocol.SMTP}[key]
    server = host[key]
    endpoint = Endpoint(protocol, HOST, server.port, Security.TLS)
    found: list[AuthResult] = []

    def hook(session, rec):
        caps = tuple(c for c in rec.capabilities_tls if keep(c))
        if key == "submissions":
            caps += ("AUTH LOGIN",)
        found.append(_login(session, Credentials(USER, Secret(password)), caps)[0])

    result = probe_endpoint(
        endpoint, lambda _h, _d: [server.address], ProbeSettings(timeout=3), Deadline(10), hook
    )
    assert result.outcome is Outcome.OK, result.error
    return found[0]


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_every_login_path_works(fake, path):
    host, _ = fake()
    key, keep, mechanism = LOGIN_PATHS[path]
    result = _login_with(host, key, keep, PASSWORD)
    assert (result.status, result.mechanism) == (AuthStatus.OK, mechanism)
    assert host[key].successful_logins == 1


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_every_login_path_reports_a_wrong_password(fake, path):
    host, _ = fake()
    key, keep, mechanism = LOGIN_PATHS[path]
    result = _login_with(host, key, keep, "Bad-Pass-42")
    assert (result.status, result.mechanism) == (AuthStatus.WRONG_CREDENTIALS, mechanism)
    assert "Bad-Pass-42" not in (result.detail or "")
    assert host[key].failed_logins == 1


def test_a_large_inbox_is_a_warning(fake, pki):
    _, dns = fake()
    request = _sync_request(dns, pki, Thresholds(inbox_large_messages=3))
    diagnosis = diagnose(structs.replace(request, sync=False))
    large = next(f for f in diagnosis.findings if f.code == "INBOX_LARGE")
    assert large.severity.value == "warning" and large.details["messages"] == 3


def test_a_normal_inbox_is_not(fake, pki):
    _, dns = fake()
    diagnosis = diagnose(structs.replace(_sync_request(dns, pki), sync=False))
    assert "INBOX_LARGE" not in [f.code for f in diagnosis.findings]
    assert diagnosis.sync is None


# -- servers that echo what the client sent --------------------------------------------


def _secret_forms(user: str, password: str) -> list[str]:
    import base64

    raw = password.encode()
    blobs = (raw, b"\0" + user.encode() + b"\0" + raw, user.encode() * 2 + raw)
    return [password, *(base64.b64encode(b).decode() for b in blobs)]


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_an_echoed_login_never_shows_the_password_in_any_encoding(pki, loopback_address, path):
    # Some servers quote the failed line back ("535 ... (you sent: AUTH PLAIN AGFsaWNl...)").
    key, keep, _ = LOGIN_PATHS[path]
    wrong = "Echo-Me-Not-99"
    with FakeMailHost(
        loopback_address,
        pki.good([HOST]).server_context(),
        hostname=HOST,
        users={USER: PASSWORD},
        echo_failed_logins=True,
    ) as host:
        result = _login_with(host, key, keep, wrong)
        echoed = [c for c in host[key].commands if b"you sent" not in c]
    assert result.status != AuthStatus.OK
    assert "you sent: " in (result.detail or "")  # the echo is there, only blotted out
    for form in _secret_forms(USER, wrong):
        assert form not in (result.detail or ""), form
    assert echoed  # the server really received the secret


def test_an_echoing_server_leaks_nothing_through_the_cli(fake, pki, capsys, monkeypatch):
    host, dns = fake(echo_failed_logins=True)
    wrong = "Echo-Me-Not-99"
    monkeypatch.setenv("MAILDIAG_PASSWORD", wrong)
    outputs = []
    for fmt in ("json", "text", "nagios", "junit"):
        main(
            [
                "check",
                "kunde.test",
                "--nameserver",
                dns.nameserver,
                "--ca-file",
                str(pki.ca_pem_path),
                "--timeout",
                "3",
                "--no-autoconfig",
                "--user",
                USER,
                "--format",
                fmt,
            ]
        )
        outputs.append("".join(capsys.readouterr()))
    report = json.loads(outputs[0])
    assert any("you sent" in (e.get("auth") or {}).get("detail", "") for e in report["endpoints"])
    for form in _secret_forms(USER, wrong):
        for out in outputs:
            assert form not in out


def test_control_characters_in_a_greeting_never_reach_the_terminal(pki, loopback_address, capsys):
    # A 554 greeting with ANSI escapes (the hostname is part of the fake's text).
    evil = "mx\x1b[2J\x1b[31mHACKED\x1b[0m\u202e.kunde.test"
    with FakeMailHost(
        loopback_address,
        pki.good([HOST]).server_context(),
        hostname=evil,
        behaviours=dict.fromkeys(KEYS, Behaviour.UNAVAILABLE),
    ) as host:
        args = [
            "check",
            "kunde.test",
            "--imap-host",
            host.address,
            "--pop3-host",
            host.address,
            "--smtp-host",
            host.address,
            "--ca-file",
            str(pki.ca_pem_path),
            "--timeout",
            "3",
            "--no-autoconfig",
            "--nameserver",
            "127.0.0.1:9",
        ]
        main([*args, "--format", "text", "--color", "never"])
        text = "".join(capsys.readouterr())
        main([*args, "--format", "json"])
        raw_json = capsys.readouterr().out
    assert "554" in text and "HACKED" in text  # quoted, but defused
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text
    report = json.loads(raw_json)
    assert not any("\x1b" in json.dumps(v, ensure_ascii=False) for v in report["endpoints"])


# -- autoconfig naming another domain's server ---------------------------------------

FOREIGN = "imap.elsewhere.test"
AUTOCONFIG_WEB = "127.0.4.80"


def _foreign_autoconfig() -> bytes:
    return f"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="kunde.test">
  <incomingServer type="imap"><hostname>{FOREIGN}</hostname><port>993</port>
    <socketType>SSL</socketType></incomingServer>
</emailProvider></clientConfig>""".encode()


@pytest.fixture
def foreign_world(pki, loopback_address):
    """kunde.test has only MX and an autoconfig document that names imap.elsewhere.test."""
    host = FakeMailHost(
        loopback_address,
        pki.good([FOREIGN, HOST]).server_context(),
        hostname=FOREIGN,
        users={USER: PASSWORD},
    )
    zones = {
        "kunde.test": {
            "@": {"MX": ["10 mx.kunde.test"]},
            "mx": {"A": ["127.0.4.99"]},
            "autoconfig": {"A": [AUTOCONFIG_WEB]},
        },
        "elsewhere.test": {"imap": {"A": [loopback_address]}},
    }
    cert = pki.intermediate.issue_cert("autoconfig.kunde.test")
    routes = {"autoconfig.kunde.test/mail/config-v1.1.xml": _foreign_autoconfig()}
    with (
        host,
        DnsServer(zones, DNS_ADDRESS) as dns,
        HttpsServer(routes, cert, address=AUTOCONFIG_WEB),
    ):
        yield host, dns


def test_a_server_only_foreign_autoconfig_names_never_gets_the_password(
    foreign_world, pki, capsys, monkeypatch
):
    host, dns = foreign_world
    monkeypatch.setenv("MAILDIAG_PASSWORD", PASSWORD)
    args = [
        "check",
        "kunde.test",
        "--nameserver",
        dns.nameserver,
        "--ca-file",
        str(pki.ca_pem_path),
        "--timeout",
        "3",
        "--user",
        USER,
        "--format",
        "json",
    ]
    main(args)
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report, SCHEMA)
    assert report["discovery"]["foreign_hosts"] == [FOREIGN]
    imaps = next(e for e in report["endpoints"] if e["port"] == 993)
    assert imaps["host"] == FOREIGN and imaps["outcome"] == "ok"  # probed all the same
    assert imaps["auth"]["skipped_because"] == "foreign_host"
    codes = _codes(report)
    assert "AUTOCONFIG_FOREIGN_HOST" in codes and "AUTH_SKIPPED_FOREIGN_HOST" in codes
    assert _logins_sent(host["imaps"]) == []
    # The twin: named explicitly by the technician, the same server gets the login.
    main([*args, "--imap-host", FOREIGN])
    report = json.loads(capsys.readouterr().out)
    imaps = next(e for e in report["endpoints"] if e["port"] == 993)
    assert imaps["auth"]["status"] == "ok"
    assert host["imaps"].successful_logins == 1


# -- sending: MAIL FROM / RCPT TO / RSET after the submission login ----------------


def _send_commands(server: FakeMailServer) -> list[bytes]:
    return [c.split(b":")[0].split()[0].upper() for c in server.commands if c[:4].isalpha()]


def test_a_small_size_limit_is_a_warning_and_nothing_is_sent(fake, check):
    box = FakeMailbox()
    host, dns = fake(mailbox=box, smtp_size=5_000_000)
    code, report = check(dns)
    small = [f for f in report["findings"] if f["code"] == "SEND_SIZE_SMALL"]
    assert len(small) == 2 and {f["severity"] for f in small} == {"warning"}
    assert "5.0 MB" in small[0]["explanation"] and "3.8 MB" in small[0]["explanation"]
    assert small[0]["details"]["size_bytes"] == 5_000_000
    sends = [e["send"] for e in report["endpoints"] if "send" in e]
    assert [s["size_limit"] for s in sends] == [5_000_000, 5_000_000]
    assert {s["status"] for s in sends} == {"accepted"}
    for key in ("submission", "submissions"):
        verbs = _send_commands(host[key])
        assert verbs[-4:] == [b"MAIL", b"RCPT", b"RSET", b"QUIT"]
        assert b"DATA" not in verbs
    assert len(box.snapshot()) == 3  # the INBOX as it was


def test_a_usual_size_limit_is_reported_without_warning(fake, check):
    _, dns = fake(smtp_size=35_882_577)
    _, report = check(dns)
    codes = [f["code"] for f in report["findings"]]
    assert codes.count("SEND_SIZE_LIMIT") == 2 and "SEND_SIZE_SMALL" not in codes
    assert codes.count("SEND_OK") == 2


def test_no_size_announced_gives_no_size_finding(fake, check):
    _, dns = fake(smtp_size=None)
    _, report = check(dns)
    codes = [f["code"] for f in report["findings"]]
    assert "SEND_SIZE_LIMIT" not in codes and "SEND_SIZE_SMALL" not in codes
    assert {e["send"]["size_limit"] for e in report["endpoints"] if "send" in e} == {None}


def test_microsoft_365_send_as_refusal_at_mail_from(fake, check):
    # Exchange Online refuses the sender at MAIL FROM, not at RCPT as Postfix does.
    reply = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    host, dns = fake(mail_from_reply=reply)
    _, report = check(dns)
    sends = [e["send"] for e in report["endpoints"] if "send" in e]
    assert {s["status"] for s in sends} == {"sender_rejected"}
    assert {s["rcpt_reply"] for s in sends} == {None}  # RCPT is not tried after a refused MAIL
    finding = next(f for f in report["findings"] if f["code"] == "SEND_SENDER_REJECTED")
    assert finding["severity"] == "critical"
    assert "5.7.60" in finding["explanation"] and finding["details"]["sender"] == USER
    verbs = _send_commands(host["submissions"])
    assert b"RCPT" not in verbs and b"DATA" not in verbs and b"RSET" in verbs


@pytest.mark.parametrize("address", [None, "info@kunde.test"])
def test_a_login_that_is_no_address_uses_address_or_skips(pki, loopback_address, check, address):
    with (
        FakeMailHost(
            loopback_address,
            pki.good([HOST]).server_context(),
            hostname=HOST,
            users={"alice": PASSWORD},
        ) as host,
        DnsServer({"kunde.test": _zone(loopback_address)}, DNS_ADDRESS) as dns,
    ):
        extra = ("--address", address) if address else ()
        code, report = check(dns, "--user", "alice", *extra)
        assert {e["auth"]["status"] for e in report["endpoints"]} == {"ok"}
        sends = [e["send"] for e in report["endpoints"] if "send" in e]
        assert len(sends) == 2
        codes = [f["code"] for f in report["findings"]]
        # The size limit is known all the same.
        assert "SEND_SIZE_LIMIT" in codes
        if address:
            assert {(s["status"], s["sender"]) for s in sends} == {("accepted", address)}
            assert "SEND_OK" in codes and "SEND_SKIPPED" not in codes
            return
        assert {s["status"] for s in sends} == {"skipped"}
        skipped = next(f for f in report["findings"] if f["code"] == "SEND_SKIPPED")
        assert "is not an e-mail address" in skipped["explanation"]
        assert skipped["severity"] == "info"
        assert b"MAIL" not in _send_commands(host["submission"])


# -- folders and push: XLIST (Gmail), no special use, IDLE -----------------------------

GMAIL_FOLDERS = (
    ("[Gmail]/All Mail", "\\All"),
    ("[Gmail]/Drafts", "\\Drafts"),
    ("[Gmail]/Sent Mail", "\\Sent"),
    ("[Gmail]/Spam", "\\Junk"),
    ("[Gmail]/Trash", "\\Trash"),
    ("Work", None),
)


def _imap_box(report: dict, port: int = 993) -> dict:
    return next(e for e in report["endpoints"] if e["port"] == port)["mailbox"]


def test_gmail_shape_xlist_only_finds_the_special_folders(fake, check):
    host, dns = fake(folders=GMAIL_FOLDERS, folder_style=FolderStyle.XLIST)
    code, report = check(dns)
    box = _imap_box(report)
    assert box["folder_listing"] == "xlist"
    uses = {f["name"]: f["special_use"] for f in box["folders"]}
    assert uses["[Gmail]/Spam"] == ["\\Junk"] and uses["[Gmail]/All Mail"] == ["\\All"]
    assert uses["[Gmail]/Sent Mail"] == ["\\Sent"] and uses["Work"] == []
    codes = [f["code"] for f in report["findings"]]
    assert "FOLDERS_SPECIAL_USE_OK" in codes and "FOLDERS_SPECIAL_USE_MISSING" not in codes
    verbs = [c.split()[1].upper() for c in host["imaps"].commands if len(c.split()) > 1]
    assert b"XLIST" in verbs and b"SELECT" not in verbs and b"EXAMINE" not in verbs


def test_without_special_use_every_mark_is_missing(fake, check):
    _, dns = fake(folder_style=FolderStyle.NONE)
    code, report = check(dns)
    box = _imap_box(report)
    assert box["folder_listing"] == "list"
    assert {f["name"] for f in box["folders"]} == {"INBOX", "Sent", "Drafts", "Trash", "Junk"}
    missing = next(f for f in report["findings"] if f["code"] == "FOLDERS_SPECIAL_USE_MISSING")
    assert missing["severity"] == "warning"
    assert "\\Sent, \\Drafts, \\Trash, \\Junk" in missing["explanation"]


def test_only_junk_unmarked_is_info(fake, check):
    folders = (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Spam", None))
    _, dns = fake(folders=folders)
    code, report = check(dns)
    missing = next(f for f in report["findings"] if f["code"] == "FOLDERS_SPECIAL_USE_MISSING")
    assert missing["severity"] == "info" and missing["details"]["missing_uses"] == ["\\Junk"]


def test_a_server_without_idle_gets_the_push_finding(fake, check):
    # The fake IMAP server announces no IDLE (the sync check polls it with NOOP).
    _, dns = fake()
    _, report = check(dns)
    assert _imap_box(report)["idle"] is False
    idle = next(f for f in report["findings"] if f["code"] == "IMAP_IDLE_MISSING")
    assert idle["severity"] == "info" and "15 minutes" in idle["explanation"]


@pytest.mark.parametrize(("quota", "statuses"), [((950, 1000), 5), ((100, 1000), 1)])
def test_folder_sizes_are_asked_only_when_the_quota_presses(fake, check, quota, statuses):
    host, dns = fake(quota=quota)
    _, report = check(dns)
    folders = [f for f in _imap_box(report)["folders"] if f["name"] != "INBOX"]
    # 95 %: INBOX once, then each of the four (empty) folders; 10 %: INBOX only.
    assert {f["messages"] for f in folders} == ({0} if statuses > 1 else {None})
    assert len([c for c in host["imaps"].commands if b" STATUS " in c]) == statuses
