"""From a domain to the endpoints worth probing: MX, SRV, autoconfig, guesses.

All lookups run at once in threads, each bounded by the run's deadline, and
``discover`` returns only when every one of them has ended. Every lookup
that fails is kept as a ``DnsProblem`` rather than raised: a broken MX must
not hide a working SRV record, and vice versa.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import time
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from msgspec import Struct, field

from maildiag.deadline import Deadline
from maildiag.dns import Answer, DnsLookupError, Resolver, to_ascii
from maildiag.model import (
    AutoconfigResult,
    Discovery,
    DnsFailure,
    DnsProblem,
    Endpoint,
    MxHost,
    MxRecord,
    Protocol,
    Security,
    SourceKind,
    SrvRecord,
)
from maildiag.protocols.registry import ORDER, SLOTS, SRV_SERVICES, spec
from maildiag.tasks import TaskGroup, ThreadPool

__all__ = ["SLOTS", "SRV_SERVICES", "HostLookup", "MxHostLookup", "Overrides", "discover"]

# MX hosts whose addresses discovery looks up; more MX records than this are
# kept, but their hosts are not resolved (no sender tries that many).
MAX_MX_HOSTS = 8
_T = TypeVar("_T")

HostLookup = tuple[list[str], str | None]  # a host's addresses, and its canonical name if an alias
MxHostLookup = Callable[[Resolver, str, Deadline], HostLookup]


class HostAddresses(typing.Protocol):
    """Where discovery leaves the host addresses it learns (``runner.AddressCache``)."""

    def remember(self, host: str, addresses: Sequence[str]) -> None: ...

    def prefetch(self, host: str) -> None: ...


class Overrides(Struct, frozen=True):
    """Host and port choices from the command line; they beat anything found."""

    hosts: Mapping[Protocol, str] = field(default_factory=dict)
    ports: Mapping[tuple[Protocol, Security], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for slot, port in self.ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{slot[0]} {slot[1]} port {port} is not a port number")


def _fetch_autoconfig(
    domain_ascii: str, resolver: Resolver, **options: Any
) -> tuple[AutoconfigResult, ...]:
    # Imported here: HTTP, TLS and XML parsing cost start-up time that a run
    # with --no-autoconfig never needs.
    from maildiag.autoconfig import fetch_autoconfig

    return fetch_autoconfig(domain_ascii, resolver, **options)


def _autoconfig_url(domain_ascii: str, email: str | None) -> str:
    from maildiag.autoconfig import autoconfig_urls

    return autoconfig_urls(domain_ascii, email)[0]


def discover(
    domain: str,
    resolver: Resolver,
    overrides: Overrides = Overrides(),  # noqa: B008 (frozen, so sharing it is safe)
    *,
    deadline: Deadline,
    autoconfig: bool = True,
    ca_file: str | None = None,
    timeout: float = 5.0,
    email: str | None = None,
    addresses: HostAddresses | None = None,
    mx_host_lookup: MxHostLookup | None = None,
    threads: ThreadPool | None = None,
) -> Discovery:
    """Everything DNS and autoconfig say about *domain*, and the endpoints to probe.

    Raises ``InvalidDomain`` for a malformed domain or override host; network
    trouble only ever ends up in ``Discovery.problems``. ``addresses`` hears
    of every host address found, and of every SRV target the moment its
    record arrives, so the probes need not ask again. ``mx_host_lookup``
    (resolver, host, deadline) replaces the resolver's own address-and-alias
    lookup of MX hosts, e.g. by one shared between the checks of a batch.
    ``threads``: the pool autoconfig and ``mx_host_lookup`` run on (shared
    by the checks of a batch); without it, discovery starts its own
    threads. The DNS questions are asked from the calling thread.
    """
    started = time.monotonic()
    domain_ascii = to_ascii(domain)
    override_hosts = {p: _host(h) for p, h in overrides.hosts.items()}
    guess_hosts = _guess_hosts(domain_ascii, skip=override_hosts.keys())

    # Leaving the blocks ends every lookup: none outlives discovery. The DNS
    # questions are all in flight at once, answered on this thread
    # (``Lookups``); autoconfig, and MX hosts asked through ``mx_host_lookup``,
    # run on threads.
    with (
        TaskGroup(threads, size=1 + MAX_MX_HOSTS, name="discover") as pool,
        resolver.lookups(deadline) as lookups,
    ):
        apex = lookups.query(domain_ascii, "SOA")
        mx = lookups.query(domain_ascii, "MX")
        srv = {
            service: lookups.query(f"{service}.{domain_ascii}", "SRV") for service in SRV_SERVICES
        }
        guesses = {host: lookups.addresses_and_alias(host) for host in guess_hosts}
        if addresses is not None:
            for host in override_hosts.values():
                addresses.prefetch(host)
        fetched = (
            pool.submit(
                _fetch_autoconfig,
                domain_ascii,
                resolver,
                ca_file=ca_file,
                timeout=timeout,
                deadline=deadline,
                email=email,
            )
            if autoconfig
            else None
        )

        problems: list[DnsProblem] = []
        _, apex_error = _result(apex.result, f"{domain_ascii} SOA", problems)
        mx_records, mx_error = _result(mx.result, f"{domain_ascii} MX", problems)
        mx_list = _mx_list(mx_records)
        # Asked as soon as the MX answer is in, so they overlap the SRV,
        # guess and autoconfig lookups still running.
        mx_lookups: dict[str, Callable[[], HostLookup]] = {}
        for host in list(dict.fromkeys(m.host for m in mx_list if not m.null))[:MAX_MX_HOSTS]:
            if host in guesses:
                mx_lookups[host] = guesses[host].result
            elif mx_host_lookup is not None:
                shared = pool.submit(mx_host_lookup, resolver, host, deadline)
                mx_lookups[host] = functools.partial(_settled, shared, deadline)
            else:
                mx_lookups[host] = lookups.addresses_and_alias(host).result
        srv_records: list[SrvRecord] = []
        for service, answer in srv.items():
            records, _ = _result(answer.result, f"{service}.{domain_ascii} SRV", problems)
            if addresses is not None:
                for target in {_target(r.target) for r in records} - {"."}:
                    if target not in guesses and target not in mx_lookups:
                        addresses.prefetch(target)
            srv_records += sorted(
                (
                    SrvRecord(
                        service=service,
                        priority=r.priority,
                        weight=r.weight,
                        port=r.port,
                        target=_target(r.target),
                    )
                    for r in records
                ),
                key=lambda s: (s.priority, -s.weight, s.target, s.port),
            )
        resolved = {
            host
            for host, guess in guesses.items()
            if _result(_only_addresses(guess), f"{host} A/AAAA", problems)[0]
        }
        mx_hosts = tuple(_mx_host(host, get, problems) for host, get in mx_lookups.items())
        if addresses is not None:
            for mx_host in mx_hosts:
                addresses.remember(mx_host.host, mx_host.addresses)
            for host, guess in guesses.items():
                if host in resolved:
                    addresses.remember(host, guess.result()[0])
        autoconfig_results: tuple[AutoconfigResult, ...] = ()
        if fetched is not None:
            try:
                autoconfig_results = _settled(fetched, deadline)
            except Exception as e:
                autoconfig_results = (
                    AutoconfigResult(
                        url=_autoconfig_url(domain_ascii, email),
                        error=f"maildiag internal error: {e!r}",
                    ),
                )

    # RFC 8020: NXDOMAIN means nothing exists at or below the name; NODATA
    # (the name without this record type) still means the domain exists.
    domain_exists = not any(
        e is not None and e.kind is DnsFailure.NXDOMAIN for e in (apex_error, mx_error)
    )
    if not domain_exists:
        problems.insert(
            0,
            DnsProblem(
                query=f"{domain_ascii} SOA",
                kind=DnsFailure.NXDOMAIN,
                detail="the domain does not exist in DNS",
            ),
        )
    endpoints = _choose_endpoints(
        domain_ascii,
        overrides,
        override_hosts,
        tuple(srv_records),
        autoconfig_results,
        resolved,
        mx_list,
    )
    return Discovery(
        domain=domain,
        domain_ascii=domain_ascii,
        domain_exists=domain_exists,
        mx=mx_list,
        mx_hosts=mx_hosts,
        srv=tuple(srv_records),
        autoconfig=autoconfig_results,
        endpoints=endpoints,
        problems=tuple(problems),
        seconds=time.monotonic() - started,
        foreign_hosts=foreign_autoconfig_hosts(domain_ascii, autoconfig_results, mx_list),
    )


# --------------------------------------------------------------------------
# Choosing endpoints (no I/O)


def _choose_endpoints(
    domain_ascii: str,
    overrides: Overrides,
    override_hosts: Mapping[Protocol, str],
    srv: tuple[SrvRecord, ...],
    autoconfig: tuple[AutoconfigResult, ...],
    resolved: set[str],
    mx: tuple[MxRecord, ...],
) -> tuple[Endpoint, ...]:
    endpoints = []
    for protocol, security, default_port in SLOTS:
        port_override = overrides.ports.get((protocol, security))
        candidates: list[tuple[str, int, str]] = []  # host, port, source; best first
        if protocol in override_hosts:
            candidates.append(
                (
                    override_hosts[protocol],
                    port_override or default_port,
                    SourceKind.OPTION.source(),
                )
            )

        service = spec(protocol).srv_service(security)
        records = [r for r in srv if r.service == service]
        # A record with port 0 is unusable (SRV_INVALID): it is skipped as if
        # absent, and the service falls back to autoconfig and the guesses.
        offered = [r for r in records if not r.not_offered and not r.invalid]
        if offered:
            # RFC 2782: lowest priority first; among equals, the heaviest.
            best = min(offered, key=lambda r: (r.priority, -r.weight))
            candidates.append(
                (best.target, port_override or best.port, SourceKind.SRV.source(service))
            )
        elif (
            any(r.not_offered for r in records)
            and not any(r.invalid for r in records)
            and not (protocol in override_hosts or port_override)
        ):
            # RFC 6186 §3.4: a target of "." says the service is deliberately
            # not provided, so guessing a host for it would be wrong.
            continue

        for result in autoconfig:
            for server in result.servers:
                if (server.protocol, server.security) == (protocol, security):
                    candidates.append(
                        (server.host, port_override or server.port, SourceKind.AUTOCONFIG.source())
                    )
        for prefix in spec(protocol).host_guesses:
            host = f"{prefix}.{domain_ascii}" if prefix else domain_ascii
            if host in resolved:
                candidates.append(
                    (host, port_override or default_port, SourceKind.GUESS.source(host))
                )
        # The host of an unusable record is still the provider's hint, on the
        # standard port; after the usual names, which are known to resolve.
        for record in records:
            if record.invalid and not offered:
                port = port_override or default_port
                candidates.append((record.target, port, SourceKind.GUESS.source(record.target)))
        usable_mx = [m for m in mx if m.host not in ("", ".")]
        if usable_mx:
            candidates.append(
                (usable_mx[0].host, port_override or default_port, SourceKind.MX.source())
            )

        if not candidates:
            continue
        host, port, _ = candidates[0]
        sources = tuple(dict.fromkeys(s for h, p, s in candidates if (h, p) == (host, port)))
        endpoints.append(Endpoint(protocol, host, port, security, sources))
    return tuple(endpoints)


def foreign_autoconfig_hosts(
    domain_ascii: str, autoconfig: tuple[AutoconfigResult, ...], mx: tuple[MxRecord, ...]
) -> tuple[str, ...]:
    """Hosts named by autoconfig that the domain's own DNS does not vouch for.

    Thunderbird asks the user before it uses a configuration that a redirect
    brought from another domain; anyone who controls the web server of
    autoconfig.<domain> (or a stale redirect) could otherwise send every
    customer's password to their own server. A host counts as the domain's
    when it is the domain or below it, or below the parent of one of its MX
    hosts (mx1.provider.example vouches for imap.provider.example). Every
    host of a document that came through a redirect to another domain is
    foreign. Without a public-suffix list this errs towards "foreign", the
    safe side: the password is only withheld, and --imap-host passes it.
    """
    own = {domain_ascii} | {_parent(m.host) for m in mx if m.host not in ("", ".")}

    def inside(host: str) -> bool:
        return any(host == d or host.endswith("." + d) for d in own if d)

    foreign: dict[str, None] = {}
    for result in autoconfig:
        redirected = result.final_url is not None and not inside(
            (urlsplit(result.final_url).hostname or "").lower()
        )
        for server in result.servers:
            if redirected or not inside(server.host):
                foreign[server.host] = None
    return tuple(foreign)


def _parent(host: str) -> str:
    labels = host.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else host


def _mx_list(records: list[Any]) -> tuple[MxRecord, ...]:
    return tuple(
        sorted(
            (MxRecord(preference=r.preference, host=_target(r.exchange)) for r in records),
            key=lambda m: (m.preference, m.host),
        )
    )


def _guess_hosts(domain_ascii: str, skip: Collection[Protocol]) -> list[str]:
    hosts: dict[str, None] = {}
    for protocol in ORDER:
        if protocol in skip:
            continue
        for prefix in spec(protocol).host_guesses:
            hosts[f"{prefix}.{domain_ascii}" if prefix else domain_ascii] = None
    return list(hosts)


def _host(text: str) -> str:
    bare = text.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return to_ascii(bare)


def _target(name: object) -> str:
    text = str(name).lower()
    return "." if text in ("", ".") else text.rstrip(".")


# --------------------------------------------------------------------------
# Running lookups


def _only_addresses(answer: Answer[HostLookup]) -> Callable[[], list[str]]:
    """The addresses of an address-and-alias lookup, without the alias."""
    return lambda: answer.result()[0]


def _mx_host(host: str, lookup: Callable[[], HostLookup], problems: list[DnsProblem]) -> MxHost:
    """The addresses of one MX host; a failed lookup (not NXDOMAIN/NODATA) is a problem too."""
    try:
        addresses, alias = lookup()
    except DnsLookupError as e:
        error = e.with_traceback(None)  # see _result
    except Exception as e:
        error = DnsLookupError(
            DnsFailure.ERROR, f"maildiag internal error: {e!r}", f"{host} A/AAAA"
        )
    else:
        return MxHost(host, tuple(addresses), cname=alias)
    if not error.kind.is_answer:
        problems.append(DnsProblem(query=error.query, kind=error.kind, detail=error.detail))
    return MxHost(host, error_kind=error.kind, error=error.detail)


def _settled(future: concurrent.futures.Future[_T], deadline: Deadline) -> _T:
    """The lookup's result, once it has ended.

    Every lookup is bounded by the deadline; once that has passed, cancelling
    shuts down the connections still open (autoconfig), so the lookup ends
    now, with its own account of what went wrong.
    """
    try:
        return future.result(timeout=deadline.wait_timeout())
    except concurrent.futures.TimeoutError:
        deadline.cancel()
        return future.result()


def _result(
    lookup: Callable[[], list[_T]], query: str, problems: list[DnsProblem]
) -> tuple[list[_T], DnsLookupError | None]:
    """The records ``lookup()`` gives, or [] and the error; problems worth telling are recorded.

    NXDOMAIN and NODATA are answers, not problems: most domains have no
    _pop3._tcp record and no pop. host.
    """
    try:
        return lookup(), None
    except DnsLookupError as e:
        # Kept without its traceback: the frames in it hold the future that
        # holds the error, a reference cycle only the garbage collector frees
        # (in a batch, collecting them took ~1 s of a worker's ~6 s of CPU).
        error = e.with_traceback(None)
    except Exception as e:
        # A bug in one lookup must not hide what the others found.
        error = DnsLookupError(DnsFailure.ERROR, f"maildiag internal error: {e!r}", query)
    if not error.kind.is_answer:
        problems.append(DnsProblem(query=error.query, kind=error.kind, detail=error.detail))
    return [], error
