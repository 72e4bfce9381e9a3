"""A Prometheus exporter in the multi-target pattern of the blackbox exporter.

``GET /probe?target=example.org`` checks that domain and answers with its
metrics; ``GET /metrics`` answers with the exporter's own. Prometheus names
the target through relabelling (see docs/monitoring.md), so one exporter
serves any number of domains.

Every probe runs in its own thread and is bounded by the scrape timeout
Prometheus sends (``X-Prometheus-Scrape-Timeout-Seconds``), less a margin
for the answer to travel back: a check that does not finish in time still
answers, with ``maildiag_probe_success 0``, before Prometheus gives up.

Scrapes of a provider's customer domains all reach the same few servers, so
the checks share what a batch shares: one ``HostLimiter`` (connections per
server address) and one ``ProbeCache`` (a probe without a login is given to
every check that names the same endpoint). At most ``max_checks`` run at
once; a scrape over that cap is answered at once, with probe success 0 and
``maildiag_probe_no_diagnosis{reason="too_many_checks"}``.

Credentials never come from the URL (it ends up in logs, in Prometheus'
target list and in its web UI): ``profile=NAME`` picks a named profile
loaded from a private file or the environment (``maildiag.credentials``).
"""

from __future__ import annotations

import html
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from msgspec import Struct
from msgspec.structs import replace
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .credentials_input import Credentials
from .limits import HostLimiter
from .model import Diagnosis, Endpoint, Outcome, ProbeResult, Severity, Status, TrustStatus
from .runner import CheckRequest, ProbeCache

__all__ = ["Exporter", "ProbeAnswer", "diagnosis_metrics", "parse_listen", "probe_succeeded"]

# Seconds kept free before Prometheus' own scrape timeout, for the answer to
# get back (the blackbox exporter's default timeout_offset is also 0.5 s).
SCRAPE_MARGIN = 0.5
# After its deadline a check needs a little longer: its probes are cancelled
# and waited for, then analysed. Keep that inside the budget.
CHECK_SLACK = 1.0
# Checks running at once (maildiag serve --max-checks); each holds about 20
# threads while it runs. The same default as batch --concurrency.
DEFAULT_MAX_CHECKS = 20
# Connections open at once to one server address, over all checks (--per-host),
# as in batch.
DEFAULT_PER_HOST = 2
QUERY_PARAMETERS = ("target", "profile")
ENDPOINT_LABELS = ("protocol", "host", "port", "security")

CheckFunction = Callable[[CheckRequest, Credentials | None], Diagnosis]


class BadProbeRequest(ValueError):
    """The query of a /probe request cannot be served; the message says why."""


class ProbeAnswer(Struct, frozen=True):
    status: int
    body: bytes
    content_type: str


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface) as (host, port).

    Port 0 picks a free port (the startup message names it).
    """
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{value!r}: expected ADDR:PORT, for example 127.0.0.1:9137")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9137")
    return host, int(port_text)


# --------------------------------------------------------------------------
# The metrics of one probe


def _labels_of(e: Endpoint) -> tuple[str, str, str, str]:
    return (e.protocol.value, e.host, str(e.port), e.security.value)


def _endpoint_labels(result: ProbeResult) -> list[str]:
    return list(_labels_of(result.endpoint))


def probe_succeeded(diagnosis: Diagnosis | None) -> bool:
    """Finished in time with nothing critical; warnings are left to ``maildiag_status``."""
    if diagnosis is None:
        return False
    timed_out = any(r.outcome is Outcome.DEADLINE for r in diagnosis.results)
    return diagnosis.status in (Status.OK, Status.WARNING) and not timed_out


def diagnosis_metrics(
    diagnosis: Diagnosis | None, seconds: float, *, no_diagnosis: str = "timeout"
) -> list[GaugeMetricFamily]:
    """The /probe answer as metric families.

    ``None`` means there is no diagnosis; ``no_diagnosis`` says why (timeout,
    internal_error, too_many_checks).
    """
    success = GaugeMetricFamily(
        "maildiag_probe_success",
        "1 if the check finished in time and found nothing critical (status OK or WARNING).",
    )
    duration = GaugeMetricFamily(
        "maildiag_probe_duration_seconds", "How long the check took, in seconds."
    )
    status = GaugeMetricFamily(
        "maildiag_status", "Overall status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    )
    duration.add_metric([], seconds)
    if diagnosis is None:
        success.add_metric([], 0)
        status.add_metric([], int(Status.UNKNOWN))
        why = GaugeMetricFamily(
            "maildiag_probe_no_diagnosis",
            "1 when the probe has no diagnosis: the check did not finish in time (timeout), "
            "failed (internal_error) or was not run, the exporter being at --max-checks "
            "(too_many_checks).",
            labels=("reason",),
        )
        why.add_metric([no_diagnosis], 1)
        return [success, duration, status, why]

    success.add_metric([], 1 if probe_succeeded(diagnosis) else 0)
    status.add_metric([], int(diagnosis.status))

    discovery = GaugeMetricFamily(
        "maildiag_discovery_duration_seconds", "Time spent on DNS and autoconfig discovery."
    )
    discovery.add_metric([], diagnosis.discovery.seconds)
    up = GaugeMetricFamily(
        "maildiag_endpoint_up",
        "1 if the endpoint completed the dialogue (TLS included).",
        labels=ENDPOINT_LABELS,
    )
    phases = GaugeMetricFamily(
        "maildiag_endpoint_phase_duration_seconds",
        "Duration of each phase of a probe.",
        labels=(*ENDPOINT_LABELS, "phase"),
    )
    expiry = GaugeMetricFamily(
        "maildiag_tls_cert_expiry_timestamp_seconds",
        "When the endpoint's leaf certificate expires, as a Unix timestamp.",
        labels=ENDPOINT_LABELS,
    )
    # Like the blackbox exporter's probe_ssl_earliest_cert_expiry: an expired
    # intermediate breaks the chain as surely as an expired leaf.
    chain_expiry = GaugeMetricFamily(
        "maildiag_tls_cert_chain_earliest_expiry_timestamp_seconds",
        "When the first certificate of the chain the endpoint sent expires "
        "(leaf or intermediate), as a Unix timestamp.",
        labels=ENDPOINT_LABELS,
    )
    trusted = GaugeMetricFamily(
        "maildiag_tls_cert_trusted",
        "1 if the endpoint's certificate chain verified against the trusted roots.",
        labels=ENDPOINT_LABELS,
    )
    hostname = GaugeMetricFamily(
        "maildiag_tls_cert_hostname_match",
        "1 if the endpoint's certificate is valid for the host name that was checked.",
        labels=ENDPOINT_LABELS,
    )
    version = GaugeMetricFamily(
        "maildiag_tls_version_info",
        "The TLS version negotiated with the endpoint.",
        labels=(*ENDPOINT_LABELS, "version"),
    )
    quota = GaugeMetricFamily(
        "maildiag_quota_usage_ratio",
        "Mailbox quota usage (0 to 1) per quota resource.",
        labels=(*ENDPOINT_LABELS, "resource"),
    )
    for result in diagnosis.results:
        labels = _endpoint_labels(result)
        up.add_metric(labels, 1 if result.outcome is Outcome.OK else 0)
        for phase, phase_seconds in result.timings.items():
            phases.add_metric([*labels, phase], phase_seconds)
        tls = result.tls
        if tls is not None:
            version.add_metric([*labels, tls.version], 1)
            if tls.leaf is not None:
                expiry.add_metric(labels, tls.leaf.not_after.timestamp())
                chain_expiry.add_metric(
                    labels, min(cert.not_after.timestamp() for cert in tls.chain)
                )
                trusted.add_metric(labels, 1 if tls.trust is TrustStatus.TRUSTED else 0)
                hostname.add_metric(labels, 1 if tls.hostname_matches else 0)
        if result.mailbox is not None:
            for resource in result.mailbox.quota:
                if resource.ratio is not None:
                    quota.add_metric([*labels, resource.name.lower()], resource.ratio)

    # Problems only (info, warning, critical): a series per success would make
    # sum(maildiag_findings) count what works. Findings of the domain itself
    # (DNS, discovery) have empty endpoint labels.
    findings = GaugeMetricFamily(
        "maildiag_findings",
        "Number of findings that are not OK, per severity, code and endpoint.",
        labels=("severity", "code", *ENDPOINT_LABELS),
    )
    counts = Counter(
        (f.severity.value, f.code, *(_labels_of(f.endpoint) if f.endpoint else ("",) * 4))
        for f in diagnosis.findings
        if f.severity is not Severity.OK
    )
    for key, count in sorted(counts.items()):
        findings.add_metric(list(key), count)
    families = [
        discovery,
        up,
        phases,
        expiry,
        chain_expiry,
        trusted,
        hostname,
        version,
        quota,
        findings,
    ]
    return [success, duration, status, *(f for f in families if f.samples)]


class _Families(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


def _exposition(families: list[GaugeMetricFamily]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


# --------------------------------------------------------------------------
# The exporter


class Exporter:
    """Serves /probe and /metrics; independent of HTTP so tests can call it directly."""

    def __init__(
        self,
        template: CheckRequest,
        profiles: Mapping[str, Credentials] | None = None,
        *,
        check: CheckFunction | None = None,
        log: Callable[[str], None] | None = None,
        max_checks: int = DEFAULT_MAX_CHECKS,
        per_host: int = DEFAULT_PER_HOST,
        share_probes: bool = True,
    ) -> None:
        """``per_host`` 0 means no cap; ``check`` replaces the real check (tests)."""
        if max_checks < 1:
            raise ValueError("max_checks must be at least 1")
        self.template = template
        self.profiles = dict(profiles or {})
        self.host_limiter = HostLimiter(per_host) if per_host else None
        self.probe_cache = ProbeCache() if share_probes else None
        self.max_checks = max_checks
        self._check_slots = threading.BoundedSemaphore(max_checks)
        self.check = check or self._diagnose
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.probes = CounterMetric(
            "maildiag_exporter_probes",
            "Probes answered, by result.",
            ["result"],
            registry=self.registry,
        )
        self.errors = CounterMetric(
            "maildiag_exporter_probe_errors",
            "Probe requests that failed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "maildiag_exporter_probe_duration_seconds",
            "Time to answer a /probe request.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "maildiag_exporter_probes_in_flight",
            "Probes running right now.",
            registry=self.registry,
        )
        build = Gauge(
            "maildiag_exporter_build_info",
            "The maildiag version.",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)
        for result in ("success", "failure", "timeout", "rejected"):
            self.probes.labels(result)
        for reason in ("bad_request", "internal_error", "timeout", "too_many_checks"):
            self.errors.labels(reason)

    def _diagnose(self, request: CheckRequest, profile: Credentials | None) -> Diagnosis:
        """The real check; a profile's login replaces the template's (--user)."""
        from .runner import diagnose

        return diagnose(
            request,
            credentials=profile,
            host_limiter=self.host_limiter,
            probe_cache=self.probe_cache,
        )

    # -- /probe ---------------------------------------------------------------

    def request_for(
        self, query: str, scrape_timeout: str | None
    ) -> tuple[CheckRequest, Credentials | None, float]:
        """The check to run, its profile and the seconds within which to answer."""
        from .dns import InvalidDomain, to_ascii

        try:
            params = parse_qs(
                query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=16
            )
        except ValueError as exc:
            raise BadProbeRequest(f"malformed query string: {exc}") from None
        for secret in ("password", "pass", "user", "username"):
            if secret in params:
                raise BadProbeRequest(
                    "credentials are never taken from the URL; put them in a profile "
                    "(--credentials FILE or MAILDIAG_PROFILE_* variables) and use profile=NAME"
                )
        unknown = sorted(set(params) - set(QUERY_PARAMETERS))
        if unknown:
            raise BadProbeRequest(
                f"unknown parameter(s): {', '.join(unknown)}; use {' and '.join(QUERY_PARAMETERS)}"
            )
        for name, values in params.items():
            if len(values) > 1:
                raise BadProbeRequest(f"parameter {name!r} given more than once")
        target = params.get("target", [""])[0].strip()
        if not target:
            raise BadProbeRequest("the target parameter is missing, e.g. /probe?target=example.org")
        try:
            to_ascii(target)
        except InvalidDomain as exc:
            raise BadProbeRequest(f"invalid target: {exc}") from None

        profile = None
        if "profile" in params:
            name = params["profile"][0]
            if name not in self.profiles:
                known = ", ".join(sorted(self.profiles)) or "none are configured"
                raise BadProbeRequest(f"unknown credential profile {name!r} ({known})")
            profile = self.profiles[name]

        budget = self._budget(scrape_timeout)
        # A check may overrun its deadline by the runner's grace periods.
        deadline = min(self.template.deadline, max(budget - CHECK_SLACK, budget / 2))
        request = replace(
            self.template,
            domain=target,
            deadline=deadline,
            timeout=min(self.template.timeout, deadline),
        )
        return request, profile, budget

    def _budget(self, header: str | None) -> float:
        if header is None or not header.strip():
            # Not Prometheus (curl, a browser): the configured --deadline applies.
            return self.template.deadline + CHECK_SLACK
        try:
            seconds = float(header)
        except ValueError:
            raise BadProbeRequest(
                f"X-Prometheus-Scrape-Timeout-Seconds is not a number: {header!r}"
            ) from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise BadProbeRequest(
                f"X-Prometheus-Scrape-Timeout-Seconds must be positive: {header!r}"
            )
        return max(seconds - SCRAPE_MARGIN, 0.1)

    def probe(self, query: str, scrape_timeout: str | None = None) -> ProbeAnswer:
        started = time.monotonic()
        try:
            request, profile, budget = self.request_for(query, scrape_timeout)
        except BadProbeRequest as exc:
            self.errors.labels("bad_request").inc()
            return ProbeAnswer(400, (str(exc) + "\n").encode(), "text/plain; charset=utf-8")

        if not self._check_slots.acquire(blocking=False):
            # Over the cap: waiting for a slot would only make Prometheus give up.
            self.errors.labels("too_many_checks").inc()
            self.probes.labels("rejected").inc()
            seconds = time.monotonic() - started
            body = _exposition(diagnosis_metrics(None, seconds, no_diagnosis="too_many_checks"))
            return ProbeAnswer(200, body, CONTENT_TYPE_LATEST)
        diagnosis, why = self._run(request, profile, budget)
        seconds = time.monotonic() - started
        self.durations.observe(seconds)
        if diagnosis is None:
            self.probes.labels("timeout").inc()
        else:
            self.probes.labels("success" if probe_succeeded(diagnosis) else "failure").inc()
        body = _exposition(diagnosis_metrics(diagnosis, seconds, no_diagnosis=why))
        return ProbeAnswer(200, body, CONTENT_TYPE_LATEST)

    def _run(
        self, request: CheckRequest, profile: Credentials | None, budget: float
    ) -> tuple[Diagnosis | None, str]:
        """The check in its own thread, so the answer goes out on time even if it hangs.

        The thread holds its slot of ``max_checks`` until the check has
        ended, not just until the scrape is answered.
        """
        outcome: list[Diagnosis | None] = []
        finished = threading.Event()

        def work() -> None:
            try:
                outcome.append(self.check(request, profile))
            except Exception as exc:  # noqa: BLE001 - a failing check is an answer, not a crash
                self.errors.labels("internal_error").inc()
                self.log(f"maildiag exporter: check of {request.domain} failed: {exc!r}")
                outcome.append(None)
            finally:
                finished.set()
                self.in_flight.dec()
                self._check_slots.release()

        self.in_flight.inc()
        try:
            threading.Thread(target=work, name=f"check-{request.domain}", daemon=True).start()
        except BaseException:
            self.in_flight.dec()
            self._check_slots.release()
            raise
        if not finished.wait(budget):
            self.errors.labels("timeout").inc()
            self.log(
                f"maildiag exporter: check of {request.domain} did not finish within "
                f"{budget:.1f} s; answered probe_success 0"
            )
            return None, "timeout"
        return outcome[0], "internal_error"  # the reason counts only without a diagnosis

    # -- /metrics ----------------------------------------------------------------

    def metrics(self) -> ProbeAnswer:
        return ProbeAnswer(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    # -- HTTP --------------------------------------------------------------------

    def make_server(self, host: str, port: int) -> ThreadingHTTPServer:
        exporter = self

        class Handler(_Handler):
            pass

        Handler.exporter = exporter

        class Server(ThreadingHTTPServer):
            # Prometheus starts many scrapes at once; socketserver's backlog of
            # 5 would drop the rest of their SYNs, and each retry costs 1 s.
            request_queue_size = 128
            daemon_threads = True

        return Server((host, port), Handler)


_INDEX = """<!doctype html>
<html><head><title>maildiag exporter</title></head><body>
<h1>maildiag exporter {version}</h1>
<form action="/probe"><label>Domain <input name="target" placeholder="example.org"></label>
<input type="submit" value="Probe"></form>
<p><a href="/metrics">Exporter metrics</a></p>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    exporter: Exporter
    server_version = f"maildiag-exporter/{__version__}"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        url = urlsplit(self.path)
        if url.path == "/probe":
            answer = self.exporter.probe(
                url.query, self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
            )
        elif url.path == "/metrics":
            answer = self.exporter.metrics()
        elif url.path == "/":
            page = _INDEX.format(version=html.escape(__version__))
            answer = ProbeAnswer(200, page.encode(), "text/html; charset=utf-8")
        else:
            answer = ProbeAnswer(
                404,
                b"not found; try /probe?target=DOMAIN or /metrics\n",
                "text/plain; charset=utf-8",
            )
        self._send(answer)

    def do_POST(self) -> None:  # noqa: N802
        self._send(
            ProbeAnswer(HTTPStatus.METHOD_NOT_ALLOWED, b"use GET\n", "text/plain; charset=utf-8"),
            allow="GET",
        )

    def _send(self, answer: ProbeAnswer, allow: str | None = None) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # Prometheus gave up on this scrape; nothing left to tell it

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # scrapes every few seconds would flood the log; failures are logged above
