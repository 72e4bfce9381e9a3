"""One check of one domain: discovery, concurrent probes, analysis.

All probes of a run share one ``Deadline``; every network step inside them
is bounded by it, so the run ends on time even when every port drops
packets. When it passes, the sockets still open are shut down and the run
waits for every probe: no thread outlives ``diagnose()`` (the checks of a
batch share a pool of threads, ``maildiag.tasks``, and none of their tasks
outlives it). Host names are resolved once per run however many endpoints
share them.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from msgspec import Struct, field
from msgspec.structs import replace

from .credentials_input import Credentials
from .deadline import Deadline
from .discovery import HostLookup, Overrides, discover
from .dns import DnsLookupError, InvalidDomain, Resolver, to_ascii
from .limits import HostLimiter
from .model import (
    CheckAttempt,
    Diagnosis,
    DnsFailure,
    Endpoint,
    InboundResult,
    Outcome,
    ProbeResult,
    Thresholds,
    TypedVerdict,
)
from .probes.checks import CheckSpec, Stage, checks_of, run_beside
from .probes.endpoint import ConnectWatcher, ProbeSettings, SessionHook, probe_endpoint
from .probes.families import BesideContext
from .probes.inbound import check_inbound
from .probes.webports import WebPortWatch
from .quoting import MAX_QUOTED_CHARS, Sanitizer
from .tasks import TaskGroup, ThreadPool

# Outcomes of a probe whose TCP connect failed.
NOT_CONNECTED = (Outcome.REFUSED, Outcome.TIMEOUT)
# Discovery (DNS, autoconfig over HTTPS) may use at most this share of the run,
# so the probes always get the rest.
DISCOVERY_SHARE = 0.5


class BadRequest(ValueError):
    """The request cannot be run (e.g. an unreadable CA file)."""


class CheckRequest(Struct, frozen=True):
    domain: str
    overrides: Overrides = field(default_factory=Overrides)
    nameserver: str | None = None
    ca_file: str | None = None
    timeout: float = 10.0  # per network step
    deadline: float = 60.0  # for the whole run
    thresholds: Thresholds = field(default_factory=Thresholds)
    autoconfig: bool = True
    email: str | None = None
    # Mailbox checks: log in everywhere (auth, quota, INBOX size) when given.
    credentials: Credentials | None = None
    sync: bool = False  # also measure sync latency (writes a test message)
    allow_plaintext: bool = False  # may send the password unencrypted
    # When the run's clock started (time.monotonic()); None: when diagnose() is called.
    started: float | None = None
    # Client settings the customer typed (check --typed): probed without the
    # password, judged in the customer's terms (see maildiag.typed).
    typed: tuple[Endpoint, ...] = ()
    # The mailbox address whose inbound path is checked (check --address):
    # the MX servers are asked whether they take mail for it. Without it,
    # the --user name is used when it is an address at the domain.
    address: str | None = None


class AddressCache:
    """Resolves each host once per run, even when several probes ask at the same time.

    Discovery hands over what it already knows: the addresses it found
    (``remember``), and hosts to resolve before any probe asks (``prefetch``,
    e.g. an SRV target the moment its record arrives). A prefetch is the
    lookup the probe would make, with the same budget, only started earlier.
    """

    MAX_PREFETCHES = 8

    def __init__(
        self, resolver: Resolver, deadline: Deadline, threads: ThreadPool | None = None
    ) -> None:
        self._resolver = resolver
        self._deadline = deadline
        self._threads = threads
        self._lock = threading.Lock()
        self._pending: dict[str, Future[list[str]]] = {}
        self._prefetches: TaskGroup | None = None
        self._prefetched = 0

    def remember(self, host: str, addresses: Sequence[str]) -> None:
        if not addresses:
            return  # a failed lookup of discovery's (bounded by its share) is asked again
        known: Future[list[str]] = Future()
        known.set_result(list(addresses))
        with self._lock:
            self._pending.setdefault(host, known)

    def prefetch(self, host: str) -> None:
        with self._lock:
            if host in self._pending or self._prefetched >= self.MAX_PREFETCHES:
                return
            if self._prefetches is None:
                self._prefetches = TaskGroup(
                    self._threads, size=self.MAX_PREFETCHES, name="resolve"
                )
            self._prefetched += 1
            self._pending[host] = self._prefetches.submit(
                self._resolver.addresses, host, self._deadline
            )

    def close(self) -> None:
        """Waits for the prefetches still running (each bounded by the deadline)."""
        if self._prefetches is not None:
            self._prefetches.close()

    def __call__(self, host: str, deadline: Deadline) -> list[str]:
        with self._lock:
            future = self._pending.get(host)
            owner = future is None
            if future is None:
                future = self._pending[host] = Future()
        if owner:
            try:
                future.set_result(self._resolver.addresses(host, deadline))
            except BaseException as exc:  # handed to every waiter, raised below
                future.set_exception(exc)
        return future.result(timeout=deadline.wait_timeout())


class ProbeCache:
    """Results of probes without a login, shared by the checks of a batch.

    A hosting provider's customer domains name the same few servers in their
    MX and SRV records. Probing mail0.provider.example:993 once and giving
    that result to every domain that names it spares the provider thousands
    of identical connections (and the batch their CPU). Shared are only
    probes of the same protocol, host name, port, security and settings;
    probes with a login are not (a login belongs to one mailbox). Requests
    for an endpoint whose probe is still running wait for it. A result is
    given out for ``max_age`` seconds after its probe ended; one cut short by
    its requester's deadline says nothing about the server and is not kept.
    """

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        lock = threading.Lock()
        self._probes: _Shared[ProbeResult] = _Shared(lock, max_age)
        self._host_lookups: _Shared[HostLookup] = _Shared(lock, max_age)

    def mx_host_lookup(
        self, resolver: Resolver, host: str, deadline: Deadline, nameserver: object = None
    ) -> HostLookup:
        """The addresses and alias of an MX host, asked once for every check that names it.

        Customer domains of one provider name the same few MX hosts; without
        this, every domain of a batch would ask the nameserver again for the
        provider's host. Shared like a probe: waiters wait for a lookup still
        running, a result is given out for ``max_age`` seconds, and a failed
        lookup is not kept (the next check asks anew, within its own deadline).
        """

        def asked_by_another_too_long() -> HostLookup:
            raise DnsLookupError(
                DnsFailure.TIMEOUT, "stopped: the run's deadline passed", f"{host} A/AAAA"
            )

        found, _ = self._host_lookups.share(
            (nameserver, host),
            deadline,
            lambda: resolver.addresses_and_alias(host, deadline),
            waited_too_long=asked_by_another_too_long,
        )
        return found

    def probe(
        self,
        endpoint: Endpoint,
        settings: ProbeSettings,
        deadline: Deadline,
        run: Callable[[], ProbeResult],
    ) -> ProbeResult:
        """The shared result for ``endpoint``, from ``run()`` if there is none yet."""
        key = (
            endpoint.protocol,
            endpoint.host,
            endpoint.port,
            endpoint.security,
            *settings.shared_by,
        )
        result, shared = self._probes.share(
            key,
            deadline,
            run,
            # One cut short by its owner's deadline says nothing about the server.
            usable=lambda result: result.outcome is not Outcome.DEADLINE,
            waited_too_long=lambda: _deadline_passed(endpoint),
        )
        return replace(result, endpoint=endpoint, shared=True) if shared else result


_R = TypeVar("_R")


class _Shared(Generic[_R]):
    """Results by key, each given out for ``max_age`` seconds after it was made.

    The first to ask for a key makes the result (its owner); whoever asks
    while it is being made waits for it.
    """

    def __init__(self, lock: threading.Lock, max_age: float) -> None:
        self._lock = lock
        self._max_age = max_age
        # Oldest first, so expiry only ever looks at the front.
        self._entries: OrderedDict[tuple[object, ...], tuple[float, Future[_R]]] = OrderedDict()

    def share(
        self,
        key: tuple[object, ...],
        deadline: Deadline,
        run: Callable[[], _R],
        *,
        waited_too_long: Callable[[], _R],
        usable: Callable[[_R], bool] = lambda _: True,
    ) -> tuple[_R, bool]:
        """The result for ``key``, and whether another made it; ``run()``'s if there is none.

        A result that is not ``usable``, or a failure, is not kept: whoever
        waited for it makes its own. ``waited_too_long()`` answers for a
        caller whose deadline passes while it waits for another's.
        """
        while True:
            future, owner = self._claim(key)
            if owner:
                break
            try:
                result = future.result(timeout=deadline.wait_timeout())
            except TimeoutError:
                break
            except Exception:  # noqa: BLE001 - the owner's failure; make it anew
                continue
            if usable(result):
                return result, True
            # Its owner ran out of time (the entry is gone): make it anew.
        if not owner:  # this caller's deadline passed while it waited
            return waited_too_long(), False
        try:
            result = run()
        except BaseException as exc:
            self._drop(key, future)
            future.set_exception(exc)
            raise
        if usable(result):
            self._keep(key, future)
        else:
            self._drop(key, future)
        future.set_result(result)
        return result, False

    def _claim(self, key: tuple[object, ...]) -> tuple[Future[_R], bool]:
        """The entry for ``key``, and whether the caller owns it (it was made for it)."""
        with self._lock:
            self._forget_old(time.monotonic())
            entry = self._entries.get(key)
            if entry is not None:
                return entry[1], False
            future: Future[_R] = Future()
            self._entries[key] = (float("inf"), future)  # aged from its end
            return future, True

    def _keep(self, key: tuple[object, ...], future: Future[_R]) -> None:
        with self._lock:
            if self._entries.get(key, (0.0, None))[1] is future:
                self._entries[key] = (time.monotonic(), future)
                self._entries.move_to_end(key)

    def _drop(self, key: tuple[object, ...], future: Future[_R]) -> None:
        with self._lock:
            if self._entries.get(key, (0.0, None))[1] is future:
                del self._entries[key]

    def _forget_old(self, now: float) -> None:
        while self._entries:
            key, (ended, _) = next(iter(self._entries.items()))
            if ended == float("inf") or now - ended <= self._max_age:
                return
            del self._entries[key]


def diagnose(
    request: CheckRequest,
    *,
    session_hook_factory: Callable[[Endpoint], SessionHook | None] | None = None,
    host_limiter: HostLimiter | None = None,
    credentials: Credentials | None = None,
    probe_cache: ProbeCache | None = None,
    meanwhile: Callable[[], object] | None = None,
    within: Deadline | None = None,
    threads: ThreadPool | None = None,
) -> Diagnosis:
    """Checks one domain and explains what is wrong. Raises ``InvalidDomain`` for a bad name.

    ``host_limiter`` (shared by the checks of a batch) caps simultaneous
    connections to one server address; None means no cap. ``credentials``
    (e.g. a credential profile of the exporter) overrides
    ``request.credentials``. ``probe_cache``
    (shared by the checks of a batch) lets probes without a login be reused.
    ``meanwhile`` is called while the probes wait for the network, e.g. to
    import the renderer the caller will need. ``within`` (a batch's
    ``Deadline``): cancelling it ends this check at once. ``threads`` (shared
    by the checks of a batch): the pool the check's lookups and probes run on;
    without it the check makes its own and closes it before returning.
    """
    creds = credentials or request.credentials
    started_at = datetime.now(UTC)
    started = time.monotonic()
    domain_ascii = to_ascii(request.domain)
    if request.ca_file:
        from .tls import read_ca_file

        try:
            read_ca_file(request.ca_file)  # a bad --ca-file fails here, not in every probe
        except (OSError, ValueError) as exc:
            raise BadRequest(f"cannot use the CA file {request.ca_file}: {exc}") from exc
    # The CLI checks these while parsing; a library caller gets BadRequest too,
    # not a traceback from deep inside, nor a nan timeout that fails every wait.
    for name, seconds in (("timeout", request.timeout), ("deadline", request.deadline)):
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise BadRequest(f"the {name} must be a positive number of seconds, not {seconds!r}")
    deadline = Deadline(request.deadline, start=request.started, within=within)
    try:
        # A check that shares its servers with others (batch, exporter: they
        # pass the limiter) spares the nameserver questions; one alone spares time.
        resolver = Resolver(
            request.nameserver, timeout=request.timeout, families_at_once=host_limiter is None
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None

    # Alone, a check still runs its steps on one pool: discovery's threads
    # take the probes' tasks, instead of a thread for each (see tasks.py).
    own_threads = None
    if threads is None:
        threads = own_threads = ThreadPool(name="check")
    lookup = AddressCache(resolver, deadline, threads)
    try:
        return _diagnose(
            request,
            domain_ascii,
            creds,
            lookup,
            resolver,
            deadline,
            started,
            started_at,
            session_hook_factory=session_hook_factory,
            host_limiter=host_limiter,
            probe_cache=probe_cache,
            meanwhile=meanwhile,
            threads=threads,
        )
    finally:
        lookup.close()
        if own_threads is not None:
            own_threads.close()  # every task has ended with its step: the threads end now


def _diagnose(
    request: CheckRequest,
    domain_ascii: str,
    creds: Credentials | None,
    lookup: AddressCache,
    resolver: Resolver,
    deadline: Deadline,
    started: float,
    started_at: datetime,
    *,
    session_hook_factory: Callable[[Endpoint], SessionHook | None] | None,
    host_limiter: HostLimiter | None,
    probe_cache: ProbeCache | None,
    meanwhile: Callable[[], object] | None,
    threads: ThreadPool | None,
) -> Diagnosis:
    discovery = discover(
        domain_ascii,
        resolver,
        request.overrides,
        deadline=deadline.share(DISCOVERY_SHARE),
        autoconfig=request.autoconfig,
        ca_file=request.ca_file,
        timeout=request.timeout,
        email=request.email,
        addresses=lookup,
        mx_host_lookup=(
            None
            if probe_cache is None
            else functools.partial(probe_cache.mx_host_lookup, nameserver=request.nameserver)
        ),
        threads=threads,
    )
    discovery = replace(discovery, domain=request.domain)
    if creds is not None and session_hook_factory is None:
        from .probes.mailbox import MailboxChecks

        # One MailboxChecks per run: its login gate must be shared by all probes.
        session_hook_factory = MailboxChecks(
            creds,
            allow_plaintext=request.allow_plaintext,
            foreign_hosts=discovery.foreign_hosts,
            quota_warning_percent=request.thresholds.quota_warning_percent,
            # The sending check's sender when the login is no address.
            address=request.address,
        ).hook_for
    settings = ProbeSettings(
        timeout=request.timeout,
        ca_file=request.ca_file,
        connect_by=(started if request.started is None else request.started) + request.timeout,
    )
    address = inbound_address(request, creds, domain_ascii)
    keys = {e.key for e in discovery.endpoints}
    extra = tuple(dict.fromkeys(e for e in request.typed if e.key not in keys))
    watch = WebPortWatch(request.timeout, deadline)
    # Leaving the block waits for the inbound check: no thread outlives the run.
    with TaskGroup(threads, size=2, name="alongside") as alongside:
        # Alongside the probes, not after them: the MX dialogues add no wait of their own.
        inbound_future = (
            alongside.submit(
                check_inbound,
                address,
                discovery,
                lookup,
                settings,
                deadline,
                host_limiter=host_limiter,
            )
            if address is not None
            else None
        )
        preparing = alongside.submit(_prepare, request.ca_file, meanwhile)
        probed = run_probes(
            discovery.endpoints + extra,
            lookup,
            settings,
            deadline,
            session_hook_factory,
            host_limiter=host_limiter,
            probe_cache=probe_cache,
            # The typed settings get no login: a wrong one must not count against a lockout.
            no_hook=frozenset(extra),
            watcher=watch,
            threads=threads,
        )
        port_checks = watch.results()
        results = probed[: len(discovery.endpoints)]
        typed_results = probed[len(discovery.endpoints) :]
        preparing.result()
        sync = None
        if creds is not None and request.sync:
            from .probes.sync import measure_sync

            sync = measure_sync(results, creds, settings, deadline, domain=domain_ascii)
        inbound = _inbound_result(inbound_future, deadline)
    from .analysis import analyse, overall_status

    # Server text is quoted by analysis: make it safe first (escaped, bounded,
    # no secret), then check the finished diagnosis once more.
    quoted = Sanitizer.for_credentials(creds, limit=MAX_QUOTED_CHARS)
    discovery, results, sync = quoted(discovery), quoted(results), quoted(sync)
    inbound = quoted(inbound)
    findings = analyse(
        discovery,
        results,
        request.thresholds,
        timeout=request.timeout,
        deadline=request.deadline,
        user=creds.user if creds else None,
        sync=sync,
        port_checks=port_checks,
        inbound=inbound,
    )
    typed_results = quoted(typed_results)
    diagnosis = Diagnosis(
        domain=request.domain,
        domain_ascii=domain_ascii,
        started_at=started_at,
        seconds=time.monotonic() - started,
        discovery=discovery,
        results=results,
        findings=findings,
        status=overall_status(discovery, findings),
        user=creds.user if creds else None,
        sync=sync,
        port_checks=port_checks,
        inbound=inbound,
    )
    if request.typed:
        diagnosis = replace(
            diagnosis, typed=_judge_typed(request, diagnosis, results + typed_results)
        )
    # Discovery, results, sync and inbound went through ``quoted`` (the same
    # scrubbers; escaping twice changes nothing): the last pass covers what
    # was built from them since. In a batch most results are shared probes,
    # and walking them all again for every domain cost ~6 % of a worker's CPU.
    final = Sanitizer.for_credentials(creds)
    return replace(
        diagnosis,
        domain=final(diagnosis.domain),
        user=final(diagnosis.user),
        findings=final(diagnosis.findings),
        typed=final(diagnosis.typed),
        port_checks=final(diagnosis.port_checks),
    )


def inbound_address(
    request: CheckRequest, creds: Credentials | None, domain_ascii: str
) -> str | None:
    """The address whose inbound path is checked: --address, else a --user at the domain."""
    if request.address:
        return request.address
    if creds is None or "@" not in creds.user:
        return None
    local, _, domain = creds.user.rpartition("@")
    try:
        same = bool(local) and to_ascii(domain) == domain_ascii
    except InvalidDomain:
        return None
    return creds.user if same else None


def _inbound_result(
    future: Future[InboundResult] | None, deadline: Deadline
) -> InboundResult | None:
    if future is None:
        return None
    try:
        return future.result(timeout=deadline.wait_timeout())
    except TimeoutError:
        # Every dialogue is bounded by the deadline; this wakes any still blocked.
        deadline.cancel()
        return future.result()


def _prepare(ca_file: str | None, meanwhile: Callable[[], object] | None) -> None:
    """What the end of the run needs, done while the probes wait for servers.

    A check spends most of its time waiting for the network; importing the
    analysis and loading the trust anchors (cryptography parsing certifi's
    roots) then costs no wall time. A probe that needs the anchors sooner
    waits for this load instead of doing its own (they are loaded once).
    """
    import importlib

    from . import tls

    try:
        importlib.import_module("maildiag.analysis")
        tls.load_trust_anchors(ca_file)
        if meanwhile is not None:
            meanwhile()
    except Exception:  # noqa: BLE001 - only a head start: whoever needs it later sees the error
        return


def _judge_typed(
    request: CheckRequest, diagnosis: Diagnosis, results: tuple[ProbeResult, ...]
) -> tuple[TypedVerdict, ...]:
    from .typed import judge

    by_key = {r.endpoint.key: r for r in results}
    return tuple(
        judge(e, replace(by_key[e.key], endpoint=e), diagnosis, request.thresholds, request.timeout)
        for e in request.typed
    )


def run_probes(
    endpoints: tuple[Endpoint, ...],
    lookup: AddressCache,
    settings: ProbeSettings,
    deadline: Deadline,
    session_hook_factory: Callable[[Endpoint], SessionHook | None] | None = None,
    *,
    host_limiter: HostLimiter | None = None,
    probe_cache: ProbeCache | None = None,
    no_hook: frozenset[Endpoint] = frozenset(),
    watcher: ConnectWatcher | None = None,
    threads: ThreadPool | None = None,
) -> tuple[ProbeResult, ...]:
    """Probes all endpoints at once; results come back in the endpoints' order.

    ``no_hook``: endpoints probed without the session hook (no login).
    ``watcher`` hears about every connect (see ``WebPortWatch``). ``threads``:
    the pool the probes run on (see ``diagnose``).
    """
    if not endpoints:
        return ()

    def probe(endpoint: Endpoint) -> ProbeResult:
        hook = None
        if session_hook_factory is not None and endpoint not in no_hook:
            hook = session_hook_factory(endpoint)

        def run() -> ProbeResult:
            # The registered checks beside the probe (the other IP family) at
            # the same time, not after: a dual-stack host costs no more time
            # than one with a single address.
            context = BesideContext(endpoint, lookup, settings, deadline, host_limiter, watcher)
            beside: list[tuple[CheckSpec, Future[CheckAttempt[Any]]]] = []
            for check in checks_of(Stage.BESIDE, endpoint.protocol):
                try:
                    beside.append((check, pool.submit(run_beside, check, context)))
                except RuntimeError:
                    break  # the run is ending (the pool no longer takes work)
            result = probe_endpoint(
                endpoint,
                lookup,
                settings,
                deadline,
                hook,
                host_limiter=host_limiter,
                watcher=watcher,
            )
            if not beside:
                return result
            # Bounded by the deadline like the probe itself.
            attempts = {**result.attempts, **{c.id: f.result() for c, f in beside}}
            return replace(result, attempts=attempts)

        if probe_cache is None or hook is not None:
            return run()
        result = probe_cache.probe(endpoint, settings, deadline, run)
        if result.shared and result.outcome in NOT_CONNECTED and watcher is not None:
            # Probed for another domain of the batch: this run's watcher hears
            # of the failed connect all the same, so a blocked server is
            # judged alike for every domain that names it. (Working connects
            # need no word: they start nothing.)
            assert result.address is not None
            watcher.connecting(result.address)
            watcher.connected(result.address, False)
        return result

    # A thread per endpoint for its probe, and one for each check beside it.
    size = sum(1 + len(checks_of(Stage.BESIDE, e.protocol)) for e in endpoints)
    with TaskGroup(threads, size=size, name="probe") as pool:
        futures = [pool.submit(probe, endpoint) for endpoint in endpoints]
        _, pending = wait(futures, timeout=deadline.wait_timeout())
        if pending:
            # Every step of a probe is bounded by the deadline already; this
            # shuts down the sockets still open, so none is left blocked.
            deadline.cancel()
        # Leaving the block waits for every probe: none outlives the run.
    return tuple(f.result() for f in futures)


def _deadline_passed(endpoint: Endpoint) -> ProbeResult:
    return ProbeResult(endpoint, Outcome.DEADLINE, error="the run's deadline passed")
