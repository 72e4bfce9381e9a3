"""maildiag.tls against real TLS servers on loopback, each success with its failure twin."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from maildiag.model import TlsFacts, TrustStatus
from maildiag.tls import (
    analyse,
    certifi_bundle,
    client_context,
    describe_certificate,
    hostname_matches,
    load_trust_anchors,
    peer_chain_der,
)
from tests.lab.certs import ServerCert, TestPKI

_ADDRESSES = itertools.cycle(f"127.0.0.{n}" for n in range(60, 70))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@contextmanager
def tls_server(context: ssl.SSLContext, host: str | None = None) -> Iterator[tuple[str, int]]:
    """Accept connections and complete TLS handshakes until the block ends."""
    listener = socket.create_server((host or next(_ADDRESSES), 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # until the client hangs up
            except OSError:  # includes ssl.SSLError: a refused handshake is fine here
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def probe(
    cert: ServerCert | ssl.SSLContext,
    hostname: str,
    *,
    ca_file: str | Path | None = None,
    host: str | None = None,
    now: datetime.datetime | None = None,
) -> TlsFacts:
    """One probe as the transport does it: handshake without verification, then analyse."""
    context = cert if isinstance(cert, ssl.SSLContext) else cert.server_context()
    with tls_server(context, host) as address:
        with socket.create_connection(address, timeout=5) as raw:
            started = time.perf_counter()
            with client_context().wrap_socket(raw, server_hostname=hostname) as tls:
                seconds = time.perf_counter() - started
                cipher, _, bits = tls.cipher() or ("", "", None)
                version = tls.version() or ""
                chain = peer_chain_der(tls)
    return analyse(
        chain,
        hostname,
        version=version,
        cipher=cipher,
        cipher_bits=bits,
        handshake_seconds=seconds,
        ca_file=str(ca_file) if ca_file else None,
        now=now,
    )


# -- trust verdicts over real handshakes -------------------------------------


def test_good_chain_is_trusted_with_the_ca_file(pki: TestPKI) -> None:
    facts = probe(pki.good("mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.TRUSTED
    assert facts.trust_detail is None
    assert facts.hostname_matches
    assert len(facts.chain) == 2
    assert facts.chain[1].subject.startswith("OU=Test Intermediate CA")
    assert facts.leaf is not None and facts.leaf.sans == ("mail.example.test",)
    assert facts.days_remaining is not None and facts.days_remaining > 300
    assert facts.version in ("TLSv1.2", "TLSv1.3")
    assert facts.cipher and facts.cipher_bits and facts.handshake_seconds > 0


def test_good_chain_without_the_ca_file_ends_at_an_untrusted_root(pki: TestPKI) -> None:
    facts = probe(pki.good("mail.example.test"), "mail.example.test")
    assert facts.trust is TrustStatus.UNTRUSTED_ROOT
    assert facts.trust_detail is not None
    assert "OU=Test Root CA" in facts.trust_detail
    assert "not a trusted certificate authority" in facts.trust_detail
    assert facts.hostname_matches  # the name is right; only trust is missing


def test_missing_intermediate_is_an_incomplete_chain(pki: TestPKI) -> None:
    facts = probe(
        pki.missing_intermediate("mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert facts.trust is TrustStatus.INCOMPLETE_CHAIN
    assert len(facts.chain) == 1
    assert facts.trust_detail is not None
    assert "did not send the intermediate certificate" in facts.trust_detail
    assert "OU=Test Intermediate CA" in facts.trust_detail


def test_expired_certificate(pki: TestPKI) -> None:
    facts = probe(
        pki.expired("mail.example.test", days_ago=3), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert facts.trust is TrustStatus.EXPIRED
    assert facts.days_remaining is not None and -3.1 < facts.days_remaining < -2.9
    assert facts.trust_detail is not None and "expired on" in facts.trust_detail
    assert "(3 days ago)" in facts.trust_detail


def test_not_yet_valid_certificate(pki: TestPKI) -> None:
    facts = probe(
        pki.not_yet_valid("mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert facts.trust is TrustStatus.NOT_YET_VALID
    assert facts.trust_detail is not None and "not valid before" in facts.trust_detail


def test_certificate_expiring_in_five_days_is_still_trusted(pki: TestPKI) -> None:
    facts = probe(
        pki.expiring_in(5, "mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert facts.trust is TrustStatus.TRUSTED
    assert facts.days_remaining == pytest.approx(5, abs=0.01)


def test_self_signed_certificate(pki: TestPKI) -> None:
    cert = pki.self_signed("mail.example.test")
    facts = probe(cert, "mail.example.test", ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.SELF_SIGNED
    assert facts.trust_detail is not None and "CN=mail.example.test" in facts.trust_detail
    assert facts.leaf is not None and facts.leaf.self_issued
    assert facts.hostname_matches


def test_self_signed_certificate_in_the_ca_file_is_trusted(pki: TestPKI) -> None:
    cert = pki.self_signed("mail.example.test")
    facts = probe(cert, "mail.example.test", ca_file=cert.cert_path)
    assert facts.trust is TrustStatus.TRUSTED


def test_wrong_host_name(pki: TestPKI) -> None:
    facts = probe(
        pki.wrong_host("web123.provider.test"), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert not facts.hostname_matches
    assert facts.leaf is not None and facts.leaf.sans == ("web123.provider.test",)
    assert facts.leaf.common_name == "web123.provider.test"
    assert facts.trust is TrustStatus.TRUSTED  # the chain itself is fine


def test_right_host_name_is_the_twin_of_wrong_host(pki: TestPKI) -> None:
    facts = probe(
        pki.wrong_host("web123.provider.test"), "web123.provider.test", ca_file=pki.ca_pem_path
    )
    assert facts.hostname_matches


def test_chain_to_another_root(pki: TestPKI) -> None:
    cert = pki.untrusted_ca("mail.example.test")
    facts = probe(cert, "mail.example.test", ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.UNTRUSTED_ROOT
    assert facts.trust_detail is not None and "OU=Other Root CA" in facts.trust_detail
    # Twin: trusting that other root makes the same chain good.
    assert probe(cert, "mail.example.test", ca_file=cert.ca_path).trust is TrustStatus.TRUSTED


def test_chain_that_includes_an_untrusted_root(pki: TestPKI) -> None:
    facts = probe(
        pki.untrusted_ca("mail.example.test", send_root=True),
        "mail.example.test",
        ca_file=pki.ca_pem_path,
    )
    assert facts.trust is TrustStatus.UNTRUSTED_ROOT
    assert len(facts.chain) == 3
    assert facts.trust_detail is not None and "the chain ends at" in facts.trust_detail


def test_certificate_not_meant_for_servers_is_invalid(pki: TestPKI) -> None:
    facts = probe(
        pki.client_only("mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path
    )
    assert facts.trust is TrustStatus.INVALID
    assert facts.trust_detail is not None and "not meant for TLS servers" in facts.trust_detail


def test_leaf_without_authority_key_identifier_is_still_trusted(pki: TestPKI) -> None:
    # RFC 5280 §4.2.1.1 asks for the AKI, but mail clients build chains by
    # name; private CAs made with plain `openssl x509 -req` leave it out.
    issuer_key = serialization.load_pem_private_key(
        pki.intermediate.private_key_pem.bytes(), password=None
    )
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    intermediate = x509.load_pem_x509_certificate(pki.intermediate.cert_pem.bytes())
    leaf = _self_made(
        [x509.DNSName("mail.example.test")], issuer=intermediate.subject, signer=issuer_key
    )
    facts = _analyse(
        [leaf.public_bytes(Encoding.DER), intermediate.public_bytes(Encoding.DER)],
        ca_file=str(pki.ca_pem_path),
    )
    assert facts.trust is TrustStatus.TRUSTED
    assert facts.hostname_matches


def test_forged_signature_is_invalid(pki: TestPKI) -> None:
    facts = probe(pki.forged("mail.example.test"), "mail.example.test", ca_file=pki.ca_pem_path)
    assert facts.trust is TrustStatus.INVALID
    assert facts.trust_detail is not None and "signature" in facts.trust_detail


# -- host names ----------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["müller.test", "xn--mller-kva.test", "MÜLLER.test."])
def test_idn_host_name_matches_its_a_label(pki: TestPKI, hostname: str) -> None:
    facts = probe(pki.good("xn--mller-kva.test"), hostname, ca_file=pki.ca_pem_path)
    assert facts.hostname_matches
    assert facts.hostname == "müller.test"  # shown in Unicode
    assert facts.trust is TrustStatus.TRUSTED


def test_idn_certificate_does_not_match_the_plain_ascii_lookalike(pki: TestPKI) -> None:
    assert not hostname_matches(_der(pki.good("müller.test")), "muller.test")


def test_ip_address_san(pki: TestPKI) -> None:
    facts = probe(pki.good("127.0.0.61"), "127.0.0.61", ca_file=pki.ca_pem_path, host="127.0.0.61")
    assert facts.hostname_matches
    assert facts.leaf is not None and facts.leaf.sans == ("127.0.0.61",)
    assert facts.trust is TrustStatus.TRUSTED


def test_ip_address_must_be_an_ip_san(pki: TestPKI) -> None:
    cert = pki.good(["127.0.0.61", "mail.example.test"])
    assert not hostname_matches(_der(cert), "127.0.0.62")
    # An address is matched against iPAddress entries only (RFC 5280
    # §4.2.1.6), as OpenSSL does: a dNSName or CN spelling it does not count.
    dns_spelling = _self_made([x509.DNSName("127.0.0.63")], common_name="127.0.0.63")
    assert not hostname_matches(dns_spelling, "127.0.0.63")


def test_common_name_is_not_a_match_even_without_a_dns_san(pki: TestPKI) -> None:
    # RFC 9525 §6.3 (and Chrome, Thunderbird, Apple): the CN is never checked,
    # though RFC 6125 §6.4.4 still allowed it without a DNS-ID.
    facts = probe(
        pki.common_name_only("legacy.example.test"), "legacy.example.test", ca_file=pki.ca_pem_path
    )
    assert not facts.hostname_matches
    assert facts.leaf is not None and facts.leaf.sans == ()
    assert facts.trust is TrustStatus.TRUSTED


def test_common_name_is_ignored_when_there_is_a_dns_san(pki: TestPKI) -> None:
    # RFC 6125 §6.4.4: a DNS-ID present means the CN must not be checked.
    leaf = pki.intermediate.issue_cert("other.example.test", common_name="legacy.example.test")
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    assert not hostname_matches(der, "legacy.example.test")
    assert hostname_matches(der, "other.example.test")


@pytest.mark.parametrize(
    ("pattern", "hostname", "expected"),
    [
        ("*.example.org", "a.example.org", True),
        ("*.example.org", "A.Example.ORG", True),
        ("*.example.org", "a.example.org.", True),
        ("*.example.org", "a.b.example.org", False),  # one label only
        ("*.example.org", "example.org", False),  # the wildcard is not optional
        ("*.example.org", "*.example.org", False),  # a host name has no wildcard
        ("*.org", "example.org", False),  # not directly under a top-level domain
        ("w*.example.org", "www.example.org", False),  # only a whole left-most label
        ("a.*.example.org", "a.b.example.org", False),
        ("*.xn--mller-kva.test", "mx.müller.test", True),
        ("MAIL.Example.ORG", "mail.example.org", True),
    ],
)
def test_wildcard_rules(pattern: str, hostname: str, expected: bool) -> None:
    assert hostname_matches(_self_made([x509.DNSName(pattern)]), hostname) is expected


# Host-name matching stays ours rather than service_identity's (issue 10,
# item 7): the verdict has to be the one mail clients reach, and OpenSSL
# (X509_check_host, as Python's ssl calls it) and NSS (Thunderbird) let a
# whole-label "*" match an IDN A-label, where service_identity refuses
# ("*.example.org" against "xn--mller-kva.example.org"), which would report a
# mismatch that no client sees; and one malformed entry ("*.org") makes
# service_identity reject the whole certificate, where OpenSSL skips it and
# matches the next. Each case is therefore checked against
# OpenSSL itself in a real handshake (over memory BIOs, no network).

_NAME_CASES = [
    # (subjectAltName entries, or None for a certificate without one; reference; verdict)
    (["*.example.org"], "a.example.org", True),
    (["*.example.org"], "a.b.example.org", False),  # one label only
    (["*.example.org"], "example.org", False),  # the wildcard is not optional
    (["*.org"], "example.org", False),  # not directly under a top-level domain
    (["w*.example.org"], "www.example.org", False),  # no partial wildcards (RFC 9525 §6.3)
    (["*w.example.org"], "www.example.org", False),
    (["a.*.example.org"], "a.b.example.org", False),  # only the left-most label
    (["*.example.org"], "xn--mller-kva.example.org", True),  # a whole "*" covers an A-label
    (["*.xn--mller-kva.test"], "mx.xn--mller-kva.test", True),
    (["xn--mller-kva.test"], "müller.test", True),  # U-label reference, A-label SAN
    (["MAIL.Example.ORG"], "mail.example.org", True),
    (["127.0.0.1"], "127.0.0.1", True),  # iPAddress entry
    (["127.0.0.1"], "127.0.0.2", False),
    (["::1"], "::1", True),
    (["::1"], "::2", False),
    (["127.0.0.1"], "localhost", False),  # a DNS name never matches an iPAddress
    (["dns:127.0.0.63"], "127.0.0.63", False),  # an address never matches a dNSName
    (None, "legacy.example.test", False),  # CN only: no identifier (RFC 9525 §6.3)
    # A malformed entry names nothing, but spoils none of the others.
    (["*.org", "mail.example.org"], "mail.example.org", True),
    (["w*.w*.example.org", "mail.example.org"], "mail.example.org", True),
]


def _general_names(entries: list[str]) -> list[x509.GeneralName]:
    import ipaddress

    names: list[x509.GeneralName] = []
    for entry in entries:
        if entry.startswith("dns:"):
            names.append(x509.DNSName(entry[4:]))
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    return names


@pytest.fixture(scope="module")
def name_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maildiag name-matching CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf_for_names(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], sans: list[str] | None, cn: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(sans)), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _openssl_accepts(
    ca: x509.Certificate,
    leaf: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    hostname: str,
    tmp_path: Path,
    *,
    common_name_fallback: bool = False,
) -> bool:
    """Whether OpenSSL's own host-name check (check_hostname) accepts the leaf.

    Without the common-name fallback, as current mail clients check; OpenSSL
    (and so Python) still falls back to the CN by default when there is no
    subjectAltName.
    """
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(Encoding.PEM).decode())
    client_ctx.hostname_checks_common_name = common_name_fallback
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, outgoing, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                # Only a name verdict counts: X509_V_ERR_HOSTNAME_MISMATCH (62)
                # or X509_V_ERR_IP_ADDRESS_MISMATCH (64), not a chain problem.
                assert exc.verify_code in (62, 64), exc.verify_message
                return False
            except ssl.SSLError:
                if side is server:
                    return False  # the client's alert arrived: it refused
                raise
            if outgoing.pending:
                peer_in.write(outgoing.read())
        if client.cipher() is not None and not c_out.pending and not s_out.pending:
            try:
                client.do_handshake()
                return True
            except ssl.SSLWantReadError:
                pass
    raise AssertionError("the in-memory handshake did not finish")


@pytest.mark.parametrize(("sans", "hostname", "expected"), _NAME_CASES)
def test_name_matching_agrees_with_openssl(
    name_ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    tmp_path: Path,
    sans: list[str] | None,
    hostname: str,
    expected: bool,
) -> None:
    leaf, key = _leaf_for_names(name_ca, sans, cn=hostname if sans is None else "names.test")
    assert hostname_matches(leaf, hostname) is expected
    assert _openssl_accepts(name_ca[0], leaf, key, hostname, tmp_path) is expected
    if sans is None:
        # Why a CN-only certificate is its own finding (TLS_CERT_NO_SAN), not
        # a plain mismatch: clients split on it. OpenSSL's default still takes
        # the CN, Chrome, Thunderbird and Apple's clients refuse it.
        assert _openssl_accepts(
            name_ca[0], leaf, key, hostname, tmp_path, common_name_fallback=True
        )


def test_hostname_matches_accepts_der_and_rejects_garbage(pki: TestPKI) -> None:
    cert = pki.good("mail.example.test")
    assert hostname_matches(_der(cert), "mail.example.test")
    assert not hostname_matches(b"\x30\x03\x02\x01\x00", "mail.example.test")


# -- odd input -------------------------------------------------------------------


def _analyse(chain: list[bytes], **kwargs: object) -> TlsFacts:
    return analyse(
        chain,
        "mail.example.test",
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        cipher_bits=256,
        handshake_seconds=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


def test_garbage_certificate_is_invalid_not_an_exception(pki: TestPKI) -> None:
    facts = _analyse([b"not a certificate"])
    assert facts.trust is TrustStatus.INVALID
    assert facts.chain == ()
    assert facts.days_remaining is None and not facts.hostname_matches
    with pytest.raises(ValueError):
        describe_certificate(b"not a certificate")
    # Garbage after a good leaf: the leaf is still described.
    facts = _analyse(
        [_der(pki.good("mail.example.test")), b"\x30\x00"], ca_file=str(pki.ca_pem_path)
    )
    assert facts.trust is TrustStatus.INVALID
    assert len(facts.chain) == 1 and facts.hostname_matches
    assert facts.trust_detail is not None and "#2" in facts.trust_detail


def test_mutated_certificates_never_raise(pki: TestPKI) -> None:
    # Servers send arbitrary bytes; cryptography parses parts of a certificate
    # lazily and raises several exception types. Seeded, so failures repeat.
    chain = [
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates(pki.good("a.test").chain_path.read_bytes())
    ]
    rnd = random.Random(5280)
    for _ in range(1500):
        which = rnd.randrange(len(chain))
        mutated = bytearray(chain[which])
        for _ in range(rnd.randint(1, 3)):
            mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
        sent = list(chain)
        sent[which] = bytes(mutated)
        facts = _analyse(sent, ca_file=str(pki.ca_pem_path))
        assert isinstance(facts.trust, TrustStatus)
        hostname_matches(bytes(mutated), "a.test")


def test_no_certificate() -> None:
    facts = _analyse([])
    assert facts.trust is TrustStatus.NO_CERTIFICATE
    assert facts.leaf is None


def test_expiry_detail_is_worded_for_people(pki: TestPKI) -> None:
    der = _der(pki.good("mail.example.test"))
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    later = not_after + datetime.timedelta(days=322, hours=5)
    facts = _analyse([der], now=later)
    assert facts.trust is TrustStatus.EXPIRED
    assert facts.trust_detail == f"the certificate expired on {not_after:%Y-%m-%d} (322 days ago)"
    assert facts.days_remaining == pytest.approx(-(322 + 5 / 24))


def test_describe_certificate(pki: TestPKI) -> None:
    cert = pki.good(["mail.example.test", "127.0.0.64"])
    der = _der(cert)
    info = describe_certificate(der)
    assert info.subject == "CN=mail.example.test,OU=good,O=maildiag lab"
    assert info.issuer.startswith("OU=Test Intermediate CA")
    assert info.common_name == "mail.example.test"
    assert info.sans == ("mail.example.test", "127.0.0.64")
    assert info.key_description == "EC secp256r1"
    assert info.signature_algorithm == "ecdsa-with-SHA256"
    assert info.fingerprint_sha256.replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert not info.self_issued
    assert info.not_before.tzinfo is not None and info.not_before < info.not_after
    root = describe_certificate(
        x509.load_pem_x509_certificate(pki.root.cert_pem.bytes()).public_bytes(Encoding.DER)
    )
    assert root.self_issued and root.common_name is None and root.sans == ()


def test_bad_ca_file_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("no certificates here\n")
    with pytest.raises(ValueError, match="bogus.pem"):
        load_trust_anchors(str(bogus))
    with pytest.raises(OSError):
        load_trust_anchors(str(tmp_path / "missing.pem"))


# -- the handshake ---------------------------------------------------------------


def test_tls_versions_are_reported(pki: TestPKI) -> None:
    cert = pki.good("mail.example.test")
    assert probe(cert, "mail.example.test").version == "TLSv1.3"
    tls12 = cert.server_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    assert probe(tls12, "mail.example.test").version == "TLSv1.2"


def test_tls_versions_below_1_2_are_negotiated_to_be_reported(pki: TestPKI) -> None:
    reason = pki.legacy_tls_unsupported()
    if reason:
        pytest.skip(reason)
    cert = pki.good("mail.example.test")
    facts = probe(cert.legacy_server_context(), "mail.example.test", ca_file=pki.ca_pem_path)
    assert facts.version in ("TLSv1", "TLSv1.1")
    assert facts.trust is TrustStatus.TRUSTED


def test_peer_chain_der_works_on_an_ssl_object(pki: TestPKI) -> None:
    cert = pki.good("mail.example.test")
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context().wrap_bio(client_in, client_out, server_hostname="mail.example.test")
    server = cert.server_context().wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for obj in (client, server):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    chain = peer_chain_der(client)
    sent = x509.load_pem_x509_certificates(cert.chain_path.read_bytes())
    assert chain == [c.public_bytes(Encoding.DER) for c in sent]
    assert len(chain) == 2


def test_import_does_not_load_cryptography() -> None:
    code = "import sys, maildiag.tls; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- helpers -----------------------------------------------------------------------


def _der(cert: ServerCert) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_path.read_bytes()).public_bytes(Encoding.DER)


def _self_made(
    sans: list[x509.GeneralName],
    common_name: str | None = None,
    *,
    issuer: x509.Name | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A bare certificate (no AKI, no key usage) to exercise name matching."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or "names.test")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(signer or key, hashes.SHA256())
    )


# -- verdicts reused across probes of one server ------------------------------


def _chain(cert: ServerCert) -> list[bytes]:
    return [
        c.public_bytes(Encoding.DER)
        for c in x509.load_pem_x509_certificates(cert.chain_path.read_bytes())
    ]


def _judge(
    chain: list[bytes],
    hostname: str,
    now: datetime.datetime,
    *,
    ca_file: Path | None,
    **handshake: object,
) -> TlsFacts:
    facts: dict[str, object] = {
        "version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "cipher_bits": 256,
        "handshake_seconds": 0.01,
        **handshake,
    }
    return analyse(chain, hostname, ca_file=str(ca_file) if ca_file else None, now=now, **facts)  # type: ignore[arg-type]


def test_a_chain_seen_again_reuses_the_verdict_but_not_the_handshake_facts(pki: TestPKI) -> None:
    chain = _chain(pki.expiring_in(40, "reuse.example.test"))
    now = datetime.datetime.now(datetime.UTC)
    first = _judge(chain, "reuse.example.test", now, ca_file=pki.ca_pem_path)
    later = now + datetime.timedelta(seconds=30)
    second = _judge(
        chain,
        "reuse.example.test",
        later,
        ca_file=pki.ca_pem_path,
        version="TLSv1.2",
        cipher_bits=128,
        handshake_seconds=0.5,
    )
    assert second.chain is first.chain  # not parsed and verified again
    assert (second.trust, second.hostname_matches) == (TrustStatus.TRUSTED, True)
    assert (second.version, second.cipher_bits, second.handshake_seconds) == ("TLSv1.2", 128, 0.5)
    assert first.days_remaining is not None and second.days_remaining is not None
    assert first.days_remaining - second.days_remaining == pytest.approx(30 / 86400)
    # Another host name or CA file is judged on its own.
    other_name = _judge(chain, "other.example.test", later, ca_file=pki.ca_pem_path)
    assert other_name.chain is not first.chain and not other_name.hostname_matches
    assert _judge(chain, "reuse.example.test", later, ca_file=None).trust is (
        TrustStatus.UNTRUSTED_ROOT
    )


def test_a_reused_verdict_ends_when_a_certificate_expires_in_between(pki: TestPKI) -> None:
    chain = _chain(pki.expiring_in(1 / 86400 * 60, "expiring.example.test"))  # in a minute
    now = datetime.datetime.now(datetime.UTC)
    before = _judge(chain, "expiring.example.test", now, ca_file=pki.ca_pem_path)
    assert before.trust is TrustStatus.TRUSTED and before.leaf is not None
    # Within the five minutes a verdict may be kept, but past the leaf's not_after.
    after = before.leaf.not_after + datetime.timedelta(seconds=1)
    assert (after - now).total_seconds() < 300
    expired = _judge(chain, "expiring.example.test", after, ca_file=pki.ca_pem_path)
    assert expired.trust is TrustStatus.EXPIRED
    assert expired.days_remaining is not None and expired.days_remaining < 0


def test_a_verdict_is_not_reused_after_five_minutes_or_when_the_clock_goes_back(
    pki: TestPKI,
) -> None:
    chain = _chain(pki.good("aging.example.test"))
    now = datetime.datetime.now(datetime.UTC)
    first = _judge(chain, "aging.example.test", now, ca_file=pki.ca_pem_path)
    for moment in (now + datetime.timedelta(minutes=6), now - datetime.timedelta(seconds=1)):
        again = _judge(chain, "aging.example.test", moment, ca_file=pki.ca_pem_path)
        assert again.chain is not first.chain and again.trust is TrustStatus.TRUSTED


def test_certifi_bundle_is_the_file_certifi_names() -> None:
    import certifi

    assert certifi_bundle() == certifi.where()


def test_certifi_bundle_asks_certifi_when_the_package_has_no_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Debian, whose certifi points at the system store instead.
    import importlib.machinery
    import importlib.util

    import certifi

    package = tmp_path / "certifi"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: importlib.machinery.ModuleSpec(
            name, None, origin=str(package / "__init__.py")
        ),
    )
    monkeypatch.setattr(certifi, "where", lambda: "/etc/ssl/certs/ca-certificates.crt")
    assert certifi_bundle() == "/etc/ssl/certs/ca-certificates.crt"
