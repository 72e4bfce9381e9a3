# ruff: noqa: F811 -- the fixtures imported below are the parameters of the tests
"""Issue #11 through the real CLI: SRV port 0, and bad option values.

Each case next to its healthy twin; the lab (DNS + fake mail host) comes
from tests/test_cli.py.
"""

from __future__ import annotations

import json

import jsonschema

from tests.test_cli import SCHEMA, base_args, lab, run_cli  # noqa: F401 (lab is a fixture)


def test_srv_port_zero_falls_back_to_the_standard_port(lab, pki, capsys):
    dns = lab(extra_zone={"_imaps._tcp": {"SRV": ["0 1 0 mail"]}})
    code, out, _ = run_cli(capsys, "check", "kunde.test", "--format", "json", *base_args(dns, pki))
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)  # port 0 broke "minimum": 1
    imaps = [e for e in report["endpoints"] if e["security"] == "tls" and e["protocol"] == "imap"]
    assert [(e["port"], e["outcome"]) for e in imaps] == [(993, "ok")]
    assert imaps[0]["sources"][0] == "guess:mail.kunde.test"
    invalid = [f for f in report["findings"] if f["code"] == "SRV_INVALID"]
    assert len(invalid) == 1 and invalid[0]["severity"] == "warning"
    assert "_imaps._tcp" in invalid[0]["explanation"] and "993" in invalid[0]["fix"]
    assert code == 1


def test_srv_with_its_port_is_the_healthy_twin(lab, pki, capsys):
    dns = lab()
    code, out, _ = run_cli(capsys, "check", "kunde.test", "--format", "json", *base_args(dns, pki))
    report = json.loads(out)
    assert code == 0
    assert "SRV_INVALID" not in {f["code"] for f in report["findings"]}
