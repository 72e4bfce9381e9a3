"""`maildiag check --format nagios`: status line, long text, perfdata, exit codes.

The output is read the way its consumers read it, not with maildiag's own code:

* the Nagios core rule and the grammar of the monitoring-plugins guidelines
  (https://www.monitoring-plugins.org/doc/guidelines.html#AEN200): perfdata is
  what follows the first ``|`` of the first line, plus what follows a ``|`` in
  the long text (and continues to the end);
* Icinga 2's rule, reimplemented from its source (lib/icinga/pluginutility.cpp
  ``ParseCheckOutput``/``SplitPerfdata`` and perfdatavalue.cpp ``Parse``, the
  same in the 2.6 to 2.13 sources read): the part after a ``|`` on *each* line
  is perfdata, every other line is text; items are split at each space, the
  label is whatever precedes ``=`` (surrounding quotes removed, nothing
  trimmed), the value is the longest prefix of ``+-0123456789.e``, the unit
  one of us/ms/s/b/kb/mb/gb/tb/%/c (case-insensitive, anything else is an
  error), and warn/crit/min/max are kept only when they are plain numbers
  (Nagios ranges such as ``21:`` are dropped);
* the ``nagiosplugin`` library: every item must be exactly what its
  ``Performance`` would write, and every threshold a valid ``Range``.

The checks run through the real CLI against fake mail servers and a test
DNS server on loopback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import nagiosplugin
import pytest

from maildiag.cli import main
from maildiag.findings import make_finding
from maildiag.model import (
    Diagnosis,
    Discovery,
    Endpoint,
    MailboxFacts,
    Outcome,
    ProbeResult,
    Protocol,
    QuotaResource,
    Security,
    Status,
    Thresholds,
)
from maildiag.report import nagios
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost

# 'label'=value[UOM];[warn];[crit];[min];[max] — the label is quoted when it
# holds spaces, '=' or quotes ('' inside quotes), the value is a plain
# decimal or U, UOM one of the listed units, thresholds are ranges.
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_RANGE = rf"@?(?:~|{_NUMBER})?(?::(?:{_NUMBER})?)?"
PERF_ITEM = re.compile(
    rf"(?P<label>'(?:[^']|'')+'|[^'=\s]+)="
    rf"(?P<value>{_NUMBER}|U)(?P<uom>s|ms|us|%|B|KB|MB|TB|c)?"
    rf"(?:;(?P<warn>{_RANGE})?(?:;(?P<crit>{_RANGE})?(?:;(?P<min>{_NUMBER})?"
    rf"(?:;(?P<max>{_NUMBER})?)?)?)?)?"
)
STATUS_LINE = re.compile(r"MAILDIAG (OK|WARNING|CRITICAL|UNKNOWN) - \S[^|]*")


def parse_plugin_output(output: str) -> tuple[str, list[str], dict[str, dict[str, str]]]:
    """(status text, long text lines, perfdata by unquoted label): the Nagios core rule.

    Line 1 is ``TEXT | PERF``; long text follows; a ``|`` in the long text
    starts more perfdata, which continues on the following lines. Each item's
    raw text is kept under "raw".
    """
    lines = output.rstrip("\n").split("\n")
    head, _, head_perf = lines[0].partition("|")
    perf_texts = [head_perf]
    long_text: list[str] = []
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_texts.append(line)
        elif "|" in line:
            text, _, perf = line.partition("|")
            long_text.append(text.rstrip())
            perf_texts.append(perf)
            in_perf = True
        else:
            long_text.append(line)
    perfdata: dict[str, dict[str, str]] = {}
    for text in perf_texts:
        position = 0
        text = text.strip()
        while position < len(text):
            match = PERF_ITEM.match(text, position)
            assert match, f"not perfdata grammar at {text[position:]!r}"
            label = match["label"]
            if label.startswith("'"):
                label = label[1:-1].replace("''", "'")
            assert label not in perfdata, f"duplicate label {label}"
            perfdata[label] = {k: v for k, v in match.groupdict().items() if v is not None}
            perfdata[label]["raw"] = match[0]
            position = match.end()
            assert position == len(text) or text[position] == " ", text[position:]
            position += 1
    return head.rstrip(), long_text, perfdata


# -- Icinga 2's reading, reimplemented from its rules -----------------------------

_ICINGA_NUMBER_CHARS = set("+-0123456789.e")
_ICINGA_UNITS = {  # lower-cased unit -> (factor to the base unit, Icinga's unit name)
    "": (1.0, ""),
    "s": (1.0, "seconds"),
    "ms": (1e-3, "seconds"),
    "us": (1e-6, "seconds"),
    "b": (1.0, "bytes"),
    "kb": (1024.0, "bytes"),
    "mb": (1024.0**2, "bytes"),
    "gb": (1024.0**3, "bytes"),
    "tb": (1024.0**4, "bytes"),
    "%": (1.0, "percent"),
    "c": (1.0, ""),
}


@dataclass(frozen=True)
class IcingaValue:
    label: str
    value: float
    unit: str
    counter: bool
    warn: float | None
    crit: float | None
    min: float | None
    max: float | None


def icinga2_check_output(output: str) -> tuple[str, str]:
    """ParseCheckOutput: split at CR and LF; per line, text before its first '|',
    perfdata after it (joined with one space); the joined perfdata is trimmed."""
    text, perfdata = "", ""
    for line in re.split(r"[\r\n]", output):
        delim = line.find("|")
        if text:
            text += "\n"
        if delim >= 0:
            text += line[:delim]
            if perfdata:
                perfdata += " "
            perfdata += line[delim + 1 :]
        else:
            text += line
    return text, perfdata.strip()


def icinga2_split_perfdata(perfdata: str) -> list[tuple[str, str]]:
    """SplitPerfdata: (label, value text) pairs; the label runs from after the last
    space to the next '=', the value to the next space (so two spaces in a row
    put a space into the next label)."""
    items, begin = [], 0
    while (eqp := perfdata.find("=", begin)) >= 0:
        label = perfdata[begin:eqp]
        if len(label) > 2 and label[0] == "'" and label[-1] == "'":
            label = label[1:-1]
        spq = perfdata.find(" ", eqp)
        if spq < 0:
            spq = len(perfdata)
        items.append((label, perfdata[eqp + 1 : spq]))
        begin = spq + 1
    return items


def _icinga_number(token: str) -> float | None:
    if token in ("", "U") or set(token) - _ICINGA_NUMBER_CHARS:
        return None  # ParseWarnCritMinMaxToken: ranges and the like are ignored
    return float(token)


def icinga2_value(label: str, text: str) -> IcingaValue:
    """PerfdataValue::Parse: raises ValueError where Icinga 2 throws."""
    end = next((i for i, ch in enumerate(text) if ch not in _ICINGA_NUMBER_CHARS), len(text))
    tokens = text.split(";")
    value = float(text[:end])  # ValueError for "U" or an empty value, as Convert::ToDouble
    unit = text[end : len(tokens[0])].lower()
    if unit not in _ICINGA_UNITS:
        raise ValueError(f"Invalid performance data unit: {unit}")
    factor, name = _ICINGA_UNITS[unit]
    fields = [_icinga_number(tokens[i]) if len(tokens) > i else None for i in range(1, 5)]
    warn, crit, low, high = (None if f is None else f * factor for f in fields)
    return IcingaValue(label, value * factor, name, unit == "c", warn, crit, low, high)


def icinga2_read(output: str) -> tuple[str, dict[str, IcingaValue]]:
    text, perfdata = icinga2_check_output(output)
    values: dict[str, IcingaValue] = {}
    for label, value_text in icinga2_split_perfdata(perfdata):
        assert label not in values, f"duplicate label {label!r}"
        values[label] = icinga2_value(label, value_text)
    return text, values


def read_output(output: str) -> tuple[str, list[str], dict[str, dict[str, str]]]:
    """Parses as Nagios, Icinga 2 and nagiosplugin would, and asserts they agree:
    every item reaches each of them with its label, value, unit and thresholds."""
    head, long_text, perf = parse_plugin_output(output)
    # All perfdata on the first line: nothing for a reader of line 1 only to miss.
    assert output.split("\n", 1)[0].count("|") == 1 or not perf
    assert all("|" not in line for line in output.split("\n")[1:])
    icinga_text, icinga = icinga2_read(output)
    assert icinga_text.split("\n", 1)[0].rstrip() == head
    assert set(icinga) == set(perf), "labels Icinga 2 reads differ from the plugin's"
    for label, item in perf.items():
        got = icinga[label]
        assert got.value == pytest.approx(
            float(item["value"]) * _ICINGA_UNITS[item.get("uom", "").lower()][0]
        )
        for field in ("min", "max"):
            if field in item:
                assert getattr(got, field) is not None, (label, field)
        for field in ("warn", "crit"):
            plain = bool(item.get(field)) and not set(item[field]) - _ICINGA_NUMBER_CHARS
            assert (getattr(got, field) is not None) == plain, (label, field)
        # nagiosplugin would write exactly this item, and reads its thresholds.
        reference = nagiosplugin.Performance(
            label,
            item["value"],
            item.get("uom", ""),
            item.get("warn", ""),
            item.get("crit", ""),
            item.get("min", ""),
            item.get("max", ""),
        )
        assert str(reference) == item["raw"]
        for field in ("warn", "crit"):
            if item.get(field):
                nagiosplugin.Range(item[field])
    return head, long_text, perf


# -- the readers themselves, and their failure twins ---------------------------------


def test_grammar_accepts_the_guidelines_examples() -> None:
    _, _, perf = parse_plugin_output("X OK - fine | time=0.01s;1;2;0 'a b'=5%;;;0;100 c=U")
    assert {k: v for k, v in perf["time"].items() if k != "raw"} == {
        "label": "time",
        "value": "0.01",
        "uom": "s",
        "warn": "1",
        "crit": "2",
        "min": "0",
    }
    assert perf["a b"]["uom"] == "%"
    assert perf["c"]["value"] == "U"


@pytest.mark.parametrize("bad", ["a b=1s", "x=1e5s", "x=1parsecs", "'x=1", "x=1;;;;;"])
def test_grammar_rejects_malformed_perfdata(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse_plugin_output(f"X OK - fine | {bad}")


def test_icinga_reader_follows_icinga_rules() -> None:
    _, values = icinga2_read("X OK - y | a=1.5s;1;2;0;10 'b c'=50%;80:;90 d=3c\nmore | e=1B")
    assert values["a"] == IcingaValue("a", 1.5, "seconds", False, 1.0, 2.0, 0.0, 10.0)
    assert (values["b c"].unit, values["b c"].warn, values["b c"].crit) == ("percent", None, 90)
    assert values["d"].counter
    # The space after the second '|' is kept: the label gets a leading space.
    assert values[" e"].unit == "bytes"
    with pytest.raises(ValueError, match="unit"):
        icinga2_read("X OK - y | days=3d")


# Recorded from maildiag 0.x before issue #11: perfdata continued over the lines
# after a second '|' in the long text, as the plugin API allows.
CONTINUED_PERFDATA = (
    "\n".join(
        [
            "MAILDIAG OK - kunde.test: 2/2 endpoints ok | time=0.5s;;;0 endpoints_ok=2;;;0;2",
            "IMAP mail.kunde.test:143 (starttls): ok, 20 ms, TLSv1.3, certificate 364 days",
            "IMAP mail.kunde.test:993 (tls): ok, 10 ms, TLSv1.3, certificate 364 days"
            " | imap_143_starttls_connect=0.01s;;;0",
            "imap_143_starttls_time=0.02s;;;0",
            "imap_993_tls_connect=0.01s;;;0",
            "imap_993_tls_time=0.01s;;;0",
        ]
    )
    + "\n"
)


def test_continued_perfdata_is_lost_in_icinga() -> None:
    """The bug of issue #11: Nagios core reads six items, Icinga 2 three, one of them
    with a leading space in its label — and the rest becomes plugin text."""
    _, _, nagios_core = parse_plugin_output(CONTINUED_PERFDATA)
    text, icinga = icinga2_read(CONTINUED_PERFDATA)
    assert len(nagios_core) == 6
    assert set(icinga) == {"time", "endpoints_ok", " imap_143_starttls_connect"}
    assert "imap_993_tls_time=0.01s" in text
    with pytest.raises(AssertionError):
        read_output(CONTINUED_PERFDATA)


def test_labels_are_quoted_only_when_needed() -> None:
    assert nagios.perf_label("imap_993_tls_connect") == "imap_993_tls_connect"
    assert nagios.perf_label("quota root") == "'quota root'"
    assert nagios.perf_label("a=b") == "'a=b'"
    assert nagios.perf_label("it's") == "'it''s'"
    assert nagios.perf_label(" padded ") == "padded"
    _, _, perf = parse_plugin_output(
        "X OK - y | " + nagios.perf_item("it's here", 1.5, "s", minimum=0)
    )
    assert perf["it's here"]["value"] == "1.5"


def test_numbers_never_use_exponents() -> None:
    assert nagios.perf_number(1e-7) == "0"
    assert nagios.perf_number(0.000123456) == "0.000123"
    assert nagios.perf_number(12345678.0) == "12345678"
    assert nagios.perf_number(-0.0) == "0"


# -- hand-made results: quota, collisions and hostile texts -----------------------


def _diagnosis(*results: ProbeResult, status: Status = Status.OK, findings=()) -> Diagnosis:
    return Diagnosis(
        domain="kunde.test",
        domain_ascii="kunde.test",
        started_at=datetime(2024, 5, 1, tzinfo=UTC),
        seconds=0.5,
        discovery=Discovery("kunde.test", "kunde.test", True),
        results=results,
        findings=tuple(findings),
        status=status,
    )


IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS)
# Every fact the templates of the findings used here ask for.
FACTS = {
    "days_ago": 400,
    "days_left": 5,
    "not_after": "2023-01-01",
    "not_before": "2022-01-01",
    "command": "STARTTLS",
    "reply": "",
    "tls_port": 993,
    "what": "IMAP",
    "service": "_pop3._tcp",
    "source": "mx",
    "outcome": "ok",
}


def _finding(code: str, endpoint: Endpoint | None = None):
    return make_finding(code, endpoint, **FACTS)


def test_quota_usage_is_perfdata_in_percent_and_bytes_with_thresholds() -> None:
    mailbox = MailboxFacts(
        quota=(QuotaResource("STORAGE", 512, 2048), QuotaResource("MESSAGE", 10, 0))
    )
    result = ProbeResult.of(IMAPS, Outcome.OK, timings={"connect": 0.01}, mailbox=mailbox)
    _, _, perf = read_output(nagios.render(_diagnosis(result)))
    storage = perf["imap_993_tls_quota_storage"]
    assert (storage["value"], storage["uom"]) == ("25", "%")
    # The check's own limits (--quota-warning 90, --quota-critical 100 by default).
    assert (storage["warn"], storage["crit"], storage["min"], storage["max"]) == (
        "90",
        "100",
        "0",
        "100",
    )
    used = perf["imap_993_tls_quota_storage_used"]
    assert (used["value"], used["uom"], used["max"]) == ("524288", "B", "2097152")
    assert (used["warn"], used["crit"], used["min"]) == ("1887436.8", "2097152", "0")
    # A resource without a limit has no ratio to report.
    assert "imap_993_tls_quota_message" not in perf


def test_quota_thresholds_follow_the_options() -> None:
    mailbox = MailboxFacts(quota=(QuotaResource("STORAGE", 512, 1000),))
    result = ProbeResult.of(IMAPS, Outcome.OK, timings={"connect": 0.01}, mailbox=mailbox)
    limits = Thresholds(quota_warning_percent=75, quota_critical_percent=95)
    _, _, perf = read_output(nagios.render(_diagnosis(result), thresholds=limits))
    storage = perf["imap_993_tls_quota_storage"]
    assert (storage["warn"], storage["crit"]) == ("75", "95")
    assert perf["imap_993_tls_quota_storage_used"]["crit"] == "972800"


def test_without_quota_there_is_no_quota_perfdata() -> None:
    result = ProbeResult(IMAPS, Outcome.OK, timings={"connect": 0.01})
    _, _, perf = read_output(nagios.render(_diagnosis(result)))
    assert not [label for label in perf if "quota" in label]


def test_two_hosts_on_one_port_get_distinct_labels() -> None:
    other = Endpoint(Protocol.IMAP, "imap.kunde-mail.test", 993, Security.TLS)
    results = [
        ProbeResult(IMAPS, Outcome.OK, timings={"connect": 0.01}),
        ProbeResult(other, Outcome.OK, timings={"connect": 0.02}),
    ]
    _, _, perf = read_output(nagios.render(_diagnosis(*results)))
    assert perf["imap_993_tls_connect"]["value"] == "0.01"
    assert perf["imap_993_tls_imap_kunde_mail_test_connect"]["value"] == "0.02"


def test_pipes_and_newlines_from_servers_cannot_break_the_output() -> None:
    result = ProbeResult(
        IMAPS, Outcome.UNAVAILABLE, timings={"connect": 0.01}, error="* BYE go away | now\r\nreally"
    )
    output = nagios.render(_diagnosis(result, status=Status.CRITICAL))
    head, long_text, perf = read_output(output)
    assert any("go away / now really" in line for line in long_text)
    assert set(perf) >= {"time", "endpoints_ok", "imap_993_tls_connect"}


def test_status_line_names_the_problem_and_where_in_words() -> None:
    """Never "n/n endpoints ok" beside CRITICAL: an expired certificate on working
    endpoints is the problem, and the status line says so, grouped by host."""
    endpoints = [
        Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS),
        Endpoint(Protocol.POP3, "mail.kunde.test", 995, Security.TLS),
        Endpoint(Protocol.SMTP, "mail.kunde.test", 465, Security.TLS),
    ]
    results = [ProbeResult(e, Outcome.OK, timings={"connect": 0.01}) for e in endpoints]
    findings = [_finding("TLS_CERT_EXPIRED", e) for e in endpoints]
    output = nagios.render(_diagnosis(*results, status=Status.CRITICAL, findings=findings))
    head, long_text, perf = read_output(output)
    assert head == (
        "MAILDIAG CRITICAL - kunde.test: The certificate has expired: "
        "mail.kunde.test (IMAP 993, POP3 995, SMTP 465)"
    )
    assert "endpoints ok" not in head
    assert perf["endpoints_ok"]["value"] == "0"
    assert long_text[:3] == [
        f"[CRITICAL] TLS_CERT_EXPIRED {e.label}: The certificate has expired" for e in endpoints
    ]
    assert long_text[3] == "Endpoints (0 of 3 without problems):"
    assert all(": CRITICAL," in line for line in long_text[4:])


def test_long_text_is_grouped_by_severity() -> None:
    imap = Endpoint(Protocol.IMAP, "mail.kunde.test", 143, Security.STARTTLS)
    findings = [
        _finding("SRV_NOT_OFFERED"),
        _finding("TLS_CERT_EXPIRING", IMAPS),
        _finding("STARTTLS_MISSING", imap),
    ]
    results = [ProbeResult(IMAPS, Outcome.OK), ProbeResult(imap, Outcome.STARTTLS_MISSING)]
    _, long_text, _ = read_output(
        nagios.render(_diagnosis(*results, status=Status.CRITICAL, findings=findings))
    )
    severities = [line.split("]")[0] + "]" for line in long_text if line.startswith("[")]
    assert severities == ["[CRITICAL]", "[WARNING]", "[INFO]"]


# -- the real CLI against fake servers ----------------------------------------------

ADDRESS = {
    "ok": "127.0.0.80",
    "expiring": "127.0.0.81",
    "broken": "127.0.0.82",
    "expired": "127.0.2.80",
}
ALL_SLOTS = "IMAP 143, IMAP 993, POP3 110, POP3 995, SMTP 587, SMTP 465"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    zones = {
        f"{name}.test": {"@": {"MX": [f"10 mail.{name}.test."]}, "mail": {"A": [address]}}
        for name, address in ADDRESS.items()
    }
    hosts = [
        FakeMailHost(
            ADDRESS["ok"], pki.good("mail.ok.test").server_context(), hostname="mail.ok.test"
        ),
        FakeMailHost(
            ADDRESS["expiring"],
            pki.expiring_in(10, "mail.expiring.test").server_context(),
            hostname="mail.expiring.test",
        ),
        FakeMailHost(
            ADDRESS["broken"],
            pki.good("mail.broken.test").server_context(),
            hostname="mail.broken.test",
            behaviours={"submission": Behaviour.NO_STARTTLS},
        ),
        FakeMailHost(
            ADDRESS["expired"],
            pki.expired("mail.expired.test", days_ago=30).server_context(),
            hostname="mail.expired.test",
        ),
    ]
    with DnsServer(zones, "127.0.0.83") as dns:
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


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", "--format", "nagios", *args])
    return code, capsys.readouterr().out


PREFIXES = (
    "imap_143_starttls",
    "imap_993_tls",
    "pop3_110_starttls",
    "pop3_995_tls",
    "smtp_587_starttls",
    "smtp_465_tls",
)


def test_ok_domain_exits_0_with_perfdata_per_endpoint(lab, capsys) -> None:
    code, output = run_check(capsys, "ok.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 0
    assert STATUS_LINE.fullmatch(head) and head.startswith("MAILDIAG OK - ok.test")
    assert "6/6 endpoints ok" in head
    assert len([line for line in long_text if ": ok," in line]) == 6
    assert not [line for line in long_text if line.startswith("[")]  # no problems listed
    assert perf["endpoints_ok"]["value"] == "6" and perf["endpoints_ok"]["max"] == "6"
    # Every item arrives in Icinga 2 too (read_output compares them one by one).
    assert len(perf) == 2 + 4 * 6
    for prefix in PREFIXES:
        assert perf[f"{prefix}_connect"]["uom"] == "s"
        assert perf[f"{prefix}_tls"]["uom"] == "s"
        assert perf[f"{prefix}_time"]["uom"] == "s"
        days = perf[f"{prefix}_cert_days"]
        assert "uom" not in days  # days have no unit of measurement
        assert (days["warn"], days["crit"]) == ("21:", "7:")
        assert float(days["value"]) > 21
    _, icinga = icinga2_read(output)
    assert icinga["imap_993_tls_connect"].unit == "seconds"
    assert not [label for label in icinga if label != label.strip()]


def test_expiring_certificate_exits_1(lab, capsys) -> None:
    code, output = run_check(capsys, "expiring.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 1
    assert head == (
        "MAILDIAG WARNING - expiring.test: The certificate expires soon: "
        f"mail.expiring.test ({ALL_SLOTS})"
    )
    assert any(
        line.startswith("[WARNING] TLS_CERT_EXPIRING IMAP mail.expiring.test:993")
        for line in long_text
    )
    assert 9 <= float(perf["imap_993_tls_cert_days"]["value"]) <= 10


def test_expired_certificate_is_critical_and_no_endpoint_is_ok(lab, capsys) -> None:
    code, output = run_check(capsys, "expired.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 2
    assert head.startswith(
        "MAILDIAG CRITICAL - expired.test: The certificate has expired: "
        f"mail.expired.test ({ALL_SLOTS})"
    )
    assert "endpoints ok" not in head
    assert perf["endpoints_ok"]["value"] == "0"
    assert not [line for line in long_text if ": ok," in line]
    assert float(perf["imap_993_tls_cert_days"]["value"]) < -29


def test_thresholds_from_w_and_c_reach_status_and_perfdata(lab, capsys) -> None:
    code, output = run_check(capsys, "expiring.test", "-w", "30", "-c", "15", *lab)
    head, _, perf = read_output(output)
    assert code == 2
    assert head.startswith("MAILDIAG CRITICAL")
    assert (perf["smtp_465_tls_cert_days"]["warn"], perf["smtp_465_tls_cert_days"]["crit"]) == (
        "30:",
        "15:",
    )


def test_broken_endpoint_exits_2_and_says_what_is_broken(lab, capsys) -> None:
    code, output = run_check(capsys, "broken.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 2
    assert head == (
        "MAILDIAG CRITICAL - broken.test: No encryption offered on this port: "
        "mail.broken.test (SMTP 587)"
    )
    assert perf["endpoints_ok"]["value"] == "5"
    assert "SMTP mail.broken.test:587 (starttls): starttls missing" in "\n".join(long_text)
    assert any(
        line.startswith("[CRITICAL] STARTTLS_MISSING SMTP mail.broken.test:587")
        for line in long_text
    )
    assert "smtp_587_starttls_tls" not in perf  # never got as far as TLS
    assert perf["smtp_587_starttls_connect"]["uom"] == "s"


def test_missing_domain_is_critical(lab, capsys) -> None:
    """Behaviour change (issue #11): NXDOMAIN is CRITICAL, exit 2, not UNKNOWN."""
    code, output = run_check(capsys, "nothing-here.ok.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 2
    assert head == "MAILDIAG CRITICAL - nothing-here.ok.test: The domain does not exist in DNS"
    assert any(line.startswith("[CRITICAL] DOMAIN_NOT_FOUND") for line in long_text)
    assert perf["endpoints_ok"]["value"] == "0"


def test_invalid_domain_exits_3_with_a_status_line(lab, capsys) -> None:
    code, output = run_check(capsys, "alice@ok.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 3
    assert STATUS_LINE.fullmatch(head)
    assert head.startswith("MAILDIAG UNKNOWN - ") and "email address" in head
    assert not long_text and not perf


def test_quota_perfdata_after_a_login(lab, capsys, monkeypatch) -> None:
    # The fake servers accept alice@example.test with this password (DEFAULT_USERS).
    monkeypatch.setenv("MAILDIAG_PASSWORD", "wonderland")
    code, output = run_check(
        capsys, "ok.test", "--user", "alice@example.test", "--quota-warning", "80", *lab
    )
    _, _, perf = read_output(output)
    assert code == 0
    quota = perf["imap_993_tls_quota_storage"]
    assert (quota["uom"], quota["min"], quota["max"]) == ("%", "0", "100")
    assert (quota["warn"], quota["crit"]) == ("80", "100")
    assert 0 < float(quota["value"]) < 100
    assert perf["imap_993_tls_quota_storage_used"]["uom"] == "B"
    _, icinga = icinga2_read(output)
    assert (
        icinga["imap_993_tls_quota_storage"].warn,
        icinga["imap_993_tls_quota_storage"].crit,
    ) == (80, 100)


def test_a_failed_login_is_critical_and_has_no_quota(lab, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MAILDIAG_PASSWORD", "not-the-password")
    code, output = run_check(capsys, "ok.test", "--user", "alice@example.test", *lab)
    head, long_text, perf = read_output(output)
    assert code == 2
    assert "Wrong user name or password" in head
    assert any(line.startswith("[CRITICAL] AUTH_FAILED") for line in long_text)
    assert not [label for label in perf if "quota" in label]
