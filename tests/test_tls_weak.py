"""Certificates current clients refuse although a chain to a trusted root exists.

Issue #11: a common-name-only certificate, a weak key and a SHA-1/MD5
signature were accepted or misreported ("signature does not verify"), and
an incomplete chain was always "only some clients". Each case runs a real
TLS handshake on loopback (see tests/test_tls.py) and then the analysis,
next to its healthy twin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from maildiag import i18n
from maildiag.analysis import analyse as analyse_results
from maildiag.model import (
    Discovery,
    Endpoint,
    Finding,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Severity,
    TlsFacts,
    TrustStatus,
)
from maildiag.tls import analyse
from tests.lab.certs import ServerCert, TestPKI
from tests.test_tls import probe

HOST = "mail.example.test"
ENDPOINT = Endpoint(Protocol.IMAP, HOST, 993, Security.TLS, ("srv:_imaps._tcp",))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki-weak"))


def findings(facts: TlsFacts) -> dict[str, Finding]:
    discovery = Discovery("example.test", "example.test", True, endpoints=(ENDPOINT,))
    result = ProbeResult(ENDPOINT, Outcome.OK, timings={"connect": 0.001}, tls=facts)
    # Only what concerns the endpoint (the rest of the domain is not set up).
    return {f.code: f for f in analyse_results(discovery, [result]) if f.endpoint == ENDPOINT}


def facts_of_files(cert: ServerCert, ca_file: Path) -> TlsFacts:
    """The verdict on a chain as the server would send it, without a handshake.

    For keys TLS 1.3 cannot use at all (P-192, DSA), so no handshake with
    them can be negotiated here.
    """
    chain = [
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates(cert.chain_path.read_bytes())
    ]
    return analyse(
        chain,
        HOST,
        version="TLSv1.2",
        cipher="ECDHE-RSA-AES128-GCM-SHA256",
        cipher_bits=128,
        handshake_seconds=0.01,
        ca_file=str(ca_file),
    )


# -- subjectAltName --------------------------------------------------------------


def test_common_name_only_certificate_does_not_match_and_gets_its_own_finding(
    pki: TestPKI,
) -> None:
    facts = probe(pki.common_name_only(HOST), HOST, ca_file=pki.ca_pem_path)
    assert facts.leaf is not None and facts.leaf.sans == () and facts.leaf.common_name == HOST
    # RFC 9525 §6.3: the CN is never a match any more, as in current clients.
    assert not facts.hostname_matches
    found = findings(facts)
    no_san = found["TLS_CERT_NO_SAN"]
    assert no_san.severity is Severity.CRITICAL
    assert HOST in no_san.explanation and "subjectAltName" in no_san.explanation
    assert f"DNS:{HOST}" in no_san.fix
    # Not a mismatch that tells the customer to use the CN: that fails too.
    assert "TLS_HOSTNAME_MISMATCH" not in found
    assert "ENDPOINT_OK" not in found


def test_certificate_with_a_dns_san_is_the_healthy_twin(pki: TestPKI) -> None:
    facts = probe(pki.good(HOST), HOST, ca_file=pki.ca_pem_path)
    assert facts.hostname_matches
    assert set(findings(facts)) == {"ENDPOINT_OK"}


# -- key strength -------------------------------------------------------------------


def test_rsa_1024_key_is_weak_although_the_chain_verifies(pki: TestPKI) -> None:
    facts = probe(pki.weak_key(HOST, key="rsa1024"), HOST, ca_file=pki.ca_pem_path)
    assert facts.leaf is not None
    assert (facts.leaf.key_type, facts.leaf.key_bits) == ("RSA", 1024)
    found = findings(facts)
    weak = found["TLS_KEY_WEAK"]
    assert weak.severity is Severity.CRITICAL
    assert "RSA 1024" in weak.explanation and "2048" in weak.explanation
    assert "ENDPOINT_OK" not in found


def test_rsa_2048_key_is_the_healthy_twin(pki: TestPKI) -> None:
    facts = probe(pki.weak_key(HOST, key="rsa2048"), HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.TRUSTED
    assert set(findings(facts)) == {"ENDPOINT_OK"}


@pytest.mark.parametrize(("key", "shown"), [("ec192", "EC secp192r1"), ("dsa2048", "DSA 2048")])
def test_small_curve_and_dsa_keys_are_weak(pki: TestPKI, key: str, shown: str) -> None:
    facts = facts_of_files(pki.weak_key(HOST, key=key), pki.ca_pem_path)
    weak = findings(facts)["TLS_KEY_WEAK"]
    assert shown in weak.explanation


# -- signature hash ------------------------------------------------------------------


@pytest.mark.parametrize(("digest", "name"), [("sha1", "SHA-1"), ("md5", "MD5")])
@pytest.mark.parametrize("where", ["leaf", "intermediate"])
def test_weak_signature_is_named_not_reported_as_not_verifying(
    pki: TestPKI, digest: str, name: str, where: str
) -> None:
    cert = pki.weak_signature(HOST, digest=digest, where=where)
    facts = probe(cert, HOST, ca_file=cert.ca_path)
    assert facts.trust is TrustStatus.INVALID
    assert facts.rejected_as_weak
    assert facts.trust_detail is not None
    assert f"signed with {name}" in facts.trust_detail
    assert "does not verify" not in facts.trust_detail
    found = findings(facts)
    weak = found["TLS_SIGNATURE_WEAK"]
    assert weak.severity is Severity.CRITICAL
    assert name in weak.explanation
    assert ("its certificate" if where == "leaf" else "the intermediate") in weak.explanation
    german = i18n.localise(weak, "de").explanation
    assert ("das Serverzertifikat" if where == "leaf" else "das Zwischenzertifikat") in german
    assert f"signiert mit {name}" in german and "signed" not in german
    assert "TLS_CERT_INVALID" not in found


def test_sha256_signature_from_the_same_rsa_chain_is_the_healthy_twin(pki: TestPKI) -> None:
    cert = pki.weak_signature(HOST, digest="sha256")
    facts = probe(cert, HOST, ca_file=cert.ca_path)
    assert facts.trust is TrustStatus.TRUSTED and not facts.rejected_as_weak
    assert set(findings(facts)) == {"ENDPOINT_OK"}


def test_weak_signature_without_the_root_is_still_untrusted(pki: TestPKI) -> None:
    # Weakness does not hide the other reasons: the chain's root is unknown.
    cert = pki.weak_signature(HOST, digest="sha1")
    facts = probe(cert, HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.UNTRUSTED_ROOT
    assert {"TLS_SIGNATURE_WEAK", "TLS_CERT_UNTRUSTED"} <= set(findings(facts))


def test_forged_signature_is_still_reported_as_not_verifying(pki: TestPKI) -> None:
    facts = probe(pki.forged(HOST), HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.INVALID and not facts.rejected_as_weak
    found = findings(facts)
    assert "TLS_CERT_INVALID" in found and "TLS_SIGNATURE_WEAK" not in found


# -- incomplete chain -------------------------------------------------------------------


def test_incomplete_chain_without_aia_is_critical(pki: TestPKI) -> None:
    facts = probe(pki.missing_intermediate(HOST), HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.INCOMPLETE_CHAIN
    assert facts.leaf is not None and facts.leaf.ca_issuers == ()
    finding = findings(facts)["TLS_CHAIN_INCOMPLETE"]
    assert finding.severity is Severity.CRITICAL
    assert "no client can fetch" in finding.explanation
    assert "some customers" not in finding.explanation
    assert finding.details["ca_issuers"] == []


def test_incomplete_chain_with_aia_is_a_warning_naming_the_url(pki: TestPKI) -> None:
    url = "http://ca.example.test/intermediate.crt"
    facts = probe(pki.missing_intermediate_with_aia(HOST, url), HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.INCOMPLETE_CHAIN
    assert facts.leaf is not None and facts.leaf.ca_issuers == (url,)
    finding = findings(facts)["TLS_CHAIN_INCOMPLETE"]
    assert finding.severity is Severity.WARNING
    assert url in finding.explanation and "only some customers" in finding.explanation
    assert "{" not in finding.explanation


def test_complete_chain_with_aia_is_the_healthy_twin(pki: TestPKI) -> None:
    facts = probe(pki.good(HOST), HOST, ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.TRUSTED
    assert "TLS_CHAIN_INCOMPLETE" not in findings(facts)
