"""Thunderbird autoconfig: parsing without I/O, then real HTTPS over loopback.

The HTTPS server listens on 127.0.0.51:443 (autoconfig URLs have no port),
its certificate comes from a per-test trustme CA, and the host names reach it
through the lab DNS server, exactly as ``--nameserver`` would.
"""

from __future__ import annotations

import time

import pytest
import trustme

from maildiag.autoconfig import (
    MAX_BODY,
    AutoconfigError,
    autoconfig_urls,
    fetch_autoconfig,
    parse_autoconfig,
)
from maildiag.deadline import Deadline
from maildiag.dns import Resolver
from maildiag.model import AutoconfigServer, Protocol, Security
from tests.lab.dns_server import DnsServer
from tests.lab.faults import ScriptedServer, drip_forever
from tests.lab.https_server import HttpsServer, Reply, silent_listener

WEB = "127.0.0.51"  # the HTTPS server
SILENT = "127.0.0.54"  # accepts TCP, never speaks
NOBODY = "127.0.0.55"  # nothing listens: connections are refused

CONFIG = b"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.test">
    <domain>example.test</domain>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.test</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.test</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.test</hostname>
      <port>25</port>
      <socketType>plain</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""

EXPECTED = (
    AutoconfigServer(Protocol.IMAP, "imap.example.test", 993, Security.TLS),
    AutoconfigServer(Protocol.POP3, "pop.example.test", 110, Security.STARTTLS),
    AutoconfigServer(Protocol.SMTP, "smtp.example.test", 587, Security.STARTTLS),
    AutoconfigServer(Protocol.SMTP, "smtp.example.test", 25, Security.PLAIN),
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE clientConfig [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<clientConfig><emailProvider><incomingServer type="imap">
<hostname>&c;</hostname><port>993</port><socketType>SSL</socketType>
</incomingServer></emailProvider></clientConfig>
"""

ZONES = {
    "example.test": {"autoconfig": {"A": [WEB]}, "@": {"A": [WEB]}},
    "fallback.test": {"@": {"A": [WEB]}},
    "nowhere.test": {},
    "refused.test": {"autoconfig": {"A": [NOBODY]}, "@": {"A": [NOBODY]}},
    "silent.test": {"autoconfig": {"A": [SILENT]}, "@": {"A": [SILENT]}},
}

URL = "https://autoconfig.example.test/mail/config-v1.1.xml"
WELL_KNOWN = "https://example.test/.well-known/autoconfig/mail/config-v1.1.xml"
ROUTE = "autoconfig.example.test/mail/config-v1.1.xml"


@pytest.fixture(scope="module")
def resolver():
    with DnsServer(ZONES, address="127.0.0.50") as srv:
        yield Resolver(srv.nameserver, timeout=1.0)


@pytest.fixture
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def cert(ca):
    return ca.issue_cert(
        "autoconfig.example.test", "example.test", "autoconfig.fallback.test", "fallback.test"
    )


def fetch(resolver, domain="example.test", *, ca_file=None, timeout=2.0, deadline=5.0, **kw):
    return fetch_autoconfig(
        domain, resolver, ca_file=ca_file, timeout=timeout, deadline=Deadline(deadline), **kw
    )


# -- parsing -----------------------------------------------------------------


def test_parse_maps_types_socket_types_and_placeholders():
    assert parse_autoconfig(CONFIG, "example.test") == EXPECTED


def test_parse_skips_what_maildiag_cannot_probe():
    xml = b"""<clientConfig><emailProvider>
      <incomingServer type="exchange"><hostname>ews.example.test</hostname>
        <port>443</port><socketType>SSL</socketType></incomingServer>
      <incomingServer type="imap"><hostname>imap.example.test</hostname>
        <port>99999</port><socketType>SSL</socketType></incomingServer>
      <incomingServer type="imap"><hostname>imap.example.test</hostname>
        <port>993</port><socketType>QUANTUM</socketType></incomingServer>
      <incomingServer type="imap"><hostname>%EMAILLOCALPART%.example.test</hostname>
        <port>993</port><socketType>SSL</socketType></incomingServer>
    </emailProvider></clientConfig>"""
    assert parse_autoconfig(xml, "example.test") == ()


def test_parse_defaults_ports_and_dedupes():
    xml = b"""<clientConfig><emailProvider>
      <incomingServer type="IMAP"><hostname>Imap.Example.Test</hostname>
        <socketType>ssl</socketType></incomingServer>
      <incomingServer type="imap"><hostname>imap.example.test</hostname>
        <port>993</port><socketType>SSL</socketType></incomingServer>
      <outgoingServer type="smtp"><hostname>smtp.m\xc3\xbcller.test</hostname>
        <socketType>SSL</socketType></outgoingServer>
    </emailProvider></clientConfig>"""
    assert parse_autoconfig(xml, "example.test") == (
        AutoconfigServer(Protocol.IMAP, "imap.example.test", 993, Security.TLS),
        AutoconfigServer(Protocol.SMTP, "smtp.xn--mller-kva.test", 465, Security.TLS),
    )


def test_parse_ignores_namespaces():
    xml = CONFIG.replace(b"<clientConfig ", b'<clientConfig xmlns="urn:x" ')
    assert parse_autoconfig(xml, "example.test") == EXPECTED


def test_parse_rejects_malformed_xml():
    with pytest.raises(AutoconfigError, match="not well-formed"):
        parse_autoconfig(CONFIG[:-40], "example.test")


def test_parse_rejects_doctype_without_expanding():
    with pytest.raises(AutoconfigError, match="DOCTYPE"):
        parse_autoconfig(BILLION_LAUGHS, "example.test")


def test_parse_rejects_doctype_in_utf16():
    # A byte search for "<!DOCTYPE" would miss this; the parser does not.
    with pytest.raises(AutoconfigError, match="DOCTYPE"):
        parse_autoconfig(
            BILLION_LAUGHS.replace(b'"1.0"?>', b'"1.0" encoding="UTF-16"?>')
            .decode()
            .encode("utf-16"),
            "example.test",
        )


def test_parse_rejects_external_entity():
    xml = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><clientConfig>&e;</clientConfig>'
    with pytest.raises(AutoconfigError, match="DOCTYPE"):
        parse_autoconfig(xml, "example.test")


def test_parse_rejects_another_document():
    with pytest.raises(AutoconfigError, match="root is <html>"):
        parse_autoconfig(b"<html><body>hello</body></html>", "example.test")


def test_urls_carry_the_email_address_on_the_first_only():
    first, second = autoconfig_urls("example.test", "alice@example.test")
    assert first == URL + "?emailaddress=alice@example.test"
    assert second == WELL_KNOWN


# -- fetching over HTTPS -----------------------------------------------------


def test_fetch_over_https_with_extra_ca(resolver, cert, ca_file):
    with HttpsServer({ROUTE: CONFIG}, cert, address=WEB) as web:
        (result,) = fetch(resolver, ca_file=ca_file, email="alice@example.test")
    assert result.error is None
    assert result.servers == EXPECTED
    assert result.url == URL + "?emailaddress=alice@example.test"
    (request,) = web.requests
    # Connected to the address from OUR resolver, yet SNI and Host name the host.
    assert request.sni == "autoconfig.example.test"
    assert request.host == "autoconfig.example.test"
    assert request.path == "/mail/config-v1.1.xml?emailaddress=alice@example.test"


def test_fetch_without_the_ca_records_a_tls_error(resolver, cert):
    with HttpsServer({ROUTE: CONFIG}, cert, address=WEB):
        results = fetch(resolver, ca_file=None)
    assert [r.url for r in results] == [URL, WELL_KNOWN]
    assert all(not r.servers for r in results)
    assert all("TLS certificate" in r.error and "not trusted" in r.error for r in results)


def test_fetch_with_a_certificate_for_another_name(resolver, ca, ca_file):
    wrong = ca.issue_cert("other.test")
    with HttpsServer({ROUTE: CONFIG}, wrong, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "autoconfig.example.test" in results[0].error
    assert "Hostname mismatch" in results[0].error or "match" in results[0].error


def test_fetch_with_an_unreadable_ca_file(resolver, tmp_path):
    results = fetch(resolver, ca_file=str(tmp_path / "missing.pem"))
    assert all("cannot use the CA file" in r.error for r in results)


def test_falls_back_to_well_known(resolver, cert, ca_file):
    route = "fallback.test/.well-known/autoconfig/mail/config-v1.1.xml"
    with HttpsServer({route: CONFIG}, cert, address=WEB):
        first, second = fetch(resolver, "fallback.test", ca_file=ca_file)
    assert first.error is not None and "nxdomain" in first.error
    assert second.error is None
    assert second.servers[0].host == "imap.fallback.test"  # %EMAILDOMAIN% of this domain


def test_nothing_anywhere(resolver):
    first, second = fetch(resolver, "nowhere.test")
    assert "cannot resolve autoconfig.nowhere.test" in first.error
    assert "cannot resolve nowhere.test" in second.error


def test_first_url_with_servers_ends_the_search(resolver, cert, ca_file):
    routes = {ROUTE: CONFIG, "example.test/.well-known/autoconfig/mail/config-v1.1.xml": CONFIG}
    with HttpsServer(routes, cert, address=WEB) as web:
        results = fetch(resolver, ca_file=ca_file)
    assert len(results) == 1
    assert len(web.requests) == 1


def test_http_error_status(resolver, cert, ca_file):
    with HttpsServer({ROUTE: Reply(status=500, body=b"oops")}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert results[0].error == "HTTP 500 from autoconfig.example.test"
    assert results[1].error == "HTTP 404 from example.test"


def test_malformed_xml_over_https(resolver, cert, ca_file):
    with HttpsServer({ROUTE: b"<clientConfig><oops>"}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "not well-formed" in results[0].error


def test_doctype_over_https(resolver, cert, ca_file):
    with HttpsServer({ROUTE: BILLION_LAUGHS}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "DOCTYPE" in results[0].error


def _hostile_documents(secret_path):
    # Each would make a naive parser expand, read or fetch something: an
    # exponential entity (billion laughs), a quadratic one, an external
    # entity naming a local file (XXE), a parameter entity, an external DTD
    # served by the same web server (which must never be asked for it).
    big = "x" * 10_000
    return {
        "billion laughs": BILLION_LAUGHS,
        "quadratic blowup": (
            f'<!DOCTYPE clientConfig [<!ENTITY x "{big}">]>'
            "<clientConfig><incomingServer type='imap'><hostname>"
            + "&x;" * 10_000
            + "</hostname></incomingServer></clientConfig>"
        ).encode(),
        "external entity": (
            f'<!DOCTYPE clientConfig [<!ENTITY e SYSTEM "file://{secret_path}">]>'
            "<clientConfig><incomingServer type='imap'><hostname>&e;</hostname>"
            "<socketType>SSL</socketType></incomingServer></clientConfig>"
        ).encode(),
        "parameter entity": (
            f'<!DOCTYPE clientConfig [<!ENTITY % p SYSTEM "file://{secret_path}"> %p;]>'
            "<clientConfig/>"
        ).encode(),
        "external DTD": (
            b'<!DOCTYPE clientConfig SYSTEM "https://autoconfig.example.test/evil.dtd">'
            b"<clientConfig/>"
        ),
    }


@pytest.mark.parametrize(
    "kind",
    ["billion laughs", "quadratic blowup", "external entity", "parameter entity", "external DTD"],
)
def test_hostile_documents_are_refused_unread(resolver, cert, ca_file, tmp_path, kind):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER imap.attacker.test")
    document = _hostile_documents(secret)[kind]
    routes = {ROUTE: document, "autoconfig.example.test/evil.dtd": b'<!ENTITY x "y">'}
    with HttpsServer(routes, cert, address=WEB) as web:
        started = time.monotonic()
        results = fetch(resolver, ca_file=ca_file)
        elapsed = time.monotonic() - started
    assert "DOCTYPE" in results[0].error and "refused" in results[0].error
    assert not results[0].servers
    assert "SECRET-MARKER" not in repr(results)
    assert [r.path for r in web.requests if "evil" in r.path] == []
    assert elapsed < 1.0


def test_the_same_servers_without_a_doctype_are_read(resolver, cert, ca_file):
    # The healthy twin of the hostile documents: entities written out.
    document = (
        b"<clientConfig><incomingServer type='imap'><hostname>imap.example.test</hostname>"
        b"<socketType>SSL</socketType></incomingServer></clientConfig>"
    )
    with HttpsServer({ROUTE: document}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert results[0].error is None
    assert results[0].servers == (
        AutoconfigServer(Protocol.IMAP, "imap.example.test", 993, Security.TLS),
    )


def test_document_without_servers(resolver, cert, ca_file):
    with HttpsServer({ROUTE: b"<clientConfig/>"}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "lists no IMAP, POP3 or SMTP server" in results[0].error


def test_oversized_body_is_refused(resolver, cert, ca_file):
    huge = CONFIG.replace(b"</clientConfig>", b"<!--" + b"x" * MAX_BODY + b"--></clientConfig>")
    with HttpsServer({ROUTE: huge}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "larger than 1 MiB" in results[0].error


def test_oversized_body_without_content_length_is_cut(resolver, cert, ca_file):
    huge = b"<clientConfig>" + b" " * (MAX_BODY + 10) + b"</clientConfig>"
    # A close-delimited body (no Content-Length) must be capped while reading.
    reply = Reply(body=huge, headers={"Content-Length": ""})
    with HttpsServer({ROUTE: reply}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "larger than 1 MiB" in results[0].error


def test_body_just_under_the_cap_is_read(resolver, cert, ca_file):
    padding = MAX_BODY - len(CONFIG) - 10
    big = CONFIG.replace(b"</clientConfig>", b"<!--" + b"x" * padding + b"--></clientConfig>")
    assert len(big) <= MAX_BODY
    with HttpsServer({ROUTE: big}, cert, address=WEB):
        (result,) = fetch(resolver, ca_file=ca_file)
    assert result.servers == EXPECTED


def test_redirect_is_followed(resolver, cert, ca_file):
    routes = {
        ROUTE: Reply(status=302, headers={"Location": "/moved.xml"}),
        "autoconfig.example.test/moved.xml": CONFIG,
    }
    with HttpsServer(routes, cert, address=WEB):
        (result,) = fetch(resolver, ca_file=ca_file)
    assert result.servers == EXPECTED


def test_redirect_loop_stops(resolver, cert, ca_file):
    with HttpsServer({ROUTE: Reply(status=301, headers={"Location": URL})}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert results[0].error == "more than 3 redirects"


def test_redirect_to_plain_http_is_refused(resolver, cert, ca_file):
    location = "http://autoconfig.example.test/mail/config-v1.1.xml"
    with HttpsServer({ROUTE: Reply(status=302, headers={"Location": location})}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file)
    assert "only https" in results[0].error


def test_connection_refused_is_recorded(resolver):
    results = fetch(resolver, "refused.test")
    assert all("cannot connect" in r.error for r in results)


def test_silent_server_is_bounded_by_the_timeout(resolver, ca_file):
    with silent_listener(SILENT):
        started = time.monotonic()
        results = fetch(resolver, "silent.test", ca_file=ca_file, timeout=0.3)
        elapsed = time.monotonic() - started
    assert all("timed out" in r.error for r in results)
    assert elapsed < 1.5


def test_a_handshake_dripped_byte_by_byte_is_bounded_as_a_whole(resolver, ca_file):
    # A TLS record header, then its body one byte every 0.2 s: every read is
    # well within the timeout, so only a bound on the whole handshake ends it
    # (the transport's, shared with the mail probes). CPython's blocking
    # handshake happens to be bounded as a whole as well (the socket timeout
    # is one deadline for do_handshake); this guards the bound either way.
    record = b"\x16\x03\x03\x00\x40" + b"\x00" * 64
    with ScriptedServer(SILENT, 443, drip_forever(record, 0.2)):
        started = time.monotonic()
        results = fetch(resolver, "silent.test", ca_file=ca_file, timeout=0.8, deadline=10.0)
        elapsed = time.monotonic() - started
    assert all("TLS handshake with" in r.error and "timed out" in r.error for r in results)
    assert elapsed < 2 * 0.8 + 1.0  # one bound per URL tried


def test_slow_answer_is_bounded_by_the_deadline(resolver, cert, ca_file):
    with HttpsServer({ROUTE: Reply(body=CONFIG, delay=2.0)}, cert, address=WEB):
        started = time.monotonic()
        results = fetch(resolver, ca_file=ca_file, timeout=5.0, deadline=0.6)
        elapsed = time.monotonic() - started
    assert not any(r.servers for r in results)
    assert elapsed < 1.5


def test_expired_deadline_fetches_nothing(resolver, cert, ca_file):
    with HttpsServer({ROUTE: CONFIG}, cert, address=WEB) as web:
        results = fetch(resolver, ca_file=ca_file, deadline=0.0)
    assert all(r.error for r in results)
    assert not web.requests


@pytest.mark.parametrize("drip", [0.2])
def test_a_server_dripping_its_answer_is_bounded_as_a_whole(resolver, cert, ca_file, drip):
    # Each byte arrives well within the per-read timeout; only a bound on the
    # whole exchange stops a slowloris answer.
    with HttpsServer({ROUTE: Reply(body=CONFIG, drip=drip)}, cert, address=WEB):
        started = time.monotonic()
        results = fetch(resolver, ca_file=ca_file, timeout=1.0, deadline=10.0)
        elapsed = time.monotonic() - started
    assert "did not answer the HTTP request in time" in results[0].error
    assert elapsed < 2.0 + 1.0  # one step per URL tried, not one per byte


def test_a_dripping_answer_that_completes_in_time_is_read(resolver, cert, ca_file):
    with HttpsServer({ROUTE: Reply(body=CONFIG, drip=0.0005)}, cert, address=WEB):
        results = fetch(resolver, ca_file=ca_file, timeout=5.0, deadline=10.0)
    assert results[0].servers
