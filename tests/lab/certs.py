"""Certificates for tests, the demo and benchmarks: a good chain and its broken twins.

`TestPKI(directory)` makes a root and an intermediate CA, writes the root to
`ca_pem_path` (what a user would pass as --ca-file) and issues server
certificates into the directory. Each `ServerCert` names its files and makes
a ready server-side `ssl.SSLContext`:

    pki = TestPKI(tmp_path)
    good = pki.good("mail.example.test")
    server_context = good.server_context()
    ...  analyse(chain, "mail.example.test", ca_file=str(pki.ca_pem_path), ...)

trustme issues the ordinary certificates; the ones trustme can't make
(self-signed, common-name only, wrong key usage, forged) are built with
cryptography directly.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import ssl
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import idna
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = ["ServerCert", "TestPKI", "legacy_tls_unsupported"]

_ORGANIZATION = "maildiag lab"

Hostnames = str | Iterable[str]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _names(hostnames: Hostnames) -> tuple[str, ...]:
    names = (hostnames,) if isinstance(hostnames, str) else tuple(hostnames)
    if not names:
        raise ValueError("a server certificate needs at least one host name")
    return names


def _ascii(hostname: str) -> str:
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    if hostname.startswith("*."):
        return "*." + idna.encode(hostname[2:], uts46=True).decode("ascii")
    return idna.encode(hostname, uts46=True).decode("ascii")


def _general_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(_ascii(hostname))


def _allow_legacy_ciphers(context: ssl.SSLContext) -> None:
    # OpenSSL 3 (Debian: SECLEVEL=2) refuses TLS 1.0/1.1 at the default level:
    # they sign the handshake with SHA-1.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")


@dataclass(frozen=True)
class ServerCert:
    """One server certificate and the files a server needs to present it."""

    name: str
    hostnames: tuple[str, ...]
    cert_path: Path  # the leaf certificate alone (PEM)
    key_path: Path  # its private key (PEM)
    chain_path: Path  # what the server sends, leaf first (PEM)
    ca_path: Path  # the root that would make this chain trusted (PEM)
    # A weak key or SHA-1/MD5 signature: OpenSSL's default security level
    # refuses to load it, so the server context lowers it (clients decide).
    weak: bool = False

    def server_context(
        self,
        *,
        minimum_version: ssl.TLSVersion | None = None,
        maximum_version: ssl.TLSVersion | None = None,
    ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if self.weak:
            _allow_legacy_ciphers(context)
        context.load_cert_chain(self.chain_path, self.key_path)
        with warnings.catch_warnings():
            # Python deprecates TLS 1.0/1.1; the tests need servers that speak them.
            warnings.simplefilter("ignore", DeprecationWarning)
            if minimum_version is not None:
                context.minimum_version = minimum_version
            if maximum_version is not None:
                context.maximum_version = maximum_version
        if minimum_version is not None and minimum_version < ssl.TLSVersion.TLSv1_2:
            _allow_legacy_ciphers(context)
        return context

    def legacy_server_context(self) -> ssl.SSLContext:
        """A server that speaks only TLS 1.0 and 1.1 (see `legacy_tls_unsupported`)."""
        return self.server_context(
            minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1
        )


class TestPKI:
    """A test root CA with one intermediate, issuing certificates into a directory."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)
        # A random tag keeps the names of two PKIs apart: chains of one PKI
        # must not look like they were issued by the other's CAs.
        tag = trustme.random_text()[:6]
        self.root = trustme.CA(
            organization_name=_ORGANIZATION, organization_unit_name=f"Test Root CA {tag}"
        )
        self.intermediate = trustme.CA(
            parent_cert=self.root,
            organization_name=_ORGANIZATION,
            organization_unit_name=f"Test Intermediate CA {tag}",
        )
        self.ca_pem_path = self.directory / "ca.pem"
        self.root.cert_pem.write_to_path(self.ca_pem_path)
        self._other: tuple[trustme.CA, trustme.CA, Path] | None = None
        self._rsa: tuple[x509.Certificate, rsa.RSAPrivateKey, Path] | None = None

    # -- the twins ---------------------------------------------------------

    def good(self, hostnames: Hostnames) -> ServerCert:
        """Issued by the intermediate; the server sends leaf + intermediate."""
        return self._issue("good", hostnames)

    def missing_intermediate(self, hostnames: Hostnames) -> ServerCert:
        """Issued by the intermediate, but the server sends only the leaf."""
        return self._issue("missing-intermediate", hostnames, send_chain=False)

    def expired(self, hostnames: Hostnames, *, days_ago: float = 3) -> ServerCert:
        now = _utcnow()
        return self._issue(
            "expired",
            hostnames,
            not_before=now - datetime.timedelta(days=90),
            not_after=now - datetime.timedelta(days=days_ago),
        )

    def not_yet_valid(self, hostnames: Hostnames, *, days_ahead: float = 3) -> ServerCert:
        now = _utcnow()
        return self._issue(
            "not-yet-valid",
            hostnames,
            not_before=now + datetime.timedelta(days=days_ahead),
            not_after=now + datetime.timedelta(days=90),
        )

    def expiring_in(self, days: float, hostnames: Hostnames) -> ServerCert:
        now = _utcnow()
        return self._issue(
            "expiring",
            hostnames,
            not_before=now - datetime.timedelta(days=60),
            not_after=now + datetime.timedelta(days=days),
        )

    def wrong_host(self, hostnames_it_is_for: Hostnames) -> ServerCert:
        """A good chain, for names the test will not connect with."""
        return self._issue("wrong-host", hostnames_it_is_for)

    def untrusted_ca(self, hostnames: Hostnames, *, send_root: bool = False) -> ServerCert:
        """A chain to another root, which is not in `ca_pem_path`.

        Like a real server, it sends leaf + intermediate; with `send_root` it
        sends the root too.
        """
        root, intermediate, root_path = self._other_ca()
        names = _names(hostnames)
        leaf = intermediate.issue_cert(
            *names, common_name=_ascii(names[0]), organization_name=_ORGANIZATION
        )
        pems = [blob.bytes() for blob in leaf.cert_chain_pems]
        if send_root:
            pems.append(root.cert_pem.bytes())
        return self._write(
            "untrusted-ca", names, leaf.private_key_pem.bytes(), pems, root_path.read_bytes()
        )

    def self_signed(self, hostnames: Hostnames) -> ServerCert:
        """Signed with its own key, like `openssl req -x509` or Debian's snakeoil."""
        names = _names(hostnames)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _ascii(names[0]))])
        now = _utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return self._write("self-signed", names, _key_pem(key), [pem], pem)

    # -- more broken certificates, built with cryptography ------------------

    def common_name_only(self, common_name: str) -> ServerCert:
        """No subjectAltName at all: only the subject's CN names the server."""
        return self._custom("cn-only", (common_name,), common_name=common_name, san=False)

    def client_only(self, hostnames: Hostnames) -> ServerCert:
        """Extended key usage clientAuth only: not usable by a TLS server."""
        return self._custom(
            "client-only", _names(hostnames), usages=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )

    def forged(self, hostnames: Hostnames) -> ServerCert:
        """Names the intermediate as issuer, but is signed by another key."""
        return self._custom(
            "forged", _names(hostnames), signer=ec.generate_private_key(ec.SECP256R1())
        )

    def weak_key(self, hostnames: Hostnames, *, key: str = "rsa1024") -> ServerCert:
        """A leaf with a key clients refuse: "rsa1024", "ec192" or "dsa2048"."""
        private: _PrivateKey
        if key.startswith("rsa"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=int(key[3:]))
        elif key == "ec192":
            private = ec.generate_private_key(ec.SECP192R1())
        elif key == "dsa2048":
            private = dsa.generate_private_key(key_size=2048)
        else:
            raise ValueError(f"unknown key kind {key!r}")
        return self._custom(f"key-{key}", _names(hostnames), key=private, weak=True)

    def missing_intermediate_with_aia(self, hostnames: Hostnames, url: str) -> ServerCert:
        """Only the leaf is sent, but it names where its issuer can be fetched (AIA)."""
        return self._custom("missing-intermediate-aia", _names(hostnames), aia=url, chain=False)

    def weak_signature(
        self, hostnames: Hostnames, *, digest: str = "sha1", where: str = "leaf"
    ) -> ServerCert:
        """A chain from an RSA root (its own `ca_path`) with a SHA-1 or MD5 signature.

        `digest` "sha256" makes the healthy twin. `where` is "leaf" or
        "intermediate": which certificate carries the weak signature.
        cryptography no longer signs with SHA-1 or MD5, so the certificate is
        built with SHA-256 and its signature replaced (PKCS #1 v1.5 RSA
        signatures have the length of the modulus, so nothing else moves).
        """
        names = _names(hostnames)
        root_cert, root_key, root_path = self._rsa_root()
        inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tag = trustme.random_text()[:6]
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, f"RSA Intermediate {digest} {tag}"),
            ]
        )
        now = _utcnow()
        intermediate = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(root_cert.subject)
            .public_key(inter_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
            )
            .sign(root_key, hashes.SHA256())
        )
        if where == "intermediate":
            intermediate = _resign_weak(intermediate, root_key, digest)
        return self._custom(
            f"signature-{digest}-{where}",
            names,
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            issuer=(intermediate, inter_key),
            digest=digest if where == "leaf" else "sha256",
            ca_pem=root_path.read_bytes(),
            weak=digest != "sha256",
        )

    def legacy_tls_unsupported(self) -> str | None:
        return legacy_tls_unsupported(self.good("legacy.test"))

    # -- plumbing ----------------------------------------------------------

    def _issue(
        self,
        kind: str,
        hostnames: Hostnames,
        *,
        send_chain: bool = True,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> ServerCert:
        names = _names(hostnames)
        leaf = self.intermediate.issue_cert(
            *names,
            common_name=_ascii(names[0]),
            organization_name=_ORGANIZATION,
            organization_unit_name=kind,
            not_before=not_before,
            not_after=not_after,
        )
        pems = [blob.bytes() for blob in leaf.cert_chain_pems]
        if not send_chain:
            pems = pems[:1]
        return self._write(
            kind, names, leaf.private_key_pem.bytes(), pems, self.root.cert_pem.bytes()
        )

    def _custom(
        self,
        kind: str,
        names: tuple[str, ...],
        *,
        common_name: str | None = None,
        san: bool = True,
        usages: list[x509.ObjectIdentifier] | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
        key: _PrivateKey | None = None,
        issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        digest: str = "sha256",
        aia: str | None = None,
        chain: bool = True,
        ca_pem: bytes | None = None,
        weak: bool = False,
    ) -> ServerCert:
        issuer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if issuer is None:
            issuer_cert = x509.load_pem_x509_certificate(self.intermediate.cert_pem.bytes())
            loaded = serialization.load_pem_private_key(
                self.intermediate.private_key_pem.bytes(), password=None
            )
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            issuer_key = loaded
        else:
            issuer_cert, issuer_key = issuer
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
        now = _utcnow()
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name or _ascii(names[0])),
                    ]
                )
            )
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(usages or [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        if aia:
            access = x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia)
            )
            builder = builder.add_extension(
                x509.AuthorityInformationAccess([access]), critical=False
            )
        cert = builder.sign(signer or issuer_key, hashes.SHA256())
        if digest != "sha256":
            assert isinstance(issuer_key, rsa.RSAPrivateKey)
            cert = _resign_weak(cert, issuer_key, digest)
        pems = [cert.public_bytes(serialization.Encoding.PEM)]
        if chain:
            pems.append(issuer_cert.public_bytes(serialization.Encoding.PEM))
        return self._write(
            kind, names, _key_pem(key), pems, ca_pem or self.root.cert_pem.bytes(), weak=weak
        )

    def _rsa_root(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey, Path]:
        """An RSA root CA (the lab's other roots are EC), written to its own file."""
        if self._rsa is None:
            ca = trustme.CA(
                organization_name=_ORGANIZATION,
                organization_unit_name=f"RSA Root CA {trustme.random_text()[:6]}",
                key_type=trustme.KeyType.RSA,
            )
            cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
            key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            path = self.directory / "rsa-ca.pem"
            ca.cert_pem.write_to_path(path)
            self._rsa = (cert, key, path)
        return self._rsa

    def _other_ca(self) -> tuple[trustme.CA, trustme.CA, Path]:
        if self._other is None:
            tag = trustme.random_text()[:6]
            root = trustme.CA(
                organization_name="Elsewhere", organization_unit_name=f"Other Root CA {tag}"
            )
            intermediate = trustme.CA(
                parent_cert=root,
                organization_name="Elsewhere",
                organization_unit_name=f"Other Intermediate CA {tag}",
            )
            path = self.directory / "other-ca.pem"
            root.cert_pem.write_to_path(path)
            self._other = (root, intermediate, path)
        return self._other

    def _write(
        self,
        kind: str,
        names: tuple[str, ...],
        key_pem: bytes,
        pems: list[bytes],
        ca_pem: bytes,
        *,
        weak: bool = False,
    ) -> ServerCert:
        stem = f"{kind}-{next(self._counter):02d}"
        paths = {
            suffix: self.directory / f"{stem}.{suffix}"
            for suffix in ("key", "crt", "chain.pem", "ca.pem")
        }
        paths["key"].write_bytes(key_pem)
        paths["key"].chmod(0o600)
        paths["crt"].write_bytes(pems[0])
        paths["chain.pem"].write_bytes(b"".join(pems))
        paths["ca.pem"].write_bytes(ca_pem)
        return ServerCert(
            name=stem,
            hostnames=names,
            cert_path=paths["crt"],
            key_path=paths["key"],
            chain_path=paths["chain.pem"],
            ca_path=paths["ca.pem"],
            weak=weak,
        )


_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey

# sha256WithRSAEncryption and its weak siblings (RFC 8017 A.2.4): the same
# arc, so the encoded OIDs have the same length.
_RSA_SIGNATURE_OIDS = {
    "sha256": bytes.fromhex("06092a864886f70d01010b"),
    "sha1": bytes.fromhex("06092a864886f70d010105"),
    "md5": bytes.fromhex("06092a864886f70d010104"),
}
_WEAK_HASHES = {"sha1": hashes.SHA1, "md5": hashes.MD5}


def _resign_weak(cert: x509.Certificate, key: rsa.RSAPrivateKey, digest: str) -> x509.Certificate:
    """`cert` (signed with SHA-256 by `key`) signed again with SHA-1 or MD5."""
    der = cert.public_bytes(serialization.Encoding.DER)
    # Twice: in the TBS part and in the outer signatureAlgorithm.
    assert der.count(_RSA_SIGNATURE_OIDS["sha256"]) == 2
    der = der.replace(_RSA_SIGNATURE_OIDS["sha256"], _RSA_SIGNATURE_OIDS[digest])
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    signature = key.sign(tbs, padding.PKCS1v15(), _WEAK_HASHES[digest]())
    assert len(signature) == len(cert.signature) and der.count(cert.signature) == 1
    return x509.load_der_x509_certificate(der.replace(cert.signature, signature))


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def legacy_tls_unsupported(cert: ServerCert) -> str | None:
    """Why this machine's OpenSSL can't do a TLS 1.0/1.1 handshake, or None if it can.

    Tries one in memory, between the legacy server context and an equally
    permissive client, so tests can skip with the reason instead of failing.
    """
    try:
        server_context = cert.legacy_server_context()
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client_context.minimum_version = ssl.TLSVersion.TLSv1
        _allow_legacy_ciphers(client_context)
    except (ssl.SSLError, ValueError) as exc:
        return f"OpenSSL {ssl.OPENSSL_VERSION} refuses to configure TLS 1.0/1.1: {exc}"
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(client_in, client_out)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    try:
        for _ in range(20):
            for side, obj in (("client", client), ("server", server)):
                if not done[side]:
                    try:
                        obj.do_handshake()
                        done[side] = True
                    except ssl.SSLWantReadError:
                        pass
            server_in.write(client_out.read())
            client_in.write(server_out.read())
            if all(done.values()):
                break
    except ssl.SSLError as exc:
        return f"OpenSSL {ssl.OPENSSL_VERSION} refuses a TLS 1.0/1.1 handshake: {exc}"
    version = client.version() if all(done.values()) else None
    if version not in ("TLSv1", "TLSv1.1"):
        return f"OpenSSL {ssl.OPENSSL_VERSION} did not negotiate TLS 1.0/1.1 (got {version})"
    return None
