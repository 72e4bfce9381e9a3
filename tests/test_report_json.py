"""The JSON report and its schema: the schema rejects what maildiag never writes.

Every report is validated with formats on (``jsonschema`` with a
``FormatChecker``; ``rfc3339-validator`` makes "date-time" checked), and each
tightening of the schema has a document that must be rejected — a copy of a
real report with one thing changed — next to the real report that passes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from maildiag.batch import error_json
from maildiag.cli import main
from maildiag.findings import CATALOGUE
from maildiag.model import AuthStatus, Outcome, Phase, Protocol, Security, TrustStatus
from maildiag.report.json import SCHEMA_VERSION
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import FakeMailHost

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "maildiag" / "schema" / "report.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
ADDRESS = {"good": "127.0.2.81", "expired": "127.0.2.82"}


def errors(document: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    zones = {
        f"{name}.test": {
            "@": {"MX": [f"10 mail.{name}.test."]},
            "mail": {"A": [address]},
            "_imaps._tcp": {"SRV": [f"0 1 993 mail.{name}.test."]},
        }
        for name, address in ADDRESS.items()
    }
    hosts = [
        FakeMailHost(
            ADDRESS["good"], pki.good("mail.good.test").server_context(), hostname="mail.good.test"
        ),
        FakeMailHost(
            ADDRESS["expired"],
            pki.expired("mail.expired.test", days_ago=30).server_context(),
            hostname="mail.expired.test",
        ),
    ]
    with DnsServer(zones, "127.0.2.83") as dns:
        for host in hosts:
            host.start()
        try:
            yield [
                "--nameserver",
                dns.nameserver,
                "--ca-file",
                str(pki.ca_pem_path),
                "--no-autoconfig",
                "--timeout",
                "3",
            ]
        finally:
            for host in hosts:
                host.stop()


# -- the schema itself --------------------------------------------------------


def test_date_time_formats_are_really_checked() -> None:
    # Without rfc3339-validator, jsonschema silently accepts any string here.
    assert not FormatChecker().conforms("yesterday", "date-time")
    assert FormatChecker().conforms("2024-05-01T12:00:00+00:00", "date-time")


def test_finding_codes_are_exactly_the_catalogue() -> None:
    """Other work adds codes: `make docs` (tests/update_docs.py) regenerates the enum."""
    enum = SCHEMA["$defs"]["finding"]["properties"]["code"]["enum"]
    assert enum == sorted(CATALOGUE), "run `make docs` to regenerate the schema's code enum"


def test_regenerating_the_code_enum_changes_nothing() -> None:
    from tests.update_docs import SCHEMA as SCHEMA_PATH
    from tests.update_docs import schema_with_codes

    text = SCHEMA_PATH.read_text()
    assert schema_with_codes(text) == text


def test_enums_match_the_model() -> None:
    defs = SCHEMA["$defs"]
    fields = defs["endpoint_fields"]["properties"]
    assert set(fields["outcome"]["enum"]) == {o.value for o in Outcome}
    assert set(fields["failed_phase"]["enum"]) == {None} | {p.value for p in Phase}
    assert set(fields["timings"]["propertyNames"]["enum"]) == {p.value for p in Phase}
    assert set(defs["endpoint_ref"]["properties"]["protocol"]["enum"]) == {
        p.value for p in Protocol
    }
    assert set(defs["endpoint_ref"]["properties"]["security"]["enum"]) == {
        s.value for s in Security
    }
    assert set(defs["tls"]["properties"]["trust"]["enum"]) == {t.value for t in TrustStatus}
    assert set(defs["auth"]["properties"]["status"]["enum"]) == {a.value for a in AuthStatus}
    assert defs["report"]["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


# -- real reports, and documents that must be rejected ---------------------------


@pytest.fixture(scope="module")
def reports(lab) -> dict[str, dict]:
    """good.test, expired.test and a domain that does not exist, through the CLI."""
    import contextlib
    import io

    found = {}
    for domain in ("good.test", "expired.test", "absent.good.test"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["check", "--format", "json", domain, *lab])
        document = json.loads(out.getvalue())
        assert document["exit_code"] == code
        found[domain] = document
    return found


def test_real_reports_are_valid_with_formats_checked(reports: dict[str, dict]) -> None:
    for domain, document in reports.items():
        assert not errors(document), (domain, errors(document))
    assert reports["good.test"]["status"] == "OK"
    assert reports["good.test"]["discovery"]["srv"][0]["port"] == 993


def test_a_missing_domain_is_critical_in_json(reports: dict[str, dict]) -> None:
    document = reports["absent.good.test"]
    assert (document["status"], document["exit_code"]) == ("CRITICAL", 2)
    assert "DOMAIN_NOT_FOUND" in [f["code"] for f in document["findings"]]
    assert "error" not in document


def test_endpoint_ok_means_no_problem_on_it(reports: dict[str, dict]) -> None:
    """Behaviour change (schema_version 2): an expired certificate makes the
    endpoint not ok although the dialogue completed; the healthy twin is ok."""
    expired = reports["expired.test"]["endpoints"]
    assert expired and all(e["outcome"] == "ok" for e in expired)
    assert not any(e["ok"] for e in expired)
    good = reports["good.test"]["endpoints"]
    assert good and all(e["ok"] for e in good)


def test_batch_error_lines_are_valid() -> None:
    line = error_json("a@b.test", "is an email address", "invalid_domain")
    assert not errors(line), errors(line)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation: set the value at a dotted path ("endpoints.0.port")."""

    def mutate(document: dict) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return mutate


MUST_BE_REJECTED = {
    # additionalProperties: false everywhere
    "extra top-level field": _set("colour", "red"),
    "extra field in tool": _set("tool.commit", "abc"),
    "extra severity in summary": _set("summary.fatal", 0),
    "extra field in an endpoint": _set("endpoints.0.colour", "red"),
    "extra field in tls": _set("endpoints.0.tls.grade", "A"),
    "extra field in a certificate": _set("endpoints.0.tls.certificate.owner", "me"),
    "extra field in a finding": _set("findings.0.url", "x"),
    "extra field in a finding's endpoint": _set("findings.0.endpoint.address", "x"),
    "extra field in discovery": _set("discovery.dnssec", True),
    "extra field in an MX record": _set("discovery.mx.0.ttl", 300),
    "extra field in an SRV record": _set("discovery.srv.0.ttl", 300),
    # codes from the catalogue only
    "a code that matches the old pattern": _set("findings.0.code", "NOT_A_CODE"),
    # numbers that DNS cannot carry
    "MX preference as a word": _set("discovery.mx.0.preference", "ten"),
    "MX preference above 65535": _set("discovery.mx.0.preference", 70000),
    "SRV port above 65535": _set("discovery.srv.0.port", 70000),
    "SRV port as a string": _set("discovery.srv.0.port", "993"),
    "SRV weight negative": _set("discovery.srv.0.weight", -1),
    "endpoint port 0": _set("endpoints.0.port", 0),
    "endpoint port above 65535": _set("endpoints.0.port", 70000),
    # status and exit code belong together
    "OK with exit code 2": _set("exit_code", 2),
    # error/error_kind: only for UNKNOWN, only together, only the documented kinds
    "an error on an OK report": _set("error", "boom"),
    "error_kind without error": _set("error_kind", "dns_failed"),
    "ok endpoint that did not answer": _set("endpoints.0.outcome", "refused"),
    # formats
    "started_at not a date": _set("started_at", "yesterday"),
    "not_after not a date": _set("endpoints.0.tls.certificate.not_after", "soon"),
    "schema version 1": _set("schema_version", 1),
    "no summary": _delete("summary"),
}


@pytest.mark.parametrize("change", list(MUST_BE_REJECTED))
def test_schema_rejects(change: str, reports: dict[str, dict]) -> None:
    document = copy.deepcopy(reports["good.test"])
    assert not errors(document)  # the healthy twin
    MUST_BE_REJECTED[change](document)
    assert errors(document), f"accepted: {change}"


@pytest.mark.parametrize(
    ("change", "mutation"),
    [
        ("status OK on an error line", lambda d: d.update(status="OK", exit_code=0)),
        ("an undocumented error kind", lambda d: d.update(error_kind="domain_not_found")),
        ("error without error_kind", lambda d: d.pop("error_kind")),
        ("an empty error", lambda d: d.update(error="")),
    ],
)
def test_schema_rejects_bad_error_lines(change: str, mutation: Callable[[dict], None]) -> None:
    line = error_json("a@b.test", "is an email address", "invalid_domain")
    assert not errors(line)
    mutation(line)
    assert errors(line), f"accepted: {change}"


def test_jsonschema_validate_uses_the_same_rules(reports: dict[str, dict]) -> None:
    """Other tests call jsonschema.validate(document, SCHEMA): it sees the same schema."""
    document = copy.deepcopy(reports["good.test"])
    jsonschema.validate(document, SCHEMA)
    document["endpoints"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
