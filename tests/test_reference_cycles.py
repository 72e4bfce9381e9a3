"""A check leaves no garbage that only Python's cycle collector can free.

An exception kept in a future or a list, whose traceback holds the frames
that refer to it, is such a cycle: it keeps every frame of the failed
lookup (and its DNS messages) alive until the next full collection. A
batch worker made ~1,600 of these objects per domain (NXDOMAIN guesses,
NODATA SRV records), and collecting them took ~1 s of its ~6 s of CPU in a
batch of 1,000 domains. Counted here with the collector off and every
collected object saved.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from maildiag.limits import HostLimiter
from maildiag.model import Outcome
from maildiag.runner import CheckRequest, ProbeCache, diagnose
from maildiag.tasks import ThreadPool
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import FakeMailHost

DOMAIN = "kreis.test"
HOST = "mail.kreis.test"
DNS_ADDRESS = "127.0.6.42"


def _zone(address: str) -> dict:
    # No autoconfig host, no guessed host, two services without SRV records:
    # most lookups of a check fail, as they do for most real domains.
    return {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        "_imap._tcp": {"SRV": ["0 1 143 mail"]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail"]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
    }


@contextmanager
def _garbage_saved() -> Iterator[list[object]]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        saved: list[object] = []
        yield saved
        gc.collect()
        saved.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def _cycles_of_errors(garbage: list[object]) -> collections.Counter[str]:
    kinds = collections.Counter(type(o).__name__ for o in garbage)
    return collections.Counter(
        {k: n for k, n in kinds.items() if k in ("frame", "traceback", "DnsLookupError")}
    )


@pytest.mark.parametrize("shared", [False, True], ids=["alone", "batch"])
@pytest.mark.parametrize("servers", ["refused", "healthy"])
def test_a_check_leaves_no_cycle_of_errors_and_frames(pki, loopback_address, servers, shared):
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer({DOMAIN: _zone(loopback_address)}, DNS_ADDRESS))
        if servers == "healthy":
            stack.enter_context(
                FakeMailHost(loopback_address, pki.good([HOST]).server_context(), hostname=HOST)
            )
        threads = stack.enter_context(ThreadPool())
        shared_by_batch: dict[str, object] = (
            {"host_limiter": HostLimiter(4), "probe_cache": ProbeCache(), "threads": threads}
            if shared
            else {}
        )
        request = CheckRequest(
            DOMAIN,
            nameserver=dns.nameserver,
            ca_file=str(pki.ca_pem_path),
            timeout=5,
            deadline=20,
            address=f"info@{DOMAIN}",  # the inbound check too
        )
        diagnose(request, **shared_by_batch)  # type: ignore[arg-type]  # imports, caches
        with _garbage_saved() as garbage:
            diagnosis = diagnose(request, **shared_by_batch)  # type: ignore[arg-type]

    expected = Outcome.OK if servers == "healthy" else Outcome.REFUSED
    assert [r.outcome for r in diagnosis.results] == [expected] * len(diagnosis.results)
    assert len(diagnosis.results) == 6
    assert diagnosis.discovery.autoconfig and diagnosis.discovery.autoconfig[0].error
    assert _cycles_of_errors(garbage) == {}, collections.Counter(
        type(o).__name__ for o in garbage
    ).most_common(10)
