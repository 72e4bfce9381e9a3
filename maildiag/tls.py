"""Certificate facts: the chain a server sent, its trust, host name and expiry.

The transport does one handshake per endpoint with verification turned off
(see `client_context`), so the probe can always finish the handshake, talk
the protocol and report on a broken certificate. This module then judges the
chain the server sent, without any I/O: `analyse` turns DER bytes into a
`TlsFacts`.

Trust is decided by `cryptography.x509.verification` against certifi's roots
plus an optional CA file. The verdict, in order of precedence:

* NO_CERTIFICATE   the server sent nothing.
* EXPIRED / NOT_YET_VALID   the leaf is outside its validity period.
* SELF_SIGNED      the leaf issued itself and is not a trust anchor itself.
* TRUSTED          a path from the leaf to a trust anchor verifies.
* otherwise the chain the server sent is followed from the leaf, issuer by
  issuer, up to its top certificate:
  - INVALID        the top (or its issuer) is trusted, so the chain failed for
                   another reason: a signature, a key usage, an expired
                   intermediate, a weak key.
  - UNTRUSTED_ROOT the top is a self-issued root nobody here trusts, or the
                   top is an intermediate the server sent whose issuer is
                   unknown (servers don't send roots, so the missing
                   certificate is a root we don't trust).
  - INCOMPLETE_CHAIN the server sent only its own certificate and its issuer
                   is unknown. Public CAs never sign server certificates with
                   a root key, so the missing certificate is an intermediate.
                   A private CA that signs leaves directly also lands here:
                   without its certificate the two cases look the same.

cryptography is imported inside the functions that need it, so that
`import maildiag.tls` stays cheap for the CLI's start-up.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import ssl
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from msgspec import Struct
from msgspec.structs import replace

from maildiag.model import CertificateInfo, TlsFacts, TrustStatus

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.x509.verification import ClientVerifier, Policy, Store

__all__ = [
    "TrustAnchors",
    "analyse",
    "certifi_bundle",
    "client_context",
    "describe_certificate",
    "display_hostname",
    "hostname_matches",
    "load_trust_anchors",
    "peer_chain_der",
    "read_ca_file",
]

# OpenSSL's SSL_OP_LEGACY_SERVER_CONNECT; the ssl module only names it from 3.12.
_OP_LEGACY_SERVER_CONNECT = 0x4

_ENCODING_DER = 2  # _ssl.ENCODING_DER, for the items of get_unverified_chain()


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The context for probe handshakes: it never refuses a certificate.

    It negotiates anything the server offers, down to TLS 1.0 and weak
    ciphers, so that old servers can be reported on instead of failing with a
    handshake error. Verification happens afterwards, in `analyse`.

    One context serves every probe of the process: building one costs about
    as much CPU as the client's side of a handshake, and an SSLContext may be
    shared between threads. Sharing resumes no sessions (Python resumes only
    when asked to), so every probe still receives the server's full chain.

    `ca_file` is accepted for symmetry with `analyse` but not loaded: with
    CERT_NONE OpenSSL would never use it, and a bad file must not break the
    handshake of every probe. Check it once, up front, with `read_ca_file`.
    """
    global _shared_client_context
    with _client_context_lock:
        if _shared_client_context is None:
            _shared_client_context = _new_client_context()
        return _shared_client_context


_client_context_lock = threading.Lock()
_shared_client_context: ssl.SSLContext | None = None


def _new_client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Python warns that TLS 1.0 is deprecated: we allow it only to report it.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    # OpenSSL 3 on Debian defaults to SECLEVEL=2, which refuses TLS 1.0/1.1
    # (they sign the handshake with SHA-1) and small DH/RSA keys.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    # OpenSSL 3 refuses servers without RFC 5746 secure renegotiation
    # ("unsafe legacy renegotiation disabled"); old mail servers still exist.
    context.options |= _OP_LEGACY_SERVER_CONNECT
    return context


def peer_chain_der(sock: ssl.SSLSocket | ssl.SSLObject) -> list[bytes]:
    """The certificates exactly as the server sent them, leaf first."""
    getter = getattr(sock, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        getter = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    chain = None
    if getter is not None:
        try:
            chain = getter()
        except (AttributeError, ValueError, ssl.SSLError):
            chain = None
    if chain:
        return [
            item if isinstance(item, bytes) else item.public_bytes(_ENCODING_DER) for item in chain
        ]
    # A resumed TLS session may carry no chain: the leaf is still known.
    leaf = sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


# -- describing certificates -------------------------------------------------


def describe_certificate(der: bytes) -> CertificateInfo:
    """What a certificate says. Raises ValueError only if it can't be parsed."""
    with _quiet_cryptography():
        return _describe(_load_certificate(der), der)


@contextmanager
def _quiet_cryptography() -> Iterator[None]:
    """Silence cryptography's warnings about what a server sent.

    A serial number that isn't positive (RFC 5280 §4.1.2.2) or a country
    name that isn't two letters makes cryptography warn, on stderr, each
    time it parses the certificate. We describe the certificate instead; no
    probe prints anything. (catch_warnings isn't thread-safe: at worst, these
    two warnings stay silenced for the rest of the process.)
    """
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _load_certificate(der: bytes) -> x509.Certificate:
    """Parse DER, including the parts cryptography parses lazily that we rely on.

    Raises ValueError for anything that isn't a certificate we can reason about.
    """
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        # Names and validity are decoded on first access; fail here, not later.
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (x509.InvalidVersion, KeyError, TypeError) as exc:
        raise ValueError(f"not a readable certificate: {exc!r}") from exc
    return cert


def _describe(cert: x509.Certificate, der: bytes) -> CertificateInfo:
    import hashlib

    digest = hashlib.sha256(der).hexdigest().upper()
    serial = cert.serial_number
    common_names = _common_names(cert)
    key_type, key_bits = _key_size(cert)
    return CertificateInfo(
        subject=_name_string(cert, "subject"),
        issuer=_name_string(cert, "issuer"),
        # RFC 2818 §3.1: of several CNs, the last is the "most specific" one.
        common_name=common_names[-1] if common_names else None,
        sans=_san_strings(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=("-" if serial < 0 else "") + _hex(abs(serial)),
        fingerprint_sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        self_issued=_self_issued(cert),
        key_description=_key_description(cert),
        signature_algorithm=_signature_algorithm(cert),
        key_type=key_type,
        key_bits=key_bits,
        signature_hash=_signature_hash(cert),
        ca_issuers=_ca_issuers(cert),
    )


def _hex(value: int) -> str:
    text = format(value, "X")
    return text if len(text) % 2 == 0 else "0" + text


def _name_string(cert: x509.Certificate, which: str) -> str:
    try:
        return str(getattr(cert, which).rfc4514_string())
    except (ValueError, KeyError):  # an attribute value cryptography can't decode
        return "(unreadable name)"


def _common_names(cert: x509.Certificate) -> list[str]:
    from cryptography.x509.oid import NameOID

    try:
        attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [a.value for a in attributes if isinstance(a.value, str)]
    except (ValueError, KeyError):
        return []


_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _san_names(cert: x509.Certificate) -> tuple[list[str], list[_Address]] | None:
    """(dNSNames, iPAddresses) of the subjectAltName; None if there is none.

    Raises ValueError if the certificate's extensions can't be parsed.
    """
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ValueError(str(exc)) from exc
    dns = list(san.get_values_for_type(x509.DNSName))
    # iPAddress may also hold a network (the syntax of name constraints).
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, _Address)]
    return dns, ips


def _san_strings(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        names = _san_names(cert)
    except ValueError:  # duplicate or malformed extensions: describe the rest
        return ()
    return tuple(names[0] + [str(ip) for ip in names[1]]) if names else ()


def _self_issued(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.subject == cert.issuer)
    except ValueError:
        return False


def _key_description(cert: x509.Certificate) -> str:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return f"unsupported key ({cert.public_key_algorithm_oid.dotted_string})"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _key_size(cert: x509.Certificate) -> tuple[str, int | None]:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return "", None


def _signature_hash(cert: x509.Certificate) -> str | None:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # an OID cryptography does not know
        return None
    return algorithm.name if algorithm is not None else None


def _ca_issuers(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return ()
    return tuple(
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    )


# What current clients refuse, as OpenSSL's default security level 2 does
# (Debian, Ubuntu, RHEL 9; SSL_CTX_set_security_level(3)): RSA and DSA keys
# below 2048 bits and EC keys below 224 bits, and signatures with SHA-1 or
# MD5 (Chrome, Firefox, Apple and Microsoft stopped accepting SHA-1 server
# certificates in 2017). DSA is refused at any size: TLS 1.3 has no DSA
# signatures and the major clients removed DSA support altogether.
_MIN_KEY_BITS = {"RSA": 2048, "EC": 224}
WEAK_SIGNATURE_HASHES = {"sha1": "SHA-1", "md5": "MD5"}


def weak_key(info: CertificateInfo) -> bool:
    """Whether clients refuse the certificate's public key as too weak."""
    if info.key_type == "DSA":
        return True
    minimum = _MIN_KEY_BITS.get(info.key_type)
    return minimum is not None and info.key_bits is not None and info.key_bits < minimum


def weak_signature(info: CertificateInfo) -> bool:
    """Whether the certificate is signed with a hash clients refuse (SHA-1, MD5)."""
    return info.signature_hash in WEAK_SIGNATURE_HASHES


def _signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", None)
    return name if isinstance(name, str) and name != "Unknown OID" else oid.dotted_string


# -- host names --------------------------------------------------------------


def _idna_encode(label: str) -> str:
    try:
        import idna  # IDNA 2008 (RFC 5891) with the UTS #46 mapping browsers use
    except ImportError:
        return label.encode("idna").decode("ascii")  # the stdlib's IDNA 2003
    return str(idna.encode(label, uts46=True).decode("ascii"))


def _idna_decode(label: str) -> str:
    try:
        import idna
    except ImportError:
        return label.encode("ascii").decode("idna")
    return str(idna.decode(label))


def _to_alabel(name: str) -> str | None:
    """The ASCII (A-label) form of a DNS name, lower case; None if impossible."""
    name = name.strip().rstrip(".").lower()
    if not name:
        return None
    try:
        return ".".join(
            label if label.isascii() else _idna_encode(label) for label in name.split(".")
        )
    except UnicodeError:  # idna.IDNAError is a UnicodeError too
        return None


def display_hostname(hostname: str) -> str:
    """The host name for people: an IP address, or the DNS name in lower-case Unicode."""
    ip = _parse_ip(hostname)
    if ip is not None:
        return str(ip)
    name = _to_alabel(hostname)
    if name is None:
        return hostname.strip()
    labels = []
    for label in name.split("."):
        if label.startswith("xn--"):
            try:
                label = _idna_decode(label)
            except UnicodeError:
                pass  # not a valid A-label: show it as it is
        labels.append(label)
    return ".".join(labels)


def _parse_ip(text: str) -> _Address | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def _dns_name_matches(presented: str, reference: str) -> bool:
    """RFC 6125 §6.4: compare a certificate's name with the A-label host name."""
    name = _to_alabel(presented)
    if name is None:
        return False
    if "*" not in name:
        return name == reference
    labels = name.split(".")
    # RFC 6125 §6.4.3 (and RFC 9525 §6.3): only a whole left-most "*" label,
    # matching exactly one label; and never directly under a top-level domain.
    if labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3:
        return False
    wanted = reference.split(".")
    return len(wanted) == len(labels) and bool(wanted[0]) and wanted[1:] == labels[1:]


def hostname_matches(cert: x509.Certificate | bytes, hostname: str) -> bool:
    """Whether the certificate names `hostname` (RFC 6125).

    IP addresses are compared with iPAddress entries only, DNS names with
    dNSName entries only. The subject's common name is never a match, even
    when the certificate has no subjectAltName: RFC 6125 §6.4.4 still allowed
    that fallback, but RFC 9525 §6.3 removed it and current clients (Chrome
    since 58, Firefox, Thunderbird, Apple's TLS since iOS 13 / macOS 10.15)
    refuse such a certificate, so a match here would promise a connection
    that fails. Unicode and A-label spellings of a name are equivalent.
    Unparsable DER matches nothing.

    Ours rather than service_identity's, because the verdict must be the one
    clients reach: OpenSSL and NSS let a whole "*" label match an IDN A-label
    and skip a malformed entry, where service_identity refuses the first and
    rejects the whole certificate for the second (tests/test_tls.py checks
    every rule against OpenSSL's own matcher).
    """
    with _quiet_cryptography():
        return _hostname_matches(cert, hostname)


def _hostname_matches(cert: x509.Certificate | bytes, hostname: str) -> bool:
    if isinstance(cert, bytes):
        try:
            cert = _load_certificate(cert)
        except ValueError:
            return False
    try:
        names = _san_names(cert)
    except ValueError:  # unreadable extensions name nothing we could trust
        return False
    dns, ips = names if names else ([], [])
    ip = _parse_ip(hostname)
    if ip is not None:
        return ip in ips
    reference = _to_alabel(hostname)
    if reference is None or "*" in reference:  # a wildcard is never a host name
        return False
    return any(_dns_name_matches(candidate, reference) for candidate in dns)


# -- trust -------------------------------------------------------------------


class TrustAnchors(Struct, frozen=True):
    """The roots `analyse` trusts: certifi's plus those of a CA file."""

    certificates: tuple[x509.Certificate, ...]
    store: Store
    # The same certificates as a set: cryptography compares and hashes a
    # certificate by its DER encoding.
    pinned: frozenset[x509.Certificate]


_anchors_lock = threading.Lock()
_anchors_cache: dict[str | None, TrustAnchors] = {}


def load_trust_anchors(ca_file: str | None = None) -> TrustAnchors:
    """certifi's roots plus every certificate in `ca_file`, loaded once each.

    Raises OSError if the file can't be read and ValueError if it holds no
    PEM certificate: call it early to reject a bad --ca-file.
    """
    with _anchors_lock:
        cached = _anchors_cache.get(ca_file)
        if cached is None:
            # A few long-lived roots have a serial number that isn't positive.
            with _quiet_cryptography():
                cached = _anchors_cache[ca_file] = _load_anchors(ca_file)
        return cached


def read_ca_file(ca_file: str) -> list[x509.Certificate]:
    """The certificates of a --ca-file; OSError if unreadable, ValueError if none is usable."""
    from cryptography import x509

    with open(ca_file, "rb") as handle:
        data = handle.read()
    try:
        with _quiet_cryptography():
            return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"no usable PEM certificate in {ca_file}: {exc}") from exc


def _load_anchors(ca_file: str | None) -> TrustAnchors:
    from cryptography.x509.verification import Store

    certificates = list(_certifi_roots(certifi_bundle()))
    if ca_file:
        certificates += read_ca_file(ca_file)
    return TrustAnchors(
        certificates=tuple(certificates), store=Store(certificates), pinned=frozenset(certificates)
    )


def certifi_bundle() -> str:
    """The path of certifi's roots, as ``certifi.where()`` gives it.

    Found without importing certifi where the package keeps the file on
    disk (every pip install): ``where()`` imports importlib.resources, and
    with it zipfile, tempfile, shutil and the compression modules, a
    twentieth of a quick check's CPU. A distribution that keeps the roots
    elsewhere (Debian points certifi at the system store) has no such file
    there, and certifi is asked.
    """
    spec = importlib.util.find_spec("certifi")
    if spec is not None and spec.origin:
        bundle = os.path.join(os.path.dirname(spec.origin), "cacert.pem")
        if os.path.isfile(bundle):
            return bundle
    import certifi

    return certifi.where()


_certifi_cache: dict[str, tuple[x509.Certificate, ...]] = {}


def _certifi_roots(path: str) -> tuple[x509.Certificate, ...]:
    from cryptography import x509

    if path not in _certifi_cache:
        with open(path, "rb") as handle:
            _certifi_cache[path] = tuple(x509.load_pem_x509_certificates(handle.read()))
    return _certifi_cache[path]


def _server_auth_usage(
    policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    # RFC 5280 §4.2.1.12: when present, the extended key usage must allow
    # TLS server authentication, in the leaf and in every CA above it.
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if eku is not None and not allowed.intersection(eku):
        raise ValueError(
            f"{_quoted(cert.subject)} is not meant for TLS servers "
            "(its extended key usage leaves out serverAuth)"
        )


def _chain_verifier(anchors: TrustAnchors, now: datetime) -> ClientVerifier:
    """A web-PKI verifier that checks the chain but not the name.

    The name is checked by `hostname_matches`, so the verifier is a client
    verifier (which has no subject) whose end-entity policy asks for server
    authentication instead of client authentication.

    Two web-PKI rules are relaxed because mail clients (OpenSSL, NSS,
    SChannel) don't enforce them and private CAs often break them: the
    subjectAltName may be critical (RFC 5280 §4.2.1.6 only says it SHOULD NOT
    be when the subject is not empty), and the authorityKeyIdentifier may be
    missing (RFC 5280 §4.2.1.1 asks for it, but chains are built by name).
    """
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder

    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth_usage)
    )
    ca_policy = (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth_usage)
    )
    return (
        PolicyBuilder()
        .store(anchors.store)
        .time(now)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made the signature on `cert`, whatever its hash.

    cryptography refuses SHA-1 and MD5 in `verify_directly_issued_by`; those
    are checked by hand, so that a certificate signed with SHA-1 is reported
    as that, not as a signature that does not verify.
    """
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, UnsupportedAlgorithm):
        # cryptography 46+ raises ValueError("Unsupported signature algorithm").
        return _weakly_signed_by(cert, issuer)
    except (TypeError, InvalidSignature):
        return False
    return True


def _weakly_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

    try:
        algorithm = cert.signature_hash_algorithm
        if algorithm is None or algorithm.name not in WEAK_SIGNATURE_HASHES:
            return False
        if cert.issuer != issuer.subject:
            return False
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, algorithm)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _quoted(name: x509.Name) -> str:
    try:
        return f"'{name.rfc4514_string()}'"
    except (ValueError, KeyError):
        return "'(unreadable name)'"


def _days_phrase(days: int, future: bool) -> str:
    if days == 0:
        return "today"
    unit = "day" if days == 1 else "days"
    return f"in {days} {unit}" if future else f"{days} {unit} ago"


def _validity_problem(cert: x509.Certificate, now: datetime, what: str) -> str | None:
    if now > cert.not_valid_after_utc:
        days = (now - cert.not_valid_after_utc).days
        return (
            f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d} "
            f"({_days_phrase(days, future=False)})"
        )
    if now < cert.not_valid_before_utc:
        days = (cert.not_valid_before_utc - now).days
        return (
            f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d} "
            f"({_days_phrase(days, future=True)})"
        )
    return None


def _verification_message(exc: Exception) -> str:
    import re

    # cryptography appends the repr of the certificate it was processing.
    message = re.sub(r"\s*\(encountered processing .*\)\s*$", "", str(exc), flags=re.DOTALL)
    message = message.removeprefix("validation failed: ")
    if "extension validator failed:" in message:
        # Our own validators raise ValueError with a sentence for people.
        return message.rsplit("ValueError: ", 1)[-1]
    if "signature does not match" in message:
        return "a signature in the certificate chain does not verify"
    if "all candidates exhausted" in message:
        return "no path to a trusted certificate authority could be built"
    return f"the certificate chain does not verify: {message}"


class _Verdict(Struct, frozen=True):
    trust: TrustStatus
    detail: str | None = None
    # INVALID only because of a weak key or signature hash in the path.
    rejected_as_weak: bool = False


def _judge(certs: list[x509.Certificate], anchors: TrustAnchors, now: datetime) -> _Verdict:
    from cryptography.x509.verification import VerificationError

    leaf = certs[0]
    if now > leaf.not_valid_after_utc:
        return _Verdict(TrustStatus.EXPIRED, _validity_problem(leaf, now, "the certificate"))
    if now < leaf.not_valid_before_utc:
        return _Verdict(TrustStatus.NOT_YET_VALID, _validity_problem(leaf, now, "the certificate"))
    if leaf in anchors.pinned:
        # Pinned: the user put this very certificate in the CA file.
        return _Verdict(TrustStatus.TRUSTED)
    if _self_issued(leaf) and _signed_by(leaf, leaf):
        return _Verdict(
            TrustStatus.SELF_SIGNED,
            f"the certificate {_quoted(leaf.subject)} is self-signed: no certificate "
            "authority vouches for it",
        )
    try:
        _chain_verifier(anchors, now).verify(leaf, certs[1:])
    except (VerificationError, ValueError) as exc:
        return _explain_failure(certs, anchors, now, exc)
    return _Verdict(TrustStatus.TRUSTED)


def _explain_failure(
    certs: list[x509.Certificate], anchors: TrustAnchors, now: datetime, exc: Exception
) -> _Verdict:
    # Follow the chain the server sent from the leaf up, by issuer name and
    # signature (servers may send certificates in any order, and extras).
    path = [certs[0]]
    while not _self_issued(path[-1]) and len(path) <= len(certs):
        current = path[-1]
        named = [c for c in certs[1:] if c.subject == current.issuer and c not in path]
        if not named:
            break
        signer = next((c for c in named if _signed_by(current, c)), None)
        if signer is None:
            return _Verdict(
                TrustStatus.INVALID,
                f"the signature on {_quoted(current.subject)} does not verify with the key "
                f"of its issuer {_quoted(current.issuer)}",
            )
        path.append(signer)
    for intermediate in path[1:]:
        problem = _validity_problem(
            intermediate, now, f"the intermediate certificate {_quoted(intermediate.subject)}"
        )
        if problem:
            return _Verdict(TrustStatus.INVALID, problem)

    top = path[-1]
    trusted_names = {anchor.subject for anchor in anchors.certificates}
    if _self_issued(top):
        if top.subject in trusted_names:
            return _rejected(path, exc)
        if len(path) == 1:  # not SELF_SIGNED: its own key did not sign it
            return _Verdict(
                TrustStatus.INVALID,
                f"the certificate {_quoted(top.subject)} names itself as its issuer, "
                "but its signature does not verify",
            )
        return _Verdict(
            TrustStatus.UNTRUSTED_ROOT,
            f"the chain ends at {_quoted(top.subject)}, a root certificate authority that "
            "is not trusted",
        )
    if top.issuer in trusted_names:
        return _rejected(path, exc)
    if len(path) == 1:
        detail = f"the server did not send the intermediate certificate {_quoted(top.issuer)}"
        if len(certs) > 1:
            detail += " (the other certificates it sent do not belong to this chain)"
        return _Verdict(TrustStatus.INCOMPLETE_CHAIN, detail)
    return _Verdict(
        TrustStatus.UNTRUSTED_ROOT,
        f"issued by {_quoted(top.issuer)}, which is not a trusted certificate authority",
    )


def _rejected(path: list[x509.Certificate], exc: Exception) -> _Verdict:
    """The chain leads to a trusted root and still failed: name the weak link if any.

    cryptography's verifier (like current clients) refuses SHA-1 and MD5
    signatures and small keys along the path; its message ("Forbidden
    signature algorithm") is not for people.
    """
    problems = []
    for cert in path:
        info = _describe(cert, b"")
        if not info.self_issued and weak_signature(info):
            hash_name = WEAK_SIGNATURE_HASHES[info.signature_hash or ""]
            problems.append(
                f"{_quoted(cert.subject)} is signed with {hash_name} "
                f"({info.signature_algorithm}), which clients reject"
            )
        if weak_key(info):
            problems.append(
                f"the key of {_quoted(cert.subject)} ({info.key_description}) is too weak "
                "for clients"
            )
    if problems:
        return _Verdict(TrustStatus.INVALID, "; ".join(problems), rejected_as_weak=True)
    return _Verdict(TrustStatus.INVALID, _verification_message(exc))


def analyse(
    chain_der: Sequence[bytes],
    hostname: str,
    *,
    version: str,
    cipher: str,
    cipher_bits: int | None,
    handshake_seconds: float,
    ca_file: str | None = None,
    now: datetime | None = None,
) -> TlsFacts:
    """Judge the certificates a server sent (leaf first) for `hostname`.

    Never raises for what a server sent; a CA file that can't be read raises
    like `load_trust_anchors`. A chain judged a moment ago for the same name
    is not judged again (see `_Verdicts`).
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    key = (tuple(chain_der), hostname, ca_file)
    facts = _verdicts.get(key, now)
    if facts is None:
        with _quiet_cryptography():
            facts = _analyse(
                chain_der,
                hostname,
                version=version,
                cipher=cipher,
                cipher_bits=cipher_bits,
                handshake_seconds=handshake_seconds,
                ca_file=ca_file,
                now=now,
            )
        _verdicts.put(key, now, facts)
    days = facts.days_remaining
    if days is not None and facts.leaf is not None:  # None: the leaf could not be parsed
        days = (facts.leaf.not_after - now).total_seconds() / 86400
    return replace(
        facts,
        version=version,
        cipher=cipher,
        cipher_bits=cipher_bits,
        handshake_seconds=handshake_seconds,
        days_remaining=days,
    )


class _Verdicts:
    """Recent verdicts, by (chain as sent, host name, CA file).

    A hosting provider's server presents the same chain to the probes of
    every customer domain it hosts; a batch would otherwise verify it a
    thousand times. A verdict depends on the clock only through the validity
    periods in the chain, so it is reused only while no not_before/not_after
    lies between the moment it was made and now, and for at most
    `max_age` seconds (the trust anchors' own validity is not tracked).
    """

    def __init__(self, size: int = 256, max_age: float = 300.0) -> None:
        self.size = size
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, ...], tuple[datetime, TlsFacts]] = OrderedDict()

    def get(self, key: tuple[object, ...], now: datetime) -> TlsFacts | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            judged_at, facts = entry
            crossed = any(
                judged_at < moment <= now
                for cert in facts.chain
                for moment in (cert.not_before, cert.not_after)
            )
            if crossed or not 0 <= (now - judged_at).total_seconds() <= self.max_age:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return facts

    def put(self, key: tuple[object, ...], now: datetime, facts: TlsFacts) -> None:
        with self._lock:
            self._entries[key] = (now, facts)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


_verdicts = _Verdicts()


def _analyse(
    chain_der: Sequence[bytes],
    hostname: str,
    *,
    version: str,
    cipher: str,
    cipher_bits: int | None,
    handshake_seconds: float,
    ca_file: str | None,
    now: datetime,
) -> TlsFacts:
    certs: list[x509.Certificate] = []
    infos: list[CertificateInfo] = []
    unparsable: list[int] = []
    for position, der in enumerate(chain_der):
        try:
            cert = _load_certificate(der)
        except ValueError:
            unparsable.append(position)
            continue
        certs.append(cert)
        infos.append(_describe(cert, der))

    def facts(
        trust: TrustStatus, detail: str | None, matches: bool, days: float | None
    ) -> TlsFacts:
        return TlsFacts(
            version=version,
            cipher=cipher,
            cipher_bits=cipher_bits,
            chain=tuple(infos),
            trust=trust,
            trust_detail=detail,
            hostname=display_hostname(hostname),
            hostname_matches=matches,
            days_remaining=days,
            handshake_seconds=handshake_seconds,
        )

    if not chain_der:
        return facts(TrustStatus.NO_CERTIFICATE, "the server sent no certificate", False, None)
    if 0 in unparsable:
        return facts(
            TrustStatus.INVALID, "the server's certificate could not be parsed", False, None
        )
    leaf = certs[0]
    days = (leaf.not_valid_after_utc - now).total_seconds() / 86400
    matches = _hostname_matches(leaf, hostname)
    if unparsable:
        problem = f"certificate #{unparsable[0] + 1} the server sent could not be parsed"
        return facts(TrustStatus.INVALID, problem, matches, days)
    verdict = _judge(certs, load_trust_anchors(ca_file), now)
    return replace(
        facts(verdict.trust, verdict.detail, matches, days),
        rejected_as_weak=verdict.rejected_as_weak,
    )
