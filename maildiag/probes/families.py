"""A dual-stack host's other IP family: the same probe over IPv6 (or IPv4), without a login.

The main probe connects to the host's first address (IPv4 before IPv6, as
``dns.Resolver.addresses`` orders them). Mail clients on a network with IPv6
try the AAAA address first, so when a name has both, the other family is
probed too, in parallel with the main probe, to the same phases; only its
outcome is kept. It never logs in: one mailbox, one login per endpoint.
"""

from __future__ import annotations

import ipaddress

from msgspec import Struct

from ..deadline import Deadline
from ..dns import DnsLookupError
from ..limits import HostLimiter
from ..model import (
    AttemptStatus,
    CheckAttempt,
    CheckError,
    CheckId,
    Endpoint,
    FamilyProbe,
    IpFamily,
)
from .endpoint import AddressLookup, ConnectWatcher, ProbeSettings, probe_endpoint


class BesideContext(Struct, frozen=True):
    """What a check that runs next to an endpoint's probe gets (``checks.Stage.BESIDE``)."""

    endpoint: Endpoint
    lookup: AddressLookup
    settings: ProbeSettings
    deadline: Deadline
    host_limiter: HostLimiter | None = None
    watcher: ConnectWatcher | None = None  # hears of the connects, like the probe's


def other_family_check(ctx: BesideContext) -> CheckAttempt[FamilyProbe]:
    """The registered check ``OTHER_FAMILY``."""
    found = probe_other_family(
        ctx.endpoint,
        ctx.lookup,
        ctx.settings,
        ctx.deadline,
        host_limiter=ctx.host_limiter,
        watcher=ctx.watcher,
    )
    if found is None:
        return CheckAttempt(
            CheckId.OTHER_FAMILY,
            AttemptStatus.NOT_SCHEDULED,
            error_reason=CheckError.NOT_APPLICABLE,
            error="no address of another IP family to probe",
        )
    return CheckAttempt.completed(CheckId.OTHER_FAMILY, found)


def other_family(addresses: list[str]) -> IpFamily | None:
    """The family of the host's addresses that its first address is not of, if it has one."""
    families = list(dict.fromkeys(IpFamily.of(a) for a in addresses))
    return families[1] if len(families) > 1 else None


def probe_other_family(
    endpoint: Endpoint,
    lookup: AddressLookup,
    settings: ProbeSettings,
    deadline: Deadline,
    *,
    host_limiter: HostLimiter | None = None,
    watcher: ConnectWatcher | None = None,
) -> FamilyProbe | None:
    """The endpoint probed over its host's other family; None for a single-family host.

    ``watcher`` hears of its connects like of the main probe's, so that a
    server that blocks this client over one family only is judged over that
    family too (``maildiag.blocking``).
    """
    try:
        ipaddress.ip_address(endpoint.host)
        return None  # an address literal has one family
    except ValueError:
        pass
    try:
        # Cached per run: the main probe of this endpoint asks the same.
        addresses = lookup(endpoint.host, deadline)
    except (DnsLookupError, TimeoutError):
        return None  # the main probe reports it
    family = other_family(addresses)
    if family is None:
        return None
    result = probe_endpoint(
        endpoint,
        lookup,
        settings,
        deadline,
        None,
        host_limiter=host_limiter,
        family=family,
        watcher=watcher,
    )
    return FamilyProbe(
        address=result.address or next(a for a in addresses if IpFamily.of(a) is family),
        outcome=result.outcome,
        failed_phase=result.failed_phase,
        error=result.error,
        local_address=result.local_address,
        seconds=result.total_seconds,
    )
