"""The settings sheet: what to type into the mail client, built only from what was measured.

A setting is offered only for an endpoint that answered, negotiated TLS with
a certificate that verifies for the name in the setting, and has no critical
finding. When a certificate is trusted but issued for another name (the
shared-hosting case: mail.kunde.example presents web123.provider.example),
that other name is probed too, and offered only if it works.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from msgspec import Struct
from msgspec.structs import replace

from .model import (
    AuthStatus,
    Diagnosis,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Severity,
    Status,
    TrustStatus,
)
from .protocols.registry import INCOMING, ORDER
from .runner import CheckRequest

_MODERN_TLS = ("TLSv1.2", "TLSv1.3")


class ServerSetting(Struct, frozen=True):
    """One server entry of a mail client's account settings."""

    protocol: Protocol
    host: str
    port: int
    security: Security  # TLS ("SSL/TLS" in clients) or STARTTLS
    # Seen to work with the user's password in this check; None: not tried.
    login_verified: bool | None = None
    # The name the certificate is valid for, used instead of the domain's own
    # server name (which the certificate does not cover).
    certificate_name_of: str | None = None


class Unavailable(Struct, frozen=True):
    """A protocol for which no endpoint can be recommended, and why (finding codes)."""

    protocol: Protocol
    codes: tuple[str, ...]


class SettingsSheet(Struct, frozen=True):
    domain: str
    user: str | None
    incoming: tuple[ServerSetting, ...]  # the recommended one first (IMAP over POP3)
    outgoing: ServerSetting | None
    unavailable: tuple[Unavailable, ...]
    diagnosis: Diagnosis

    @property
    def complete(self) -> bool:
        """Receiving and sending can both be set up safely."""
        return bool(self.incoming) and self.outgoing is not None

    @property
    def status(self) -> Status:
        return Status.OK if self.complete else Status.CRITICAL


def usable(result: ProbeResult, diagnosis: Diagnosis) -> bool:
    """The endpoint can be put into a mail client as it is."""
    tls = result.tls
    if result.outcome is not Outcome.OK or result.endpoint.security is Security.PLAIN:
        return False
    if tls is None or tls.trust is not TrustStatus.TRUSTED or not tls.hostname_matches:
        return False
    if tls.version not in _MODERN_TLS:
        return False
    if result.auth is not None and result.auth.status is AuthStatus.ACCOUNT_DISABLED:
        return False
    return not any(
        f.endpoint == result.endpoint and f.severity is Severity.CRITICAL
        for f in diagnosis.findings
    )


def _preference(result: ProbeResult) -> tuple[int, int]:
    verified = result.auth is not None and result.auth.status is AuthStatus.OK
    implicit = result.endpoint.security is Security.TLS
    return (0 if verified else 1, 0 if implicit else 1)


def _setting(result: ProbeResult, certificate_name_of: str | None = None) -> ServerSetting:
    endpoint = result.endpoint
    verified = None if result.auth is None else result.auth.status is AuthStatus.OK
    if result.auth is not None and result.auth.status is AuthStatus.SKIPPED:
        verified = None
    return ServerSetting(
        endpoint.protocol,
        endpoint.host,
        endpoint.port,
        endpoint.security,
        login_verified=verified,
        certificate_name_of=certificate_name_of,
    )


def best(diagnosis: Diagnosis, protocol: Protocol) -> ProbeResult | None:
    """The endpoint of ``protocol`` to recommend: usable, the login seen working, implicit TLS."""
    candidates = [
        r for r in diagnosis.results if r.endpoint.protocol is protocol and usable(r, diagnosis)
    ]
    return min(candidates, key=_preference, default=None)


def certificate_names(diagnosis: Diagnosis, protocol: Protocol) -> list[tuple[str, str]]:
    """(server name used, name on its certificate) where a trusted certificate has another name."""
    names: list[tuple[str, str]] = []
    for result in diagnosis.results:
        tls = result.tls
        if result.endpoint.protocol is not protocol or tls is None or tls.leaf is None:
            continue
        if tls.trust is not TrustStatus.TRUSTED or tls.hostname_matches:
            continue
        for name in tls.leaf.sans:
            concrete = not name.startswith("*.") and not name.replace(".", "").isdigit()
            pair = (result.endpoint.host, name.lower())
            if concrete and ":" not in name and pair not in names:
                names.append(pair)
    return names


def _blocking_codes(diagnosis: Diagnosis, protocol: Protocol) -> tuple[str, ...]:
    codes: list[str] = []
    for finding in diagnosis.findings:
        endpoint = finding.endpoint
        relevant = endpoint is not None and endpoint.protocol is protocol
        if relevant and finding.severity.rank >= Severity.WARNING.rank:
            if finding.code not in codes:
                codes.append(finding.code)
    return tuple(codes)


Diagnose = Callable[[CheckRequest], Diagnosis]


def build_sheet(request: CheckRequest, diagnose: Diagnose) -> SettingsSheet:
    """Checks the domain and turns the measurements into the settings to type."""
    diagnosis = diagnose(request)
    chosen: dict[Protocol, ServerSetting] = {}
    for protocol in ORDER:
        result = best(diagnosis, protocol)
        if result is not None:
            chosen[protocol] = _setting(result)
    renamed = {
        protocol: names[0]
        for protocol in ORDER
        if protocol not in chosen and (names := certificate_names(diagnosis, protocol))
    }
    if renamed:
        chosen.update(_by_certificate_name(request, diagnose, renamed))
    missing = [p for p in ORDER if p not in chosen]
    return SettingsSheet(
        domain=diagnosis.domain,
        user=diagnosis.user,
        incoming=tuple(chosen[p] for p in INCOMING if p in chosen),
        outgoing=chosen.get(Protocol.SMTP),
        unavailable=tuple(Unavailable(p, _blocking_codes(diagnosis, p)) for p in missing),
        diagnosis=diagnosis,
    )


def _by_certificate_name(
    request: CheckRequest, diagnose: Diagnose, renamed: Mapping[Protocol, tuple[str, str]]
) -> dict[Protocol, ServerSetting]:
    """The settings that work under the names the certificates are issued for.

    One more check with those names as the servers. It runs without the
    password: the first check already judged the login (or held it back),
    and a second try would count twice against a lockout.
    """
    hosts = {**request.overrides.hosts, **{p: name for p, (_, name) in renamed.items()}}
    retry = replace(
        request,
        overrides=replace(request.overrides, hosts=hosts),
        credentials=None,
        sync=False,
        started=None,
    )
    rechecked = diagnose(retry)
    found: dict[Protocol, ServerSetting] = {}
    for protocol, (used, _) in renamed.items():
        result = best(rechecked, protocol)
        if result is not None:
            found[protocol] = _setting(result, certificate_name_of=used)
    return found
