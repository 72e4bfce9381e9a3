"""Bad option values are one line on stderr and exit 3, for every command (issue #11).

--nameserver used to end in a traceback (exit 1) or, for "", fall back to
the system's resolver without a word; --timeout/--deadline nan passed
click's FloatRange (nan compares false with both bounds) and turned a
healthy domain into six HOST_UNRESOLVED. Run through the real CLI
in-process (maildiag.cli.main) and, for a few, as a process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maildiag.cli import main
from maildiag.dns import parse_nameserver
from maildiag.runner import BadRequest, CheckRequest, diagnose
from tests.lab.dns_server import DnsServer

BAD_NAMESERVERS = [
    "garbage",
    "1.2.3.4:99999",
    "1.2.3.4:0",
    "ns1.example.net",
    "[::1",
    "[::1]x",
    "127.0.0.1 53",
    "",
    " ",
]
BAD_SECONDS = ["nan", "NaN", "inf", "-inf", "-1", "0", "abc", ""]
QUICK = ["--no-autoconfig", "--timeout", "1", "--deadline", "3"]


def commands(tmp_path: Path) -> dict[str, list[str]]:
    domains = tmp_path / "domains.txt"
    domains.write_text("kunde.test\n")
    return {
        "check": ["check", "kunde.test"],
        "batch": ["batch", str(domains), "--quiet", "--no-progress"],
        # Never listens: the bad value is refused while the options are parsed.
        "serve": ["serve", "--listen", "127.0.0.1:0"],
    }


def one_line_error(capsys, argv: list[str], option: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 3, (code, err)
    assert out == ""
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Error:" not in err
    assert option in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["check", "batch", "serve"])
@pytest.mark.parametrize("value", BAD_NAMESERVERS)
def test_bad_nameserver_is_one_line_and_exit_3(capsys, tmp_path, command, value):
    argv = [*commands(tmp_path)[command], "--nameserver", value, *QUICK]
    line = one_line_error(capsys, argv, "--nameserver")
    assert line.startswith("maildiag: ")


@pytest.mark.parametrize("command", ["check", "batch", "serve"])
@pytest.mark.parametrize("option", ["--timeout", "--deadline"])
@pytest.mark.parametrize("value", BAD_SECONDS)
def test_bad_seconds_are_one_line_and_exit_3(capsys, tmp_path, command, option, value):
    argv = [*commands(tmp_path)[command], "--nameserver", "127.0.0.1:9", option, value]
    one_line_error(capsys, argv, option)


@pytest.mark.parametrize("option", ["-w", "-c", "--quota-warning", "--quota-critical"])
def test_thresholds_refuse_nan_and_inf(capsys, option):
    for value in ("nan", "inf"):
        one_line_error(capsys, ["check", "kunde.test", option, value], option)


def test_bad_values_as_a_process_print_no_traceback():
    for args in (["--nameserver", "garbage"], ["--timeout", "nan"], ["--nameserver", ""]):
        done = subprocess.run(
            [sys.executable, "-m", "maildiag", "check", "kunde.test", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


# -- the healthy twins ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        ("::1", "[::1]:53"),
        ("[::1]:53", "[::1]:53"),
        (" 127.0.0.1 ", "127.0.0.1:53"),
    ],
)
def test_good_nameserver_forms(text, canonical):
    assert parse_nameserver(text) == canonical


ZONE = {"kunde.test": {"@": {"MX": ["10 mail"]}, "mail": {"TXT": ['"no address"']}}}


@pytest.mark.parametrize("address", ["127.0.5.53", "::1"])
def test_good_nameserver_with_a_port_is_asked(capsys, address):
    with DnsServer(ZONE, address) as dns:
        code = main(
            ["check", "kunde.test", "--nameserver", dns.nameserver, *QUICK, "--format", "json"]
        )
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        report = json.loads(out)
        # The lab server answered: the domain exists and its MX was read.
        assert report["discovery"]["domain_exists"] is True
        assert [m["host"] for m in report["discovery"]["mx"]] == ["mail.kunde.test"]
        assert ("kunde.test", "MX") in {(n.rstrip("."), t) for _, n, t in dns.log}
        assert code in (0, 1, 2)


def test_nameserver_without_a_port_means_port_53(capsys):
    # A unique loopback address, so nothing else listens on its port 53.
    with DnsServer(ZONE, "127.0.5.54", port=53) as dns:
        code = main(["check", "kunde.test", "--nameserver", "127.0.5.54", *QUICK])
        out, err = capsys.readouterr()
        assert dns.log, "the nameserver on port 53 was not asked"
        assert "nameserver" not in err and out
        assert code in (0, 1, 2)


def test_library_callers_get_bad_request_not_a_traceback():
    for request in (
        CheckRequest("kunde.test", nameserver="garbage"),
        CheckRequest("kunde.test", timeout=float("nan")),
        CheckRequest("kunde.test", deadline=float("inf")),
        CheckRequest("kunde.test", timeout=0),
    ):
        with pytest.raises(BadRequest):
            diagnose(request)


@pytest.mark.parametrize("case", ["malformed-domain", "ca-file-without-certificates"])
def test_a_bad_request_is_answered_in_the_format_asked_for(capsys, tmp_path, case):
    import xml.etree.ElementTree as ET

    import jsonschema

    schema = json.loads(
        (Path(__file__).parents[1] / "maildiag/schema/report.schema.json").read_text()
    )
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("this is not a certificate\n")
    bad = {
        "malformed-domain": ["exa mple.org"],
        "ca-file-without-certificates": ["kunde.test", "--ca-file", str(not_a_ca)],
    }[case]
    kind = "invalid_domain" if case == "malformed-domain" else "bad_request"
    args = ["check", *bad, "--nameserver", "127.0.0.1:9", *QUICK]

    assert main([*args, "--format", "json"]) == 3
    out, err = capsys.readouterr()
    document = json.loads(out)  # `| jq` gets a document, not nothing
    jsonschema.validate(document, schema)
    assert (document["status"], document["exit_code"], document["error_kind"]) == (
        "UNKNOWN",
        3,
        kind,
    )
    assert document["error"] and err.startswith("maildiag: ")

    assert main([*args, "--format", "nagios"]) == 3
    assert capsys.readouterr().out.startswith("MAILDIAG UNKNOWN")

    assert main([*args, "--format", "junit"]) == 3
    error = ET.fromstring(capsys.readouterr().out).find(".//error")
    assert error is not None and error.get("type") == kind

    assert main([*args, "--format", "text"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("maildiag: ") and len(err.splitlines()) == 1


def test_the_command_line_runs_in_process_with_its_own_environment(tmp_path):
    """An Environment replaces sys's streams and os.environ: nothing leaks either way."""
    import io

    from maildiag.environment import Environment

    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={"LANG": "de_DE.UTF-8", "COLUMNS": "60"})
    argv = ["check", "kunde.test", "--ca-file", str(bad_ca), "--format", "json"]
    assert main(argv, env=env) == 3
    document = json.loads(out.getvalue())
    assert (document["status"], document["lang"], document["error_kind"]) == (
        "UNKNOWN",
        "de",
        "bad_request",
    )
    assert err.getvalue().startswith("maildiag: Die CA-Datei ") and err.getvalue().count("\n") == 1

    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={})
    assert main(["codes", "--format", "markdown"], env=env) == 0
    assert out.getvalue().startswith("| Code | Usual severity | Meaning |") and not err.getvalue()
