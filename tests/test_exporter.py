"""`maildiag serve`: the Prometheus exporter, over real HTTP, against fake mail servers.

Answers are parsed with prometheus_client's own parser and checked with
Prometheus' ``promtool check metrics``, so a malformed exposition fails the
test the way it would fail a scrape.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maildiag.cli import build_request, main
from maildiag.credentials import CredentialsError, load_profiles, profiles_from_env
from maildiag.credentials_input import Credentials
from maildiag.exporter import Exporter, diagnosis_metrics, parse_listen
from maildiag.findings import make_finding
from maildiag.model import (
    CertificateInfo,
    Diagnosis,
    Discovery,
    Endpoint,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
    Status,
    TlsFacts,
    TrustStatus,
)
from maildiag.runner import CheckRequest, diagnose
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost
from tests.lab.promtool import check_metrics

ALL_ENDPOINTS = ("imap", "imaps", "pop3", "pop3s", "submission", "submissions")
SLOW_GREETING = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    hosts = {
        "good": ("127.0.1.91", {}),
        "bad": ("127.0.1.92", {"submission": Behaviour.NO_STARTTLS}),
        "mute": ("127.0.1.93", dict.fromkeys(ALL_ENDPOINTS, Behaviour.NEVER_GREET)),
        "slow": ("127.0.1.94", dict.fromkeys(ALL_ENDPOINTS, Behaviour.SLOW_GREETING)),
        "wronghost": ("127.0.1.96", {}),
        "selfsigned": ("127.0.1.97", {}),
    }
    certificates = {
        "wronghost": pki.wrong_host("web123.provider.test"),
        "selfsigned": pki.self_signed("mail.selfsigned.test"),
    }
    zones = {
        f"{name}.test": {"@": {"MX": [f"10 mail.{name}.test."]}, "mail": {"A": [address]}}
        for name, (address, _) in hosts.items()
    }
    servers = [
        FakeMailHost(
            address,
            certificates.get(name, pki.good(f"mail.{name}.test")).server_context(),
            hostname=f"mail.{name}.test",
            behaviours=behaviours,
            delay=SLOW_GREETING,
        )
        for name, (address, behaviours) in hosts.items()
    ]
    with DnsServer(zones, "127.0.1.91") as dns:
        for server in servers:
            server.start()
        try:
            yield {"nameserver": dns.nameserver, "ca_file": str(pki.ca_pem_path)}
        finally:
            for server in servers:
                server.stop()


def template(lab: dict[str, object], **changes: object) -> CheckRequest:
    options = {
        "timeout": 10.0,
        "deadline": 30.0,
        "nameserver": lab["nameserver"],
        "ca_file": lab["ca_file"],
        "cert_warning_days": 21.0,
        "cert_critical_days": 7.0,
        "no_autoconfig": True,
        **changes,
    }
    return build_request("", **options)


class Running:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.server = exporter.make_server("127.0.1.95", 0)
        self.base = f"http://127.0.1.95:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(
        self, path: str, timeout_header: str | None = None, client_timeout: float = 30
    ) -> tuple[int, str]:
        headers = {}
        if timeout_header is not None:
            headers["X-Prometheus-Scrape-Timeout-Seconds"] = timeout_header
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=client_timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter(lab: dict[str, object]) -> Iterator[Running]:
    running = Running(Exporter(template(lab), {"kunde": Credentials("alice@example.test", "pw")}))
    yield running
    running.close()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every answer the tests read is also checked by Prometheus' own promtool."""
    check_metrics(text)
    return parsed(text)


def parsed(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of an exposition, without promtool (for many answers of one kind)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [
        v
        for sample_labels, v in found[name]
        if all(sample_labels.get(k) == want for k, want in labels.items())
    ]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum over every series that has these labels (findings are per endpoint)."""
    return sum(
        v
        for sample_labels, v in found.get(name, [])
        if all(sample_labels.get(k) == want for k, want in labels.items())
    )


# -- /probe ------------------------------------------------------------------------


def test_probe_of_a_healthy_domain(exporter: Running) -> None:
    status, text = exporter.get("/probe?target=good.test", "10")
    assert status == 200
    found = samples(text)
    assert value(found, "maildiag_probe_success") == 1
    assert value(found, "maildiag_status") == 0
    assert 0 < value(found, "maildiag_probe_duration_seconds") < 10
    endpoint = {"protocol": "imap", "host": "mail.good.test", "port": "993", "security": "tls"}
    assert len(found["maildiag_endpoint_up"]) == 6
    assert value(found, "maildiag_endpoint_up", **endpoint) == 1
    assert value(found, "maildiag_endpoint_phase_duration_seconds", **endpoint, phase="tls") > 0
    assert value(found, "maildiag_tls_version_info", **endpoint) == 1
    (version_labels, _), *_ = found["maildiag_tls_version_info"]
    assert version_labels["version"].startswith("TLSv1.")
    expiry = value(found, "maildiag_tls_cert_expiry_timestamp_seconds", **endpoint)
    assert expiry > datetime.now().timestamp() + 21 * 86400
    chain = value(found, "maildiag_tls_cert_chain_earliest_expiry_timestamp_seconds", **endpoint)
    assert datetime.now().timestamp() < chain <= expiry
    assert value(found, "maildiag_tls_cert_trusted", **endpoint) == 1
    assert value(found, "maildiag_tls_cert_hostname_match", **endpoint) == 1
    # Behaviour change (issue #11): successes are no findings series, so
    # sum(maildiag_findings) counts problems only.
    assert "maildiag_findings" not in found


def test_probe_of_a_broken_domain_fails(exporter: Running) -> None:
    status, text = exporter.get("/probe?target=bad.test", "10")
    assert status == 200
    found = samples(text)
    assert value(found, "maildiag_probe_success") == 0
    assert value(found, "maildiag_status") == 2
    assert value(found, "maildiag_endpoint_up", protocol="smtp", port="587") == 0
    assert value(found, "maildiag_findings", severity="critical", code="STARTTLS_MISSING") == 1
    # Findings carry the endpoint they concern.
    assert (
        value(
            found,
            "maildiag_findings",
            code="STARTTLS_MISSING",
            protocol="smtp",
            host="mail.bad.test",
            port="587",
            security="starttls",
        )
        == 1
    )
    assert not [labels for labels, _ in found["maildiag_findings"] if labels["severity"] == "ok"]


def test_a_certificate_for_another_name_is_not_a_hostname_match(exporter: Running) -> None:
    found = samples(exporter.get("/probe?target=wronghost.test", "10")[1])
    endpoint = {"protocol": "imap", "port": "993"}
    assert value(found, "maildiag_tls_cert_hostname_match", **endpoint) == 0
    assert value(found, "maildiag_tls_cert_trusted", **endpoint) == 1  # the chain is fine
    assert value(found, "maildiag_findings", code="TLS_HOSTNAME_MISMATCH", **endpoint) == 1


def test_a_self_signed_certificate_is_not_trusted(exporter: Running) -> None:
    found = samples(exporter.get("/probe?target=selfsigned.test", "10")[1])
    endpoint = {"protocol": "imap", "port": "993"}
    assert value(found, "maildiag_tls_cert_trusted", **endpoint) == 0
    assert value(found, "maildiag_tls_cert_hostname_match", **endpoint) == 1
    assert value(found, "maildiag_probe_success") == 0


def _certificate(name: str, not_after: datetime) -> CertificateInfo:
    return CertificateInfo(
        subject=f"CN={name}",
        issuer="CN=issuer",
        common_name=name,
        sans=(name,),
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=not_after,
        serial="1",
        fingerprint_sha256="00",
        self_issued=False,
        key_description="EC secp256r1",
        signature_algorithm="ecdsa-with-SHA256",
    )


def test_the_earliest_expiry_covers_the_whole_chain() -> None:
    """An intermediate that expires before the leaf breaks the chain first
    (as blackbox's probe_ssl_earliest_cert_expiry reports)."""
    leaf_end = datetime(2026, 1, 1, tzinfo=UTC)
    intermediate_end = datetime(2025, 3, 1, tzinfo=UTC)
    endpoint = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS)
    tls = TlsFacts(
        version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        cipher_bits=128,
        chain=(
            _certificate("mail.kunde.test", leaf_end),
            _certificate("Intermediate", intermediate_end),
        ),
        trust=TrustStatus.TRUSTED,
        trust_detail=None,
        hostname="mail.kunde.test",
        hostname_matches=True,
        days_remaining=200.0,
        handshake_seconds=0.01,
    )
    result = ProbeResult(endpoint, Outcome.OK, timings={"connect": 0.01}, tls=tls)
    diagnosis = Diagnosis(
        domain="kunde.test",
        domain_ascii="kunde.test",
        started_at=datetime(2024, 5, 1, tzinfo=UTC),
        seconds=0.5,
        discovery=Discovery("kunde.test", "kunde.test", True),
        results=(result,),
        findings=(make_finding("ENDPOINT_OK", endpoint, outcome="ok"),),
        status=Status.OK,
    )
    families = {f.name: f for f in diagnosis_metrics(diagnosis, 0.5)}
    (leaf,) = families["maildiag_tls_cert_expiry_timestamp_seconds"].samples
    (chain,) = families["maildiag_tls_cert_chain_earliest_expiry_timestamp_seconds"].samples
    assert leaf.value == leaf_end.timestamp()
    assert chain.value == intermediate_end.timestamp()
    assert "maildiag_findings" not in families  # ENDPOINT_OK is no series


def test_a_missing_domain_is_critical(exporter: Running) -> None:
    """Behaviour change (issue #11): NXDOMAIN is CRITICAL (2), not UNKNOWN."""
    found = samples(exporter.get("/probe?target=nothing.good.test", "10")[1])
    assert value(found, "maildiag_probe_success") == 0
    assert value(found, "maildiag_status") == 2
    assert "maildiag_endpoint_up" not in found


def test_check_bounded_by_the_scrape_timeout(exporter: Running) -> None:
    """A server that never greets would hold a probe for --timeout (10 s); the scrape
    timeout of 2 s wins, and the answer arrives before Prometheus would give up."""
    started = time.monotonic()
    status, text = exporter.get("/probe?target=mute.test", "2", client_timeout=5)
    elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed < 2.0
    found = samples(text)
    assert value(found, "maildiag_probe_success") == 0
    assert total(found, "maildiag_findings", severity="warning", code="DEADLINE_EXCEEDED") >= 1


def test_with_enough_time_the_slow_server_succeeds(exporter: Running) -> None:
    """The twin: the same kind of wait inside a generous scrape timeout is a success."""
    found = samples(exporter.get("/probe?target=slow.test", "10")[1])
    assert value(found, "maildiag_probe_success") == 1
    assert (
        value(
            found,
            "maildiag_endpoint_phase_duration_seconds",
            protocol="imap",
            port="993",
            phase="greeting",
        )
        >= SLOW_GREETING * 0.9
    )


def test_a_hung_check_still_answers_in_time(lab: dict[str, object]) -> None:
    release = threading.Event()

    def hung(request: CheckRequest, profile: Credentials | None) -> Diagnosis:
        release.wait(30)
        return diagnose(request)

    running = Running(Exporter(template(lab), check=hung, log=lambda message: None))
    try:
        started = time.monotonic()
        status, text = running.get("/probe?target=good.test", "1.5", client_timeout=5)
        assert time.monotonic() - started < 1.5
        assert status == 200
        found = samples(text)
        assert value(found, "maildiag_probe_success") == 0
        assert value(found, "maildiag_status") == 3
        own = samples(running.get("/metrics")[1])
        assert value(own, "maildiag_exporter_probe_errors_total", reason="timeout") == 1
        assert value(own, "maildiag_exporter_probes_total", result="timeout") == 1
    finally:
        release.set()
        running.close()


def test_a_crashing_check_is_an_answer_not_a_crash(lab: dict[str, object]) -> None:
    calls = []

    def crashing(request: CheckRequest, profile: Credentials | None) -> Diagnosis:
        calls.append(request.domain)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return diagnose(request)

    running = Running(Exporter(template(lab), check=crashing, log=lambda message: None))
    try:
        status, text = running.get("/probe?target=good.test", "10")
        assert status == 200 and value(samples(text), "maildiag_probe_success") == 0
        status, text = running.get("/probe?target=good.test", "10")  # still serving
        assert status == 200 and value(samples(text), "maildiag_probe_success") == 1
        own = samples(running.get("/metrics")[1])
        assert value(own, "maildiag_exporter_probe_errors_total", reason="internal_error") == 1
    finally:
        running.close()


def test_concurrent_scrapes_run_concurrently(lab: dict[str, object]) -> None:
    """Six scrapes of a server that takes a second to greet: together ≈ 1 s, not 6 s.

    With a per-host cap that lets one check's six probes run at once (the
    default of 2 would take three rounds of greetings).
    """
    exporter = Running(Exporter(template(lab), per_host=6))
    try:
        _six_slow_scrapes_at_once(exporter)
    finally:
        exporter.close()


def _six_slow_scrapes_at_once(exporter: Running) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: exporter.get("/probe?target=slow.test", "10"), range(6)))
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in answers)
    assert all(value(samples(text), "maildiag_probe_success") == 1 for _, text in answers)
    assert elapsed < 3 * SLOW_GREETING, elapsed
    own = samples(exporter.get("/metrics")[1])
    assert value(own, "maildiag_exporter_probes_total", result="success") == 6
    assert value(own, "maildiag_exporter_probes_in_flight") == 0


# -- many customers of one provider ----------------------------------------------------

PROVIDER_DNS = "127.0.7.1"
PROVIDER_ADDRESS = "127.0.7.2"
PROVIDER_HOST = "mail.provider.test"
CUSTOMERS = tuple(f"c{n:02}.test" for n in range(50))
MAX_CHECKS = 10


@pytest.fixture(scope="module")
def provider(pki: TestPKI) -> Iterator[tuple[FakeMailHost, str]]:
    """One provider host for 50 customer domains that all name it in their MX record."""
    zones: dict[str, object] = {d: {"@": {"MX": [f"10 {PROVIDER_HOST}."]}} for d in CUSTOMERS}
    zones["provider.test"] = {"mail": {"A": [PROVIDER_ADDRESS]}}
    host = FakeMailHost(
        PROVIDER_ADDRESS,
        pki.good([PROVIDER_HOST]).server_context(),
        hostname=PROVIDER_HOST,
        behaviours=dict.fromkeys(ALL_ENDPOINTS, Behaviour.SLOW_GREETING),
        delay=0.2,  # so that the checks admitted are still running when the rest arrive
    )
    with DnsServer(zones, PROVIDER_DNS) as dns, host:
        yield host, dns.nameserver


@pytest.mark.parametrize(
    ("per_host", "share_probes"),
    [(2, True), (2, False), (0, False)],
    ids=["cap_and_shared_probes", "cap_alone", "no_cap_twin"],
)
def test_50_concurrent_scrapes_of_one_provider(
    lab: dict[str, object],
    pki: TestPKI,
    provider: tuple[FakeMailHost, str],
    per_host: int,
    share_probes: bool,
) -> None:
    """50 scrapes at once, of 50 customer domains on one server, over HTTP.

    The connections counted at the server stay within --per-host (the twin
    without a cap shows the count would go higher); at most --max-checks
    checks run; the scrapes over that cap are answered at once, with probe
    success 0 and the reason.
    """
    host, nameserver = provider
    host.gauge.reset_peak()
    exporter = Exporter(
        template(lab, nameserver=nameserver, ca_file=str(pki.ca_pem_path)),
        max_checks=MAX_CHECKS,
        per_host=per_host,
        share_probes=share_probes,
    )
    running_checks, most_checks, lock = [0], [0], threading.Lock()
    real_check = exporter.check

    def counted(request: CheckRequest, profile: Credentials | None) -> Diagnosis:
        with lock:
            running_checks[0] += 1
            most_checks[0] = max(most_checks[0], running_checks[0])
        try:
            return real_check(request, profile)
        finally:
            with lock:
                running_checks[0] -= 1

    exporter.check = counted
    running = Running(exporter)
    start = threading.Barrier(len(CUSTOMERS))

    def scrape(domain: str) -> tuple[int, str, float]:
        start.wait()
        started = time.monotonic()
        status, text = running.get(f"/probe?target={domain}", "30", client_timeout=60)
        return status, text, time.monotonic() - started

    try:
        with ThreadPoolExecutor(len(CUSTOMERS)) as pool:
            answers = list(pool.map(scrape, CUSTOMERS))
        own = samples(running.get("/metrics")[1])
    finally:
        running.close()

    assert all(status == 200 for status, _, _ in answers)
    found = [(parsed(text), seconds) for _, text, seconds in answers]
    rejected = [
        (f, seconds)
        for f, seconds in found
        if total(f, "maildiag_probe_no_diagnosis", reason="too_many_checks") == 1
    ]
    checked = [f for f, _ in found if "maildiag_endpoint_up" in f]
    assert len(rejected) + len(checked) == len(CUSTOMERS)
    assert rejected, "every scrape found a free slot: the cap was never reached"
    check_metrics(next(text for _, text, _ in answers if "too_many_checks" in text))
    for f, seconds in rejected:
        assert value(f, "maildiag_probe_success") == 0
        assert value(f, "maildiag_status") == 3
        assert seconds < 1.0
    assert all(value(f, "maildiag_probe_success") == 1 for f in checked)
    assert most_checks[0] <= MAX_CHECKS
    assert value(own, "maildiag_exporter_probes_total", result="rejected") == len(rejected)
    assert value(own, "maildiag_exporter_probe_errors_total", reason="too_many_checks") == len(
        rejected
    )
    if per_host:
        assert 1 <= host.gauge.peak <= per_host
    else:
        assert host.gauge.peak > 2


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "target parameter is missing"),
        ("?target=", "target parameter is missing"),
        ("?target=alice@good.test", "email address"),
        ("?target=good.test:993", "invalid target"),
        ("?target=good.test&target=bad.test", "more than once"),
        ("?target=good.test&module=imap", "unknown parameter"),
        ("?target=good.test&password=secret", "never taken from the URL"),
        ("?target=good.test&profile=nobody", "unknown credential profile"),
        ("?target=good.test&&x", "malformed query"),
    ],
)
def test_bad_requests_get_400_with_a_reason(exporter: Running, query: str, reason: str) -> None:
    status, text = exporter.get("/probe" + query, "10")
    assert status == 400
    assert reason in text


@pytest.mark.parametrize("header", ["soon", "-1", "nan", "inf"])
def test_a_bad_timeout_header_is_a_bad_request(exporter: Running, header: str) -> None:
    status, text = exporter.get("/probe?target=good.test", header)
    assert status == 400 and "X-Prometheus-Scrape-Timeout-Seconds" in text


def test_bad_requests_are_counted_and_other_paths_are_404(exporter: Running) -> None:
    exporter.get("/probe", "10")
    assert exporter.get("/nothing")[0] == 404
    assert exporter.get("/")[0] == 200
    own = samples(exporter.get("/metrics")[1])
    assert value(own, "maildiag_exporter_probe_errors_total", reason="bad_request") == 1
    assert value(own, "maildiag_exporter_build_info") == 1


# -- credentials ----------------------------------------------------------------------


def test_a_profile_is_chosen_by_name_and_reaches_the_check(lab: dict[str, object]) -> None:
    seen: list[Credentials | None] = []

    def recording(request: CheckRequest, profile: Credentials | None) -> Diagnosis:
        seen.append(profile)
        return diagnose(request)

    kunde = Credentials("alice@example.test", "wonderland")
    running = Running(Exporter(template(lab), {"kunde": kunde}, check=recording))
    try:
        assert running.get("/probe?target=good.test&profile=kunde", "10")[0] == 200
        assert running.get("/probe?target=good.test", "10")[0] == 200
    finally:
        running.close()
    assert seen == [kunde, None]
    assert "wonderland" not in repr(kunde)


def test_a_profile_logs_in_and_reports_the_quota(lab: dict[str, object]) -> None:
    profiles = {
        "kunde": Credentials("alice@example.test", "wonderland"),
        "wrong": Credentials("alice@example.test", "not-the-password"),
    }
    running = Running(Exporter(template(lab), profiles))
    try:
        found = samples(running.get("/probe?target=good.test&profile=kunde", "10")[1])
        assert value(found, "maildiag_probe_success") == 1
        ratio = value(
            found, "maildiag_quota_usage_ratio", protocol="imap", port="993", resource="storage"
        )
        assert 0 < ratio < 1
        # The twin: the wrong password fails the probe and says why.
        found = samples(running.get("/probe?target=good.test&profile=wrong", "10")[1])
        assert value(found, "maildiag_probe_success") == 0
        assert total(found, "maildiag_findings", severity="critical", code="AUTH_FAILED") >= 1
        assert "maildiag_quota_usage_ratio" not in found
    finally:
        running.close()


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_profiles_load_from_a_private_file(tmp_path: Path) -> None:
    path = write_private(
        tmp_path / "credentials.toml",
        """
[profiles.kunde]
user = "alice@kunde.test"
password = "s3cret"

[profiles.shop]
user = "info@shop.test"
password_env = "SHOP_PASSWORD"
""",
    )
    profiles = load_profiles(path, environ={"SHOP_PASSWORD": "from-env"})
    assert profiles == {
        "kunde": Credentials("alice@kunde.test", "s3cret"),
        "shop": Credentials("info@shop.test", "from-env"),
    }


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_private(
        tmp_path / "credentials.toml", '[profiles.a]\nuser = "u"\npassword = "p"\n', mode
    )
    with pytest.raises(CredentialsError, match=f"mode {mode:04o}.*chmod 600"):
        load_profiles(path)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[profiles.a]\nuser = "u"\n', "exactly one of 'password' and 'password_env'"),
        ('[profiles.a]\nuser = "u"\npassword = "p"\npassword_env = "X"\n', "exactly one"),
        ('[profiles.a]\nuser = "u"\npassword_env = "UNSET_VARIABLE_X"\n', "is not set"),
        ('[profiles.a]\nuser = ""\npassword = "p"\n', "non-empty string"),
        ('[profiles.a]\nuser = "u"\npassword = "p"\nport = 1\n', "unknown key"),
        ('[profiles."a b"]\nuser = "u"\npassword = "p"\n', "a name may hold"),
        ("[other]\nx = 1\n", "unknown table"),
        ("[profiles.a\n", "not valid TOML"),
    ],
)
def test_bad_credential_files_say_why(tmp_path: Path, text: str, reason: str) -> None:
    path = write_private(tmp_path / "credentials.toml", text)
    with pytest.raises(CredentialsError, match=reason):
        load_profiles(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no such credential file"):
        load_profiles(tmp_path / "absent.toml")


def test_profiles_from_the_environment() -> None:
    environ = {
        "MAILDIAG_PROFILE_MY_SHOP_USER": "info@shop.test",
        "MAILDIAG_PROFILE_MY_SHOP_PASSWORD": "pw",
        "UNRELATED": "x",
    }
    assert profiles_from_env(environ) == {"my_shop": Credentials("info@shop.test", "pw")}
    with pytest.raises(CredentialsError, match="MAILDIAG_PROFILE_HALF_PASSWORD is not set"):
        profiles_from_env({"MAILDIAG_PROFILE_HALF_USER": "u"})


# -- the command -------------------------------------------------------------------------


def test_serve_refuses_a_readable_credential_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_private(
        tmp_path / "credentials.toml", '[profiles.a]\nuser = "u"\npassword = "p"\n', 0o644
    )
    assert main(["serve", "--listen", "127.0.1.95:0", "--credentials", str(path)]) == 3
    assert "chmod 600" in capsys.readouterr().err


def test_serve_answers_scrapes_until_stopped(lab: dict[str, object], tmp_path: Path) -> None:
    """The real command in its own process, with a profile from the environment."""
    import re
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "MAILDIAG_PROFILE_KUNDE_USER": "alice@example.test",
        "MAILDIAG_PROFILE_KUNDE_PASSWORD": "wonderland",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maildiag",
            "serve",
            "--listen",
            "127.0.1.96:0",
            "--nameserver",
            str(lab["nameserver"]),
            "--ca-file",
            str(lab["ca_file"]),
            "--no-autoconfig",
        ],
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        match = re.search(r"http://127\.0\.1\.96:(\d+)/", banner)
        assert match, banner
        assert "1 credential profile(s)" in banner
        url = f"http://127.0.1.96:{match[1]}/probe?target=good.test&profile=kunde"
        request = urllib.request.Request(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "9"})
        with urllib.request.urlopen(request, timeout=15) as response:
            found = samples(response.read().decode())
        assert value(found, "maildiag_probe_success") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def test_serve_rejects_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "nowhere"]) == 3
    assert "ADDR:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9137", ("127.0.0.1", 9137)),
        ("[::1]:9137", ("::1", 9137)),
        (":9137", ("", 9137)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9137", "host:", "::1:9137", "a:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_importing_the_cli_does_not_load_prometheus_client() -> None:
    import subprocess
    import sys

    code = "import sys, maildiag.cli; sys.exit(1 if 'prometheus_client' in sys.modules else 0)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
