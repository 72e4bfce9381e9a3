# ruff: noqa: F811 -- the fixtures imported below are the parameters of the tests
"""IMAP "* PREAUTH" greetings (issue #11): never OK, never a password.

RFC 3501 §7.1.4: PREAUTH says the connection is already authenticated;
§6.2.1 allows STARTTLS only before that, so on port 143 the connection can
never be encrypted ("Why TLS is better without STARTTLS", USENIX Security
2021, shows attackers injecting PREAUTH to keep clients in plaintext). The
fake IMAP server greets with PREAUTH on the port a test names; the fixtures
come from tests/test_mailbox_fake.py.
"""

from __future__ import annotations

from maildiag.analysis import analyse
from maildiag.deadline import Deadline
from maildiag.model import Discovery, Endpoint, Outcome, Protocol, Security, TlsFailure
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from tests.lab.fake_servers import Behaviour
from tests.lab.faults import ScriptConn, ScriptedServer
from tests.test_mailbox_fake import _logins_sent, check, fake  # noqa: F401 (fixtures)


def _endpoint(report: dict, port: int) -> dict:
    return next(e for e in report["endpoints"] if e["port"] == port)


def _findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_preauth_on_143_is_critical_and_gets_no_password_and_no_starttls(fake, check):
    host, dns = fake({"imap": Behaviour.PREAUTH})
    code, report = check(dns)  # the fixture also checks the password is in no output
    imap143 = _endpoint(report, 143)
    assert imap143["outcome"] == Outcome.PREAUTH.value and imap143["ok"] is False
    assert imap143["failed_phase"] == "greeting"
    assert imap143.get("auth") is None
    [preauth] = _findings(report, "IMAP_PREAUTH")
    assert preauth["severity"] == "critical" and preauth["endpoint"]["port"] == 143
    assert "STARTTLS" in preauth["explanation"] and "no password" in preauth["explanation"]
    assert "PREAUTH" in preauth["explanation"] and "993" in preauth["fix"]
    assert "ENDPOINT_OK" not in {
        f["code"] for f in report["findings"] if (f.get("endpoint") or {}).get("port") == 143
    }
    # Only LOGOUT was sent on 143: no STARTTLS, no LOGIN, no AUTHENTICATE.
    sent = [c.split(b" ", 1)[1].upper() for c in host["imap"].commands]
    assert sent == [b"LOGOUT"]
    assert _logins_sent(host["imap"]) == []
    assert code == 2


def test_healthy_143_is_the_twin(fake, check):
    host, dns = fake()
    code, report = check(dns)
    assert code == 0
    assert _endpoint(report, 143)["outcome"] == "ok"
    assert _findings(report, "IMAP_PREAUTH") == []
    assert any(c.upper().endswith(b"STARTTLS") for c in host["imap"].commands)


def test_preauth_inside_tls_is_a_warning_and_gets_no_password(fake, check):
    host, dns = fake({"imaps": Behaviour.PREAUTH})
    code, report = check(dns)
    [preauth] = _findings(report, "IMAP_PREAUTH")
    assert preauth["severity"] == "warning" and preauth["endpoint"]["port"] == 993
    assert _endpoint(report, 993)["outcome"] == "preauth"
    assert _logins_sent(host["imaps"]) == []
    # The other endpoints still log in normally.
    assert _endpoint(report, 143)["auth"]["status"] == "ok"
    assert code == 1


def test_plaintext_preauth_on_993_is_a_plaintext_port_not_a_refusal(loopback_address):
    # No TLS at all on 993, and the plaintext greeting is a PREAUTH: the port
    # speaks plaintext IMAP (TLS_PORT_SPEAKS_PLAINTEXT), it does not refuse.
    def script(conn: ScriptConn) -> None:
        conn.send(b"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice\r\n")
        conn.hold()

    with ScriptedServer(loopback_address, 993, script) as server:
        endpoint = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS, ("test",))
        result = probe_endpoint(
            endpoint, lambda _h, _d: [loopback_address], ProbeSettings(timeout=2), Deadline(10)
        )
    assert result.outcome is Outcome.TLS_FAILED
    assert result.tls_failure is TlsFailure.PLAINTEXT
    assert server.logins == 0
    discovery = Discovery("kunde.test", "kunde.test", True, endpoints=(endpoint,))
    assert "TLS_PORT_SPEAKS_PLAINTEXT" in {f.code for f in analyse(discovery, [result])}
