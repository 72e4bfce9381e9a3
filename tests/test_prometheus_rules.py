"""The shipped Prometheus alerting rules, checked and unit-tested by promtool.

``fixtures/prometheus/maildiag.rules.yml`` is what docs/monitoring.md tells
users to load; ``maildiag.rules.test.yml`` feeds it input series (a domain
that is down with gaps between scrapes, certificates expiring soon and long
ago, untrusted and wrong-name certificates, and their healthy twins) and says
which alerts must fire. ``previous-docs.rules*.yml`` reproduce what was wrong
with the rules the docs showed before issue #11.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maildiag.exporter import Exporter, diagnosis_metrics
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
from maildiag.runner import CheckRequest
from tests.lab import promtool

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "fixtures" / "prometheus"
RULES = RULES_DIR / "maildiag.rules.yml"
RULE_TESTS = RULES_DIR / "maildiag.rules.test.yml"
DOCS = ROOT / "docs" / "monitoring.md"


def test_rules_pass_promtool_check() -> None:
    done = promtool.run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_rules_pass_their_unit_tests() -> None:
    done = promtool.run("test", "rules", RULE_TESTS.name, cwd=RULES_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_previous_rules_had_the_bugs_of_issue_11() -> None:
    """The twin: the rules the docs showed before never alerted on a slow broken
    domain and called a certificate expired for years "expiring within 14 days"."""
    done = promtool.run("test", "rules", "previous-docs.rules.test.yml", cwd=RULES_DIR)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (") > 0 < 14 * 86400", ") < 14 * 86400"),  # the expired certificate would "expire soon"
        ("max_over_time(maildiag_probe_success[15m]) == 0", "maildiag_probe_success == 0"),
    ],
)
def test_the_unit_tests_catch_a_regression(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = promtool.run("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0, done.stdout


def _diagnosis_with_tls() -> Diagnosis:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    cert = CertificateInfo(
        subject="CN=mail.kunde.test",
        issuer="CN=ca",
        common_name="mail.kunde.test",
        sans=("mail.kunde.test",),
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=60),
        serial="1",
        fingerprint_sha256="00",
        self_issued=False,
        key_description="EC secp256r1",
        signature_algorithm="ecdsa",
    )
    tls = TlsFacts(
        version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        cipher_bits=128,
        chain=(cert,),
        trust=TrustStatus.TRUSTED,
        trust_detail=None,
        hostname="mail.kunde.test",
        hostname_matches=True,
        days_remaining=60.0,
        handshake_seconds=0.01,
    )
    endpoint = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS)
    return Diagnosis(
        domain="kunde.test",
        domain_ascii="kunde.test",
        started_at=now,
        seconds=0.5,
        discovery=Discovery("kunde.test", "kunde.test", True),
        results=(ProbeResult(endpoint, Outcome.OK, timings={"connect": 0.01}, tls=tls),),
        findings=(make_finding("MX_MISSING", domain="kunde.test"),),
        status=Status.WARNING,
    )


def test_every_metric_the_rules_use_is_exported() -> None:
    exported = {family.name for family in diagnosis_metrics(_diagnosis_with_tls(), 0.5)}
    # ... by /probe, or by the exporter's own /metrics
    own = Exporter(CheckRequest("")).registry.collect()
    exported |= {sample.name for family in own for sample in family.samples}
    used = set(re.findall(r"\bmaildiag_[a-z_]+", RULES.read_text()))
    assert used and used <= exported, used - exported


def test_docs_point_to_the_rules_and_scrape_often_enough() -> None:
    """Prometheus looks back 5 minutes for an instant vector: a scrape interval of
    5 minutes leaves gaps whenever a scrape is late or fails."""
    text = DOCS.read_text()
    assert "fixtures/prometheus/maildiag.rules.yml" in text
    intervals = re.findall(r"scrape_interval: *(\d+)([smh])", text)
    assert intervals
    for number, unit in intervals:
        assert int(number) * {"s": 1, "m": 60, "h": 3600}[unit] <= 120, (number, unit)
