"""Issue #11: what a TLS port's failure really means, against scriptable fake servers.

- plaintext where a ServerHello belongs: a greeting (the port speaks plaintext,
  TLS_PORT_SPEAKS_PLAINTEXT) or a refusal before TLS (Exim's 421 on 465:
  throttling), never "check certificate and key";
- a submission endpoint without AUTH after TLS is found without credentials;
- a server limited to TLS 1.0/1.1 is critical, whether the client negotiates
  the old version or refuses it.

Each fault has its healthy twin on the same slot.
"""

from __future__ import annotations

import ssl
import warnings

import pytest

from maildiag import i18n
from maildiag.analysis import analyse
from maildiag.deadline import Deadline
from maildiag.model import Discovery, Endpoint, Outcome, Protocol, Security, TlsFailure
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from maildiag.transport import Connection, PlaintextInsteadOfTls, TlsHandshakeError
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailServer

HOST = "mail.kunde.test"
TLS_SLOTS = {"imaps": Protocol.IMAP, "pop3s": Protocol.POP3, "submissions": Protocol.SMTP}
SUBMISSION_SLOTS = {"submission": Security.STARTTLS, "submissions": Security.TLS}


def _probe(key, protocol, security, address, pki, *, behaviour=Behaviour.HEALTHY, context=None):
    _, port, implicit_tls = ENDPOINTS[key]
    cert = pki.good([HOST])
    server = FakeMailServer(
        protocol.value,
        address,
        port,
        implicit_tls=implicit_tls,
        behaviour=behaviour,
        ssl_context=context or cert.server_context(),
        hostname=HOST,
    )
    with server:
        endpoint = Endpoint(protocol, HOST, port, security, ("srv:test",))
        return probe_endpoint(
            endpoint,
            lambda _host, _deadline: [address],
            ProbeSettings(timeout=2.0, ca_file=str(pki.ca_pem_path)),
            Deadline(20),
        )


def _findings(result):
    discovery = Discovery("kunde.test", "kunde.test", True, endpoints=(result.endpoint,))
    return {f.code: f for f in analyse(discovery, [result])}


# -- plaintext on an implicit-TLS port ------------------------------------------------


@pytest.mark.parametrize("key", TLS_SLOTS)
def test_plaintext_greeting_on_a_tls_port_says_so(key, loopback_address, pki):
    protocol = TLS_SLOTS[key]
    result = _probe(
        key,
        protocol,
        Security.TLS,
        loopback_address,
        pki,
        behaviour=Behaviour.PLAINTEXT_ON_TLS_PORT,
    )
    assert result.outcome is Outcome.TLS_FAILED
    assert result.tls_failure is TlsFailure.PLAINTEXT
    assert result.greeting  # read whole, with the protocol's own parser
    findings = _findings(result)
    assert "TLS_HANDSHAKE_FAILED" not in findings
    finding = findings["TLS_PORT_SPEAKS_PLAINTEXT"]
    assert finding.severity == "critical"
    assert result.greeting in finding.explanation
    assert "STARTTLS" in finding.fix
    german = i18n.localise(finding, "de").explanation
    assert "(SSL/TLS vom ersten Byte an)" in german and "implicit" not in german
    if protocol is Protocol.SMTP:
        assert "not SMTPS" in finding.explanation
        assert "tls_on_connect_ports" in finding.fix and "smtpd_tls_wrappermode" in finding.fix
    else:
        assert "ssl = yes" in finding.fix


@pytest.mark.parametrize("key", TLS_SLOTS)
def test_healthy_tls_port_twin(key, loopback_address, pki):
    result = _probe(key, TLS_SLOTS[key], Security.TLS, loopback_address, pki)
    assert result.outcome is Outcome.OK, result.error
    assert result.tls_failure is None
    assert "ENDPOINT_OK" in _findings(result)


@pytest.mark.parametrize("key", TLS_SLOTS)
def test_refusal_in_plaintext_before_tls_is_throttling(key, loopback_address, pki):
    protocol = TLS_SLOTS[key]
    result = _probe(
        key, protocol, Security.TLS, loopback_address, pki, behaviour=Behaviour.THROTTLE_BEFORE_TLS
    )
    assert result.outcome is Outcome.THROTTLED, result.error
    assert result.server_reply and "oo many" in result.server_reply
    findings = _findings(result)
    assert "TLS_HANDSHAKE_FAILED" not in findings
    assert "TLS_PORT_SPEAKS_PLAINTEXT" not in findings
    code = "SMTP_THROTTLED" if protocol is Protocol.SMTP else "SERVER_THROTTLED"
    assert findings[code].severity == "warning"
    assert result.server_reply in findings[code].explanation


@pytest.mark.parametrize("key", TLS_SLOTS)
def test_refusal_inside_tls_twin_is_throttling_too(key, loopback_address, pki):
    result = _probe(
        key, TLS_SLOTS[key], Security.TLS, loopback_address, pki, behaviour=Behaviour.THROTTLE
    )
    assert result.outcome is Outcome.THROTTLED
    assert result.tls is not None  # this one came after a real handshake


def test_plaintext_reply_is_kept_for_the_parser(loopback_address):
    # The bytes that arrive instead of a ServerHello are not eaten by OpenSSL:
    # the next receive() returns them whole, even when they arrived before
    # the ClientHello left (the fake server greets on accept).
    import socket
    import threading

    reply = b"421 mail.kunde.test Too many concurrent SMTP connections; try later.\r\n"
    with socket.socket() as listener:
        listener.bind((loopback_address, 0))
        listener.listen()

        def serve():
            peer, _ = listener.accept()
            with peer:
                peer.sendall(reply)
                peer.recv(4096)

        thread = threading.Thread(target=serve)
        thread.start()
        conn = Connection.open(*listener.getsockname(), timeout=2, deadline=Deadline(10))
        try:
            with pytest.raises(PlaintextInsteadOfTls):
                conn.start_tls(ssl.create_default_context(), "mail.kunde.test")
            received = bytearray()
            line = conn.receive(
                lambda: bytes(received) if received.endswith(b"\n") else None, received.extend
            )
            assert line == reply
        finally:
            conn.close()
            thread.join(5)


# -- submission without AUTH -----------------------------------------------------------


@pytest.mark.parametrize("key", SUBMISSION_SLOTS)
def test_submission_without_auth_is_found_without_credentials(key, loopback_address, pki):
    result = _probe(
        key,
        Protocol.SMTP,
        SUBMISSION_SLOTS[key],
        loopback_address,
        pki,
        behaviour=Behaviour.NO_LOGIN_MECHANISM,
    )
    assert result.outcome is Outcome.OK
    findings = _findings(result)
    finding = findings["SUBMISSION_NO_AUTH"]
    assert finding.severity == "critical"
    assert "smtpd_sasl_auth_enable=yes" in finding.fix and "authenticators" in finding.fix
    assert "ENDPOINT_OK" not in findings


@pytest.mark.parametrize("key", SUBMISSION_SLOTS)
def test_submission_with_auth_twin(key, loopback_address, pki):
    result = _probe(key, Protocol.SMTP, SUBMISSION_SLOTS[key], loopback_address, pki)
    findings = _findings(result)
    assert "SUBMISSION_NO_AUTH" not in findings
    assert "ENDPOINT_OK" in findings


# -- TLS 1.0/1.1 only ---------------------------------------------------------------------


def _legacy_context(cert, *, seclevel0: bool):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if seclevel0:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(cert.chain_path, cert.key_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def test_tls_1_0_1_1_only_server_is_critical(loopback_address, pki):
    reason = pki.legacy_tls_unsupported()
    if reason:
        pytest.skip(reason)
    cert = pki.good([HOST])
    result = _probe(
        "imaps",
        Protocol.IMAP,
        Security.TLS,
        loopback_address,
        pki,
        context=_legacy_context(cert, seclevel0=True),
    )
    assert result.outcome is Outcome.OK
    assert result.tls is not None and result.tls.version in ("TLSv1", "TLSv1.1")
    finding = _findings(result)["TLS_PROTOCOL_OUTDATED"]
    assert finding.severity == "critical"
    assert "ssl_min_protocol = TLSv1.2" in finding.fix
    assert "smtpd_tls_mandatory_protocols" in finding.fix


def test_client_refusing_tls_1_0_sees_an_outdated_server_not_a_generic_failure(
    loopback_address, pki
):
    # A client whose OpenSSL refuses TLS 1.0/1.1 (OpenSSL 3's default security
    # level, or a build without them) fails the handshake with "unsupported
    # protocol": the server has nothing newer, which is what to report.
    reason = pki.legacy_tls_unsupported()
    if reason:
        pytest.skip(reason)
    cert = pki.good([HOST])
    _, port, _ = ENDPOINTS["imaps"]
    server = FakeMailServer(
        "imap",
        loopback_address,
        port,
        implicit_tls=True,
        ssl_context=_legacy_context(cert, seclevel0=True),
        hostname=HOST,
    )
    with server:
        conn = Connection.open(loopback_address, port, timeout=2, deadline=Deadline(10))
        try:
            with pytest.raises(TlsHandshakeError) as raised:
                conn.start_tls(ssl.create_default_context(cafile=pki.ca_pem_path), HOST)
        finally:
            conn.close()
    assert raised.value.reason is TlsFailure.OUTDATED_PROTOCOL


def test_server_answering_with_a_protocol_version_alert_is_outdated_not_generic(
    loopback_address, pki
):
    # A server capped at TLS 1.1 whose OpenSSL also refuses 1.0/1.1 (Python's
    # default minimum is 1.2) answers every ClientHello with a protocol_version
    # alert. maildiag offered 1.0 to 1.3, so the server has nothing usable.
    cert = pki.good([HOST])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.chain_path, cert.key_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    result = _probe(
        "submissions", Protocol.SMTP, Security.TLS, loopback_address, pki, context=context
    )
    assert result.outcome is Outcome.TLS_FAILED
    assert result.tls_failure is TlsFailure.OUTDATED_PROTOCOL
    findings = _findings(result)
    assert "TLS_HANDSHAKE_FAILED" not in findings
    assert findings["TLS_PROTOCOL_OUTDATED"].severity == "critical"


def test_tls_1_2_and_newer_twin_is_not_outdated(loopback_address, pki):
    result = _probe("imaps", Protocol.IMAP, Security.TLS, loopback_address, pki)
    assert result.tls is not None and result.tls.version in ("TLSv1.2", "TLSv1.3")
    assert "TLS_PROTOCOL_OUTDATED" not in _findings(result)
