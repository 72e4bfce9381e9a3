"""Each host name is asked once per run: discovery's answers reach the probes.

A check resolves the guessed host names and the MX hosts during discovery,
and the SRV targets the moment their records arrive; the probes and the
inbound path take those answers instead of asking again. Counted at our own
DNS server, with nothing listening on the mail ports (every probe is refused,
after its lookup).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import pytest

from maildiag.model import Outcome
from maildiag.runner import CheckRequest, diagnose
from tests.lab.dns_server import DnsServer

DOMAIN = "once.test"
DNS_ADDRESS = "127.0.6.40"


def _zone(address: str) -> dict:
    return {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        # Two SRV records name a host that is neither guessed nor an MX host.
        "store": {"A": [address]},
        "_imap._tcp": {"SRV": ["0 1 143 mail"]},
        "_imaps._tcp": {"SRV": ["0 1 993 store"]},
        "_pop3s._tcp": {"SRV": ["0 1 995 store"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
    }


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


def _address_questions(log: collections.abc.Iterable[tuple[str, str, str]]) -> collections.Counter:
    return collections.Counter((name, rdtype) for _, name, rdtype in log if rdtype in ("A", "AAAA"))


def test_every_host_is_resolved_once_per_run(loopback_address):
    with DnsServer({DOMAIN: _zone(loopback_address)}, DNS_ADDRESS) as dns:
        diagnosis = diagnose(
            CheckRequest(
                DOMAIN,
                nameserver=dns.nameserver,
                timeout=5,
                deadline=20,
                autoconfig=False,
                address=f"info@{DOMAIN}",  # the inbound path asks the MX host too
            )
        )
        questions = _address_questions(dns.log)

    probed = {r.endpoint.host for r in diagnosis.results}
    assert {"mail.once.test", "store.once.test"} <= probed
    assert all(r.outcome is Outcome.REFUSED for r in diagnosis.results if r.endpoint.host in probed)
    assert diagnosis.inbound is not None
    for host in ("mail.once.test.", "store.once.test."):
        assert questions[(host, "A")] == 1, questions
        assert questions[(host, "AAAA")] == 1, questions
    assert max(questions.values()) == 1, questions


def test_an_srv_target_that_does_not_exist_is_asked_once_and_reported_unresolved(loopback_address):
    # The prefetch started by discovery learns NXDOMAIN; that is the probe's
    # answer (the same question, with the same budget, only asked earlier).
    zone = _zone(loopback_address)
    zone["_imaps._tcp"] = {"SRV": ["0 1 993 gone"]}
    with DnsServer({DOMAIN: zone}, DNS_ADDRESS) as dns:
        diagnosis = diagnose(
            CheckRequest(
                DOMAIN, nameserver=dns.nameserver, timeout=5, deadline=20, autoconfig=False
            )
        )
        questions = _address_questions(dns.log)

    gone = [r for r in diagnosis.results if r.endpoint.host == "gone.once.test"]
    assert gone and gone[0].outcome is Outcome.UNRESOLVED
    assert questions[("gone.once.test.", "A")] == 1, questions


def test_a_shared_run_asks_no_aaaa_after_no_such_name_and_both_families_otherwise():
    # Batch and exporter checks (they pass a host limiter) share the
    # nameserver with thousands of others: a guessed name that does not exist
    # costs one question there, not two; one that does is asked for both.
    from maildiag.dns import DnsLookupError, Resolver

    zone = {"mail": {"A": ["127.0.6.41"], "AAAA": ["::1"]}}
    with DnsServer({DOMAIN: zone}, DNS_ADDRESS) as dns:
        for at_once, expected in ((False, 1), (True, 2)):
            dns.log.clear()
            resolver = Resolver(dns.nameserver, timeout=2, families_at_once=at_once)
            with pytest.raises(DnsLookupError):
                resolver.addresses(f"imap.{DOMAIN}")
            # NXDOMAIN for A ends the lookup without waiting for the AAAA
            # answer: the server may still be reading that question.
            _wait_until(lambda: sum(_address_questions(dns.log).values()) >= 2, seconds=0.3)
            assert sum(_address_questions(dns.log).values()) == expected, at_once
            dns.log.clear()
            assert sorted(resolver.addresses(f"mail.{DOMAIN}")) == ["127.0.6.41", "::1"]
            assert _address_questions(dns.log) == {
                (f"mail.{DOMAIN}.", "A"): 1,
                (f"mail.{DOMAIN}.", "AAAA"): 1,
            }


def test_the_checks_of_a_batch_ask_for_their_shared_mx_host_once():
    # A provider's customer domains all name its MX host: with a probe cache
    # (batch, exporter) its addresses are asked once for every check; an MX
    # host that does not exist is not kept, each check asks (and reports) it.
    from maildiag.limits import HostLimiter
    from maildiag.runner import ProbeCache

    provider = {"mx": {"A": ["127.0.6.42"]}}
    customers = {
        f"kunde{n}": {"MX": ["10 mx.provider.test.", "20 gone.provider.test."]} for n in range(3)
    }
    zones = {"provider.test": provider, "customers.test": customers}
    with DnsServer(zones, DNS_ADDRESS) as dns:
        for cache, expected in ((ProbeCache(), 1), (None, 3)):
            dns.log.clear()
            limiter = HostLimiter(2)
            for n in range(3):
                diagnosis = diagnose(
                    CheckRequest(
                        f"kunde{n}.customers.test",
                        nameserver=dns.nameserver,
                        timeout=5,
                        deadline=20,
                        autoconfig=False,
                    ),
                    host_limiter=limiter,
                    probe_cache=cache,
                )
                hosts = {m.host: m for m in diagnosis.discovery.mx_hosts}
                assert hosts["mx.provider.test"].addresses == ("127.0.6.42",)
                assert not hosts["gone.provider.test"].addresses
            questions = _address_questions(dns.log)
            assert questions[("mx.provider.test.", "A")] == expected, questions
            assert questions[("gone.provider.test.", "A")] == 3, questions


def test_a_check_waiting_for_anothers_mx_host_lookup_ends_with_its_own_deadline():
    # The owner's lookup is still running (its nameserver is slow); the
    # waiter's deadline passes first: a timeout of the lookup, as the
    # resolver would report it, and the owner's answer is kept for the next.
    import threading
    import time

    from maildiag.deadline import Deadline
    from maildiag.dns import DnsLookupError
    from maildiag.model import DnsFailure
    from maildiag.runner import ProbeCache

    release = threading.Event()

    class SlowResolver:
        asked = 0

        def addresses_and_alias(self, host, deadline):
            SlowResolver.asked += 1
            release.wait(5)
            return ["127.0.6.43"], None

    cache = ProbeCache()
    resolver = SlowResolver()
    owner = threading.Thread(
        target=cache.mx_host_lookup, args=(resolver, "mx.provider.test", Deadline(5))
    )
    owner.start()
    while not SlowResolver.asked:
        time.sleep(0.01)
    with pytest.raises(DnsLookupError) as raised:
        cache.mx_host_lookup(resolver, "mx.provider.test", Deadline(0.2))
    assert raised.value.kind is DnsFailure.TIMEOUT
    release.set()
    owner.join()
    assert cache.mx_host_lookup(resolver, "mx.provider.test", Deadline(1)) == (["127.0.6.43"], None)
    assert SlowResolver.asked == 1
