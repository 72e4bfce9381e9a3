"""Discovery against the lab DNS server: which endpoints, from which source.

Every test names its nameserver explicitly (127.0.0.50); all addresses in
the zones are loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import socket
import time

import pytest
import trustme

from maildiag.deadline import Deadline
from maildiag.discovery import Overrides, discover, foreign_autoconfig_hosts
from maildiag.dns import Answer, InvalidDomain, Lookups, Resolver
from maildiag.model import (
    AutoconfigResult,
    AutoconfigServer,
    Endpoint,
    MxRecord,
    Protocol,
    Security,
    SrvRecord,
)
from tests.lab.dns_server import DnsServer
from tests.lab.https_server import HttpsServer

IMAP, POP3, SMTP = Protocol.IMAP, Protocol.POP3, Protocol.SMTP
STARTTLS, TLS = Security.STARTTLS, Security.TLS
LOCAL = "127.0.0.31"

ZONES = {
    # Everything announced by SRV (RFC 6186 / RFC 8314).
    "srv.test": {
        "@": {"MX": ["10 mx.srv.test."]},
        "_imap._tcp": {"SRV": ["0 1 143 mail.srv.test."]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail.srv.test."]},
        "_pop3._tcp": {"SRV": ["0 1 110 mail.srv.test."]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail.srv.test."]},
        "_submission._tcp": {"SRV": ["0 1 587 smtp.srv.test."]},
        "_submissions._tcp": {"SRV": ["0 1 465 smtp.srv.test."]},
        "mail": {"A": [LOCAL]},
        "smtp": {"A": [LOCAL]},
    },
    # POP3 deliberately not offered; a non-standard submission port.
    "partial.test": {
        "_pop3._tcp": {"SRV": ["0 0 0 ."]},
        "_pop3s._tcp": {"SRV": ["0 0 0 ."]},
        "_submission._tcp": {"SRV": ["0 1 2587 smtp.partial.test."]},
        "mail": {"A": [LOCAL]},
    },
    # The same as partial.test, without the "." records.
    "offered.test": {"mail": {"A": [LOCAL]}},
    # Several SRV records: lowest priority, then highest weight.
    "choice.test": {
        "_imaps._tcp": {
            "SRV": [
                "20 100 993 backup.choice.test.",
                "10 5 993 light.choice.test.",
                "10 50 9993 heavy.choice.test.",
            ]
        },
    },
    # Only the usual host names.
    "guess.test": {
        "@": {"A": [LOCAL]},
        "imap": {"A": [LOCAL]},
        "pop3": {"AAAA": ["::1"]},
        "pop": {"A": [LOCAL]},
        "smtp": {"TXT": ['"no address here"']},
        "mail": {"A": [LOCAL]},
    },
    "mxonly.test": {"@": {"MX": ["20 mx2.mxonly.test.", "10 MX1.mxonly.test."]}},
    "nullmx.test": {"@": {"MX": ["0 ."]}},
    "empty.test": {},
    "brokenmx.test": {
        "@": {"MX": "SERVFAIL"},
        "_imaps._tcp": {"SRV": ["0 1 993 mail.brokenmx.test."]},
    },
    "slowsrv.test": {
        "@": {"MX": ["10 mail.slowsrv.test."]},
        "_imaps._tcp": "DROP",
        "mail": {"A": [LOCAL]},
    },
    "dropped.test": "DROP",
    "müller.test": {
        "_imaps._tcp": {"SRV": ["0 1 993 mail.müller.test."]},
        "mail": {"A": [LOCAL]},
    },
    # Port 0 (issue #11): unusable records; the usual names are used instead.
    "srvzero.test": {
        "_imaps._tcp": {"SRV": ["0 1 0 mail.srvzero.test."]},
        "_submission._tcp": {"SRV": ["0 1 0 out.provider.test.", "10 1 2587 smtp.srvzero.test."]},
        "_pop3s._tcp": {"SRV": ["0 1 0 pop.provider.test."]},
        "mail": {"A": [LOCAL]},
    },
    # Autoconfig over HTTPS (127.0.0.51:443) competing with SRV and guesses.
    "ac.test": {
        "autoconfig": {"A": ["127.0.0.51"]},
        "_submissions._tcp": {"SRV": ["0 1 465 srv-smtp.ac.test."]},
        "imap": {"A": [LOCAL]},
    },
}

AUTOCONFIG = b"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="ac.test">
  <incomingServer type="imap"><hostname>imap.%EMAILDOMAIN%</hostname>
    <port>993</port><socketType>SSL</socketType></incomingServer>
  <incomingServer type="pop3"><hostname>pop.ac.test</hostname>
    <port>995</port><socketType>SSL</socketType></incomingServer>
  <outgoingServer type="smtp"><hostname>ac-smtp.ac.test</hostname>
    <port>465</port><socketType>SSL</socketType></outgoingServer>
</emailProvider></clientConfig>
"""


@pytest.fixture(scope="module")
def server():
    with DnsServer(ZONES, address="127.0.0.50") as srv:
        yield srv


@pytest.fixture
def resolver(server):
    return Resolver(server.nameserver, timeout=0.5)


def run(domain, resolver, overrides=None, deadline=5.0, **kw):
    kw.setdefault("autoconfig", False)
    return discover(domain, resolver, overrides or Overrides(), deadline=Deadline(deadline), **kw)


def slots(discovery):
    return {(e.protocol, e.security): e for e in discovery.endpoints}


# -- SRV ---------------------------------------------------------------------


def test_srv_gives_all_six_endpoints(resolver):
    found = run("srv.test", resolver)
    assert found.domain_exists
    assert found.problems == ()
    assert [(e.protocol, e.security, e.host, e.port) for e in found.endpoints] == [
        (IMAP, STARTTLS, "mail.srv.test", 143),
        (IMAP, TLS, "mail.srv.test", 993),
        (POP3, STARTTLS, "mail.srv.test", 110),
        (POP3, TLS, "mail.srv.test", 995),
        (SMTP, STARTTLS, "smtp.srv.test", 587),
        (SMTP, TLS, "smtp.srv.test", 465),
    ]
    assert SrvRecord("_imaps._tcp", 0, 1, 993, "mail.srv.test") in found.srv
    assert found.mx == (MxRecord(10, "mx.srv.test"),)


def test_sources_of_one_endpoint_are_merged(resolver):
    by_slot = slots(run("srv.test", resolver))
    # mail.srv.test is announced by SRV and is also one of the usual names.
    assert by_slot[(IMAP, TLS)].sources == ("srv:_imaps._tcp", "guess:mail.srv.test")
    assert by_slot[(SMTP, TLS)].sources == ("srv:_submissions._tcp", "guess:smtp.srv.test")


def test_srv_dot_means_not_offered(resolver):
    found = run("partial.test", resolver)
    by_slot = slots(found)
    assert (POP3, STARTTLS) not in by_slot
    assert (POP3, TLS) not in by_slot
    assert SrvRecord("_pop3._tcp", 0, 0, 0, ".") in found.srv
    assert next(r for r in found.srv if r.service == "_pop3s._tcp").not_offered


def test_without_srv_dot_the_guess_is_used(resolver):
    by_slot = slots(run("offered.test", resolver))
    assert by_slot[(POP3, TLS)] == Endpoint(
        POP3, "mail.offered.test", 995, TLS, ("guess:mail.offered.test",)
    )


def test_srv_non_standard_port(resolver):
    endpoint = slots(run("partial.test", resolver))[(SMTP, STARTTLS)]
    assert (endpoint.host, endpoint.port) == ("smtp.partial.test", 2587)
    assert endpoint.sources == ("srv:_submission._tcp",)


def test_standard_port_when_srv_has_none(resolver):
    endpoint = slots(run("partial.test", resolver))[(SMTP, TLS)]
    assert (endpoint.host, endpoint.port) == ("mail.partial.test", 465)


def test_srv_port_zero_is_not_probed_and_the_usual_port_is(resolver):
    found = run("srvzero.test", resolver)
    assert all(0 < e.port < 65536 for e in found.endpoints)
    assert SrvRecord("_imaps._tcp", 0, 1, 0, "mail.srvzero.test") in found.srv
    assert next(r for r in found.srv if r.service == "_imaps._tcp").invalid
    by_slot = slots(found)
    # The usual name on the standard port; the record's own target (the same
    # host here) is merged in as a guess, never as "srv:".
    assert by_slot[(IMAP, TLS)] == Endpoint(
        IMAP, "mail.srvzero.test", 993, TLS, ("guess:mail.srvzero.test",)
    )
    # A valid record of lower preference beats the unusable one.
    submission = by_slot[(SMTP, STARTTLS)]
    assert (submission.host, submission.port, submission.sources) == (
        "smtp.srvzero.test",
        2587,
        ("srv:_submission._tcp",),
    )


def test_srv_port_zero_target_is_the_last_guess_before_mx(resolver):
    # Of the usual POP3 names only mail. resolves: it comes before the
    # record's target; with no usual name at all, the target on 995 is used.
    by_slot = slots(run("srvzero.test", resolver))
    assert (by_slot[(POP3, TLS)].host, by_slot[(POP3, TLS)].port) == ("mail.srvzero.test", 995)
    srv = (SrvRecord("_pop3s._tcp", 0, 1, 0, "pop.provider.test"),)
    from maildiag.discovery import _choose_endpoints

    chosen = _choose_endpoints("srvzero.test", Overrides(), {}, srv, (), set(), ())
    assert [(e.protocol, e.security, e.host, e.port, e.sources) for e in chosen] == [
        (POP3, TLS, "pop.provider.test", 995, ("guess:pop.provider.test",))
    ]


def test_srv_priority_then_weight(resolver):
    endpoint = slots(run("choice.test", resolver))[(IMAP, TLS)]
    assert (endpoint.host, endpoint.port) == ("heavy.choice.test", 9993)


# -- overrides ---------------------------------------------------------------


def test_override_host_beats_srv(resolver):
    overrides = Overrides(hosts={IMAP: "Other.Example.TEST"})
    by_slot = slots(run("srv.test", resolver, overrides))
    assert by_slot[(IMAP, TLS)] == Endpoint(IMAP, "other.example.test", 993, TLS, ("option",))
    assert by_slot[(IMAP, STARTTLS)].host == "other.example.test"
    assert by_slot[(POP3, TLS)].host == "mail.srv.test"  # other protocols untouched


def test_override_naming_the_srv_host_keeps_both_sources(resolver):
    overrides = Overrides(hosts={IMAP: "mail.srv.test"})
    endpoint = slots(run("srv.test", resolver, overrides))[(IMAP, TLS)]
    assert endpoint.sources == ("option", "srv:_imaps._tcp", "guess:mail.srv.test")


def test_override_port_beats_srv_port(resolver):
    overrides = Overrides(ports={(SMTP, STARTTLS): 10587})
    endpoint = slots(run("partial.test", resolver, overrides))[(SMTP, STARTTLS)]
    assert (endpoint.host, endpoint.port) == ("smtp.partial.test", 10587)


def test_override_ip_literal_host(resolver):
    overrides = Overrides(hosts={SMTP: "[::1]"})
    assert slots(run("srv.test", resolver, overrides))[(SMTP, TLS)].host == "::1"


def test_override_beats_srv_dot(resolver):
    overrides = Overrides(hosts={POP3: "pop.elsewhere.test"})
    by_slot = slots(run("partial.test", resolver, overrides))
    assert by_slot[(POP3, TLS)] == Endpoint(POP3, "pop.elsewhere.test", 995, TLS, ("option",))


def test_bad_override_host_is_refused(resolver):
    with pytest.raises(InvalidDomain):
        run("srv.test", resolver, Overrides(hosts={IMAP: "bad_host..test"}))


def test_bad_override_port_is_refused():
    with pytest.raises(ValueError):
        Overrides(ports={(IMAP, TLS): 70000})


# -- guesses and MX ----------------------------------------------------------


def test_usual_host_names_that_resolve(resolver):
    by_slot = slots(run("guess.test", resolver))
    assert by_slot[(IMAP, TLS)].host == "imap.guess.test"
    assert by_slot[(IMAP, TLS)].sources == ("guess:imap.guess.test",)
    assert by_slot[(POP3, TLS)].host == "pop3.guess.test"  # IPv6 only still resolves
    # smtp.guess.test exists but has no address: the next name is used.
    assert by_slot[(SMTP, STARTTLS)].sources == ("guess:mail.guess.test",)


def test_guesses_that_do_not_resolve_are_not_used(resolver):
    found = run("empty.test", resolver)
    assert found.domain_exists
    assert found.endpoints == ()
    assert found.problems == ()


def test_first_mx_is_the_last_resort(resolver):
    found = run("mxonly.test", resolver)
    assert found.mx == (MxRecord(10, "mx1.mxonly.test"), MxRecord(20, "mx2.mxonly.test"))
    assert len(found.endpoints) == 6
    assert {(e.host, e.sources) for e in found.endpoints} == {("mx1.mxonly.test", ("mx",))}


def test_null_mx_gives_no_endpoint(resolver):
    # RFC 7505: "0 ." says the domain receives no mail at all.
    found = run("nullmx.test", resolver)
    assert found.mx == (MxRecord(0, "."),)
    assert found.endpoints == ()


# -- failures ----------------------------------------------------------------


def test_nonexistent_domain(resolver):
    found = run("missing.srv.test", resolver)
    assert not found.domain_exists
    assert found.endpoints == ()
    assert [(p.query, p.kind) for p in found.problems] == [("missing.srv.test SOA", "nxdomain")]


def test_domain_without_records_exists(resolver):
    assert run("empty.test", resolver).domain_exists


def test_servfail_on_mx_is_a_problem_not_a_failure(resolver):
    found = run("brokenmx.test", resolver)
    assert [(p.query, p.kind) for p in found.problems] == [("brokenmx.test MX", "servfail")]
    assert found.domain_exists
    assert found.mx == ()
    assert slots(found)[(IMAP, TLS)].host == "mail.brokenmx.test"


def test_dropped_srv_query_times_out_alone(resolver):
    started = time.monotonic()
    found = run("slowsrv.test", resolver)
    assert time.monotonic() - started < 1.5
    assert [(p.query, p.kind) for p in found.problems] == [
        ("_imaps._tcp.slowsrv.test SRV", "timeout")
    ]
    # The other lookups still did their work.
    assert slots(found)[(IMAP, TLS)].sources == ("guess:mail.slowsrv.test", "mx")


def test_dropped_zone_is_bounded_by_the_timeout(resolver):
    started = time.monotonic()
    found = run("dropped.test", resolver)
    assert time.monotonic() - started < 1.5
    assert found.endpoints == ()
    assert found.problems and {p.kind for p in found.problems} == {"timeout"}
    assert found.domain_exists  # silence proves nothing


def test_unreachable_nameserver_fails_fast():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.59", 0))
        port = s.getsockname()[1]
    resolver = Resolver(f"127.0.0.59:{port}", timeout=5.0)
    started = time.monotonic()
    found = run("srv.test", resolver, deadline=10.0)
    assert time.monotonic() - started < 1.0
    assert found.endpoints == ()
    assert {p.kind for p in found.problems} == {"no_nameservers"}
    assert found.seconds < 1.0


def test_silent_nameserver_is_bounded_by_the_deadline():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.58", 0))
        resolver = Resolver(f"127.0.0.58:{silent.getsockname()[1]}", timeout=30.0)
        started = time.monotonic()
        found = run("srv.test", resolver, deadline=0.8, autoconfig=True)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert {p.kind for p in found.problems} == {"timeout"}
    assert all(r.error for r in found.autoconfig)


class _ExplodingMxLookups(Lookups):
    def query(self, name, rdtype):
        if rdtype == "MX":
            return Answer(self, lambda: True, _explode)
        return super().query(name, rdtype)


def _explode():
    raise RuntimeError("boom")


class _ExplodingMx(Resolver):
    """Its MX answer is a bug in maildiag: reading it raises."""

    def lookups(self, deadline=None):
        return _ExplodingMxLookups(self, deadline)


def test_a_crashing_lookup_does_not_hide_the_others(server):
    found = run("srv.test", _ExplodingMx(server.nameserver, timeout=0.5))
    assert [(p.query, p.kind) for p in found.problems] == [("srv.test MX", "error")]
    assert "boom" in found.problems[0].detail
    assert len(found.endpoints) == 6


def test_seconds_is_recorded(resolver):
    found = run("srv.test", resolver)
    assert 0 < found.seconds < 1.0


# -- IDN ---------------------------------------------------------------------


def test_idn_domain(resolver):
    found = run("Müller.test", resolver)
    assert found.domain == "Müller.test"
    assert found.domain_ascii == "xn--mller-kva.test"
    endpoint = slots(found)[(IMAP, TLS)]
    assert endpoint.host == "mail.xn--mller-kva.test"
    assert endpoint.sources[0] == "srv:_imaps._tcp"


@pytest.mark.parametrize("domain", ["alice@müller.test", "müller..test", ""])
def test_malformed_domain_raises(resolver, domain):
    with pytest.raises(InvalidDomain):
        run(domain, resolver)


# -- autoconfig --------------------------------------------------------------


@pytest.fixture
def autoconfig_web(tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert("autoconfig.ac.test")
    routes = {"autoconfig.ac.test/mail/config-v1.1.xml": AUTOCONFIG}
    with HttpsServer(routes, cert, address="127.0.0.51"):
        yield str(ca_file)


def test_autoconfig_ranks_below_srv_and_above_guesses(resolver, autoconfig_web):
    found = run("ac.test", resolver, autoconfig=True, ca_file=autoconfig_web)
    assert found.autoconfig[0].error is None
    by_slot = slots(found)
    # SRV wins for SMTP/TLS; autoconfig and the guess agree on IMAP/TLS.
    assert by_slot[(SMTP, TLS)].host == "srv-smtp.ac.test"
    assert by_slot[(IMAP, TLS)].sources == ("autoconfig", "guess:imap.ac.test")
    assert by_slot[(POP3, TLS)] == Endpoint(POP3, "pop.ac.test", 995, TLS, ("autoconfig",))
    # Autoconfig said nothing about IMAP with STARTTLS: the guess stands.
    assert by_slot[(IMAP, STARTTLS)].sources == ("guess:imap.ac.test",)


def test_autoconfig_failure_leaves_dns_results(resolver, autoconfig_web):
    # Without the test CA the certificate is untrusted: recorded, not raised.
    found = run("ac.test", resolver, autoconfig=True, ca_file=None)
    assert "not trusted" in found.autoconfig[0].error
    assert (POP3, TLS) not in slots(found)
    assert slots(found)[(IMAP, TLS)].sources == ("guess:imap.ac.test",)


def test_autoconfig_can_be_skipped(resolver, autoconfig_web):
    assert run("ac.test", resolver, autoconfig=False).autoconfig == ()


# -- autoconfig that names another domain's servers ----------------------------------


def _ac(*hosts: str, final_url: str | None = None) -> AutoconfigResult:
    servers = tuple(AutoconfigServer(Protocol.IMAP, h, 993, Security.TLS) for h in hosts)
    return AutoconfigResult(
        "https://autoconfig.kunde.test/mail/config-v1.1.xml", servers, final_url=final_url
    )


def test_autoconfig_hosts_of_the_domain_and_its_mx_provider_are_its_own():
    mx = (MxRecord(10, "mx1.provider.test"),)
    found = foreign_autoconfig_hosts(
        "kunde.test", (_ac("imap.kunde.test", "kunde.test", "imap.provider.test"),), mx
    )
    assert found == ()


def test_autoconfig_hosts_elsewhere_are_foreign():
    mx = (MxRecord(10, "mx1.provider.test"),)
    found = foreign_autoconfig_hosts(
        "kunde.test", (_ac("imap.kunde.test", "imap.elsewhere.test", "evilkunde.test"),), mx
    )
    assert found == ("imap.elsewhere.test", "evilkunde.test")


def test_a_redirect_to_another_domain_makes_every_host_of_the_document_foreign():
    redirected = _ac("imap.kunde.test", final_url="https://autoconfig.elsewhere.test/x.xml")
    assert foreign_autoconfig_hosts("kunde.test", (redirected,), ()) == ("imap.kunde.test",)
    within = _ac("imap.kunde.test", final_url="https://kunde.test/.well-known/x.xml")
    assert foreign_autoconfig_hosts("kunde.test", (within,), ()) == ()


def test_discovery_asks_every_question_at_once_from_one_socket(server, resolver):
    # Many questions in flight from one thread (dns.Lookups), not a thread each.
    server.udp_peers.clear()
    server.log.clear()
    found = run("srv.test", resolver)
    assert found.problems == ()
    questions = [(name, rdtype) for _, name, rdtype in server.log]
    assert ("srv.test.", "MX") in questions and ("_imaps._tcp.srv.test.", "SRV") in questions
    assert len(questions) >= 10
    assert len(set(server.udp_peers)) == 1
