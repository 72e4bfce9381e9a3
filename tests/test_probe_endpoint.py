"""The endpoint probe against real TLS servers on loopback, one fault at a time.

Servers come from tests/lab/fake_servers.py; certificates are made per session
by tests/lab/certs.py. DNS is replaced by a fixed lookup so that these tests
exercise the probe alone (discovery has its own tests).
"""

from __future__ import annotations

import time

import pytest

from maildiag.deadline import Deadline
from maildiag.model import DnsFailure, Endpoint, Outcome, Phase, Protocol, Security, TrustStatus
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailServer

HOST = "mail.kunde.test"
KEYS = {
    (Protocol.IMAP, Security.STARTTLS): "imap",
    (Protocol.IMAP, Security.TLS): "imaps",
    (Protocol.POP3, Security.STARTTLS): "pop3",
    (Protocol.POP3, Security.TLS): "pop3s",
    (Protocol.SMTP, Security.STARTTLS): "submission",
    (Protocol.SMTP, Security.TLS): "submissions",
}
ALL_SLOTS = list(KEYS)
STARTTLS_SLOTS = [slot for slot in KEYS if slot[1] is Security.STARTTLS]
TLS_SLOTS = [slot for slot in KEYS if slot[1] is Security.TLS]


def slot_id(slot: tuple[Protocol, Security]) -> str:
    return KEYS[slot]


def run(
    slot,
    address,
    pki,
    *,
    behaviour=Behaviour.HEALTHY,
    cert=None,
    timeout=2.0,
    deadline=30.0,
    delay=0.0,
    host=HOST,
):
    protocol, security = slot
    key = KEYS[slot]
    _, port, implicit_tls = ENDPOINTS[key]
    cert = cert or pki.good([host])
    server = FakeMailServer(
        protocol.value,
        address,
        port,
        implicit_tls=implicit_tls,
        behaviour=behaviour,
        ssl_context=cert.server_context(),
        delay=delay,
        hostname=host,
    )
    with server:
        endpoint = Endpoint(protocol, host, port, security, ("test",))
        started = time.monotonic()
        result = probe_endpoint(
            endpoint,
            lambda _host, _deadline: [address],
            ProbeSettings(timeout=timeout, ca_file=str(pki.ca_pem_path)),
            Deadline(deadline),
        )
        return result, time.monotonic() - started, server


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_healthy_endpoint(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki)
    assert result.outcome is Outcome.OK, result.error
    assert result.failed_phase is None
    assert result.address == loopback_address
    assert result.tls is not None
    assert result.tls.trust is TrustStatus.TRUSTED and result.tls.hostname_matches
    assert result.tls.version in ("TLSv1.2", "TLSv1.3")
    assert result.capabilities_tls
    for phase in ("dns", "connect", "tls", "greeting", "capabilities_tls"):
        assert result.timings[phase] >= 0
    if slot[1] is Security.STARTTLS:
        assert result.starttls_offered is True
        assert result.plaintext_login_offered is False
        assert result.capabilities and "starttls" in result.timings
        assert result.starttls_injection is None  # the clean twin of the test below


INJECTED = {
    Protocol.IMAP: "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN]\r\n",
    Protocol.POP3: "+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
    Protocol.SMTP: f"250-{HOST}\r\n250 AUTH PLAIN LOGIN\r\n",
}


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_plaintext_behind_the_starttls_go_ahead_is_injection(slot, loopback_address, pki):
    result, _, server = run(slot, loopback_address, pki, behaviour=Behaviour.STARTTLS_INJECTION)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.failed_phase is Phase.STARTTLS
    assert result.starttls_injection == INJECTED[slot[0]]
    assert "after agreeing to start TLS" in (result.error or "")
    # The probe stops there: no handshake, nothing said inside TLS, no capabilities from it.
    assert result.tls is None and result.capabilities_tls == ()
    assert server.tls_handshakes == 0
    assert not any(c.tls for c in server.received)


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_starttls_missing(slot, loopback_address, pki):
    result, _, server = run(slot, loopback_address, pki, behaviour=Behaviour.NO_STARTTLS)
    assert result.outcome is Outcome.STARTTLS_MISSING
    assert result.starttls_offered is False
    assert result.tls is None
    assert not any(c.upper().startswith((b"STARTTLS", b"STLS")) for c in server.commands)


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_starttls_refused(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.STARTTLS_REFUSED)
    assert result.outcome is Outcome.STARTTLS_FAILED
    assert result.failed_phase is Phase.STARTTLS
    assert result.server_reply


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_plaintext_login_before_tls_is_detected(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.PLAINTEXT_LOGIN)
    assert result.outcome is Outcome.OK
    assert result.plaintext_login_offered is True


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_server_that_never_greets(slot, loopback_address, pki):
    result, elapsed, _ = run(
        slot, loopback_address, pki, behaviour=Behaviour.NEVER_GREET, timeout=0.5
    )
    assert result.outcome is Outcome.NO_GREETING
    assert result.failed_phase is Phase.GREETING
    assert elapsed < 5


@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_slow_greeting_within_the_timeout_is_fine(slot, loopback_address, pki):
    result, _, _ = run(
        slot, loopback_address, pki, behaviour=Behaviour.SLOW_GREETING, delay=0.3, timeout=3
    )
    assert result.outcome is Outcome.OK
    assert result.timings["greeting"] >= 0.25


@pytest.mark.parametrize("behaviour", [Behaviour.CLOSE_AFTER_GREETING, Behaviour.CLOSE_IMMEDIATELY])
@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_server_that_hangs_up(slot, behaviour, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=behaviour)
    assert result.outcome is Outcome.CLOSED
    expected = Phase.GREETING if behaviour is Behaviour.CLOSE_IMMEDIATELY else Phase.CAPABILITIES
    assert result.failed_phase is expected


@pytest.mark.parametrize("behaviour", [Behaviour.GARBAGE, Behaviour.BINARY])
@pytest.mark.parametrize("slot", STARTTLS_SLOTS, ids=slot_id)
def test_garbage_is_a_protocol_error(slot, behaviour, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=behaviour)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_ten_megabyte_line_is_refused_early(slot, loopback_address, pki):
    result, elapsed, _ = run(slot, loopback_address, pki, behaviour=Behaviour.HUGE_LINE, timeout=5)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "too long" in (result.error or "")
    assert elapsed < 5


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_split_replies_are_reassembled(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.SPLIT_REPLIES, timeout=5)
    assert result.outcome is Outcome.OK, result.error


def test_smtp_client_waits_for_the_banner(loopback_address, pki):
    slot = (Protocol.SMTP, Security.STARTTLS)
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.EARLY_TALKER_REJECT)
    assert result.outcome is Outcome.OK, result.error


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_temporary_refusal_is_throttling(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.THROTTLE)
    assert result.outcome is Outcome.THROTTLED
    assert result.server_reply


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_permanent_refusal_is_unavailable(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.UNAVAILABLE)
    assert result.outcome is Outcome.UNAVAILABLE
    assert result.server_reply


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=slot_id)
def test_tls_stall_is_bounded(slot, loopback_address, pki):
    result, elapsed, _ = run(
        slot, loopback_address, pki, behaviour=Behaviour.TLS_STALL, timeout=0.5
    )
    assert result.outcome is Outcome.STALLED
    assert result.failed_phase is Phase.TLS
    assert elapsed < 5


@pytest.mark.parametrize("slot", TLS_SLOTS, ids=slot_id)
def test_plaintext_on_an_implicit_tls_port(slot, loopback_address, pki):
    result, _, _ = run(slot, loopback_address, pki, behaviour=Behaviour.PLAINTEXT_ON_TLS_PORT)
    assert result.outcome is Outcome.TLS_FAILED
    assert "plaintext" in (result.error or "") or "tls" in (result.error or "").lower()


@pytest.mark.parametrize("slot", [ALL_SLOTS[1], ALL_SLOTS[4]], ids=slot_id)
def test_filtered_port_times_out(slot, loopback_address, pki):
    result, elapsed, _ = run(slot, loopback_address, pki, behaviour=Behaviour.FILTERED, timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT
    assert result.failed_phase is Phase.CONNECT
    assert elapsed < 5


def test_refused_port(loopback_address, pki):
    endpoint = Endpoint(Protocol.IMAP, HOST, 993, Security.TLS, ("test",))
    result = probe_endpoint(
        endpoint, lambda _h, _d: [loopback_address], ProbeSettings(timeout=1), Deadline(5)
    )
    assert result.outcome is Outcome.REFUSED
    assert result.failed_phase is Phase.CONNECT


def test_unresolvable_host(pki):
    from maildiag.dns import DnsLookupError

    def lookup(host, deadline):
        raise DnsLookupError(DnsFailure.NXDOMAIN, f"{host} does not exist", f"{host} A")

    endpoint = Endpoint(Protocol.IMAP, "nowhere.kunde.test", 993, Security.TLS, ("test",))
    result = probe_endpoint(endpoint, lookup, ProbeSettings(timeout=1), Deadline(5))
    assert result.outcome is Outcome.UNRESOLVED


def test_run_deadline_cuts_a_probe_short(loopback_address, pki):
    slot = (Protocol.IMAP, Security.TLS)
    result, elapsed, _ = run(
        slot, loopback_address, pki, behaviour=Behaviour.NEVER_GREET, timeout=30, deadline=0.7
    )
    assert result.outcome is Outcome.DEADLINE
    assert elapsed < 5


@pytest.mark.parametrize(
    ("maker", "trust"),
    [
        ("expired", TrustStatus.EXPIRED),
        ("self_signed", TrustStatus.SELF_SIGNED),
        ("missing_intermediate", TrustStatus.INCOMPLETE_CHAIN),
        ("untrusted_ca", TrustStatus.UNTRUSTED_ROOT),
        ("not_yet_valid", TrustStatus.NOT_YET_VALID),
    ],
)
@pytest.mark.parametrize("slot", [ALL_SLOTS[1], ALL_SLOTS[4]], ids=slot_id)
def test_broken_certificates_are_still_described(slot, maker, trust, loopback_address, pki):
    cert = getattr(pki, maker)([HOST])
    result, _, _ = run(slot, loopback_address, pki, cert=cert)
    assert result.outcome is Outcome.OK  # the service works; the certificate is the problem
    assert result.tls is not None and result.tls.trust is trust
    assert result.tls.leaf is not None and HOST in result.tls.leaf.sans


@pytest.mark.parametrize("slot", [ALL_SLOTS[0], ALL_SLOTS[3]], ids=slot_id)
def test_certificate_for_another_host(slot, loopback_address, pki):
    cert = pki.wrong_host(["web123.provider.test"])
    result, _, _ = run(slot, loopback_address, pki, cert=cert)
    assert result.tls is not None
    assert result.tls.hostname_matches is False
    assert result.tls.leaf.sans == ("web123.provider.test",)


def test_a_name_not_resolved_before_the_deadline_is_not_a_dns_verdict():
    from maildiag.dns import DnsLookupError

    endpoint = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS)

    def lookup_after_the_deadline(host, deadline):
        raise DnsLookupError(
            DnsFailure.TIMEOUT, "not asked: the run's deadline had already passed", host
        )

    result = probe_endpoint(endpoint, lookup_after_the_deadline, ProbeSettings(), Deadline(0))
    assert result.outcome is Outcome.DEADLINE

    def waiting_for_another_probe(host, deadline):
        raise TimeoutError  # AddressCache: another probe's lookup outlived the deadline

    result = probe_endpoint(endpoint, waiting_for_another_probe, ProbeSettings(), Deadline(5))
    assert result.outcome is Outcome.DEADLINE

    def no_such_name(host, deadline):  # the twin: a real DNS verdict
        raise DnsLookupError(DnsFailure.NXDOMAIN, "the name does not exist", host)

    result = probe_endpoint(endpoint, no_such_name, ProbeSettings(), Deadline(5))
    assert result.outcome is Outcome.UNRESOLVED
