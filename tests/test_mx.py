"""Where incoming mail goes: MX records from the lab DNS server, and the findings about them.

Null MX (RFC 7505), an MX host without an address, an MX behind a CNAME
(RFC 2181 §10.3) and an MX at another provider than the mailbox, each with
its twin that must stay quiet.
"""

from __future__ import annotations

import pytest

from maildiag.analysis import analyse
from maildiag.deadline import Deadline
from maildiag.discovery import Overrides, discover
from maildiag.dns import Resolver
from maildiag.model import (
    Discovery,
    Endpoint,
    MxHost,
    MxRecord,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Severity,
)
from maildiag.providers import provider_domain, same_provider
from tests.lab.dns_server import DnsServer

LOCAL = "127.0.0.33"

ZONES = {
    "nullmx.test": {"@": {"MX": ["0 ."]}},
    "alias.test": {
        "@": {"MX": ["10 mx.alias.test."]},
        "mx": {"CNAME": ["real-mx.alias.test."]},
        "real-mx": {"A": [LOCAL]},
    },
    "nowhere.test": {
        "@": {"MX": ["10 mx1.nowhere.test.", "20 mx2.nowhere.test."]},
        "mx2": {"A": [LOCAL]},
    },
    "gone.test": {"@": {"MX": ["10 mx.gone.test."]}},
    "fine.test": {"@": {"MX": ["10 mx.fine.test."]}, "mx": {"A": [LOCAL], "AAAA": ["::1"]}},
}


@pytest.fixture(scope="module")
def resolver():
    with DnsServer(ZONES, address="127.0.0.32") as server:
        yield Resolver(server.nameserver, timeout=0.5)


def found(domain: str, resolver: Resolver) -> Discovery:
    return discover(domain, resolver, Overrides(), deadline=Deadline(5), autoconfig=False)


def mx_codes(discovery: Discovery, results=()) -> dict[str, Severity]:
    return {f.code: f.severity for f in analyse(discovery, results) if f.code.startswith("MX_")}


def test_a_null_mx_is_reported_and_its_host_not_looked_up(resolver):
    discovery = found("nullmx.test", resolver)
    assert discovery.mx == (MxRecord(0, "."),)
    assert discovery.mx_hosts == ()
    codes = mx_codes(discovery)
    assert codes == {"MX_NULL": Severity.WARNING}
    finding = next(f for f in analyse(discovery, ()) if f.code == "MX_NULL")
    assert "RFC 7505" in finding.explanation and "nullmx.test. IN MX 0 ." in finding.explanation


def test_a_resolving_mx_gets_no_mx_finding(resolver):
    discovery = found("fine.test", resolver)
    assert discovery.mx_hosts == (MxHost("mx.fine.test", (LOCAL, "::1")),)
    assert mx_codes(discovery) == {}


def test_an_mx_behind_a_cname_names_the_real_host(resolver):
    discovery = found("alias.test", resolver)
    assert discovery.mx_hosts == (MxHost("mx.alias.test", (LOCAL,), cname="real-mx.alias.test"),)
    finding = next(f for f in analyse(discovery, ()) if f.code == "MX_CNAME")
    assert finding.severity is Severity.WARNING
    assert "'alias.test. IN MX 10 real-mx.alias.test.'" in finding.fix


def test_an_mx_host_without_address_is_critical_when_no_other_mx_resolves(resolver):
    discovery = found("gone.test", resolver)
    (host,) = discovery.mx_hosts
    assert (host.host, host.error_kind, host.addresses) == ("mx.gone.test", "nxdomain", ())
    assert mx_codes(discovery) == {"MX_HOST_UNRESOLVED": Severity.CRITICAL}
    # An absent name is an answer, not a failed lookup.
    assert not discovery.problems


def test_an_unresolved_backup_beside_a_working_mx_is_a_warning(resolver):
    discovery = found("nowhere.test", resolver)
    assert [h.host for h in discovery.mx_hosts] == ["mx1.nowhere.test", "mx2.nowhere.test"]
    finding = next(f for f in analyse(discovery, ()) if f.code == "MX_HOST_UNRESOLVED")
    assert finding.severity is Severity.WARNING
    assert finding.details["mx_host"] == "mx1.nowhere.test"


# -- MX at another provider than the mailbox (no I/O) ----------------------------------


def _discovery(mx: str, address: str = "192.0.2.25") -> Discovery:
    return Discovery(
        domain="kunde.test",
        domain_ascii="kunde.test",
        domain_exists=True,
        mx=(MxRecord(10, mx), MxRecord(20, "backup.mxservice.test")),
        mx_hosts=(MxHost(mx, (address,)),),
    )


def _imap(host: str, address: str = "198.51.100.7") -> ProbeResult:
    endpoint = Endpoint(Protocol.IMAP, host, 993, Security.TLS, ("srv:_imaps._tcp",))
    return ProbeResult(endpoint, Outcome.OK, address=address)


def test_an_mx_at_the_old_provider_is_reported_with_both_providers():
    discovery = _discovery("mx01.oldhoster.test")
    findings = [
        f for f in analyse(discovery, [_imap("imap.newhoster.test")]) if f.code.startswith("MX_")
    ]
    assert [f.code for f in findings] == ["MX_OTHER_PROVIDER"]
    (finding,) = findings
    assert finding.details["mx_provider"] == "oldhoster.test"
    assert finding.details["mailbox_provider"] == "newhoster.test"
    assert "mx01.oldhoster.test" in finding.explanation
    assert "imap.newhoster.test" in finding.explanation


@pytest.mark.parametrize(
    ("mx", "imap", "address"),
    [
        ("mx01.hoster.test", "imap.hoster.test", "198.51.100.9"),  # same provider by name
        ("mx.eu.hoster.test", "imap.hoster.test", "198.51.100.9"),  # a deeper name of it
        ("mx01.oldhoster.test", "imap.newhoster.test", "198.51.100.7"),  # the same machine
        ("aspmx.l.google.com", "imap.gmail.com", "198.51.100.9"),  # one provider, two names
        ("mx.kunde.test", "imap.newhoster.test", "198.51.100.9"),  # the customer's own names
        ("mx.oldhoster.test", "mail.kunde.test", "198.51.100.9"),  # say nothing about providers
    ],
)
def test_no_other_provider_finding_when_names_or_addresses_agree(mx, imap, address):
    discovery = _discovery(mx, address="198.51.100.7")
    assert "MX_OTHER_PROVIDER" not in mx_codes(discovery, [_imap(imap, address)])


def test_an_unreachable_mailbox_server_is_not_compared():
    unreachable = ProbeResult(
        Endpoint(Protocol.IMAP, "imap.newhoster.test", 993, Security.TLS), Outcome.REFUSED
    )
    assert "MX_OTHER_PROVIDER" not in mx_codes(_discovery("mx.oldhoster.test"), [unreachable])


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("mx1.provider.example", "provider.example"),
        ("provider.example", "provider.example"),
        ("mx.eu.provider.example", "provider.example"),
        ("mx.provider.co.uk", "provider.co.uk"),
        ("MX.Provider.Example.", "provider.example"),
    ],
)
def test_provider_domain_is_the_registrable_part(host, provider):
    assert provider_domain(host) == provider


def test_provider_families_join_different_names_of_one_provider():
    assert same_provider("kunde-test.mail.protection.outlook.com", "outlook.office365.com")
    assert not same_provider("mx.gmx.test", "imap.web.test")
