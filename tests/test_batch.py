"""`maildiag batch`: the file format, streaming, the per-host cap, and the CLI.

The large test checks 200 customer domains of a small "provider" (three fake
mail hosts on 127.0.0.87-89 and one DNS zone), with unresolvable, broken and
invalid domains and malformed lines mixed in, and counts the connections at
the servers while it runs.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from maildiag.batch import (
    BadLine,
    BatchEntry,
    Summary,
    error_json,
    parse_line,
    read_entries,
    run_batch,
    worst_status,
)
from maildiag.cli import build_request, main
from maildiag.deadline import Deadline, DeadlineExceeded
from maildiag.limits import HostLimiter
from maildiag.model import Protocol, Status
from maildiag.transport import Connection
from tests.lab.fake_servers import Behaviour
from tests.lab.provider import Provider, command_overlap

ROOT = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = json.loads((ROOT / "maildiag" / "schema" / "report.schema.json").read_text())
# One validator for every record: jsonschema.validate() checks the schema itself
# against the meta-schema on every call, which for 200 records of a batch costs
# more than the batch.
REPORT_VALIDATOR = jsonschema.Draft202012Validator(REPORT_SCHEMA)

# -- the file format -------------------------------------------------------------


def test_plain_domain_and_overrides() -> None:
    assert parse_line("kunde.test", 1) == BatchEntry(1, "kunde.test")
    entry = parse_line("  shop.test  imap=Mail.Provider.test smtp=smtp.provider.test  # x", 7)
    assert entry == BatchEntry(
        7, "shop.test", {Protocol.IMAP: "mail.provider.test", Protocol.SMTP: "smtp.provider.test"}
    )
    assert parse_line("müller.test pop3=pop.provider.test", 2) == BatchEntry(
        2, "müller.test", {Protocol.POP3: "pop.provider.test"}
    )


@pytest.mark.parametrize("text", ["", "   ", "# a comment", "   # indented comment"])
def test_blank_lines_and_comments_are_skipped(text: str) -> None:
    assert parse_line(text, 1) is None


def test_a_hash_inside_a_word_is_not_a_comment() -> None:
    # Only '#' after whitespace starts a comment; "a#b" is a (bad) domain for diagnose to reject.
    assert parse_line("a#b.test", 1) == BatchEntry(1, "a#b.test")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("kunde.test imap", "after the domain only"),
        ("kunde.test ftp=files.test", "unknown key 'ftp'"),
        ("kunde.test imap=a.test imap=b.test", "given twice"),
        ("kunde.test imap=bad..host", "empty label"),
        ("kunde.test imap=", "empty"),
        ("imap=mail.test", "must start with a domain"),
        ("x" * 3000, "longer than"),
    ],
)
def test_malformed_lines_say_why(text: str, reason: str) -> None:
    parsed = parse_line(text, 12)
    assert isinstance(parsed, BadLine)
    assert parsed.line == 12 and reason in parsed.reason


def test_reading_numbers_lines_and_survives_bad_bytes() -> None:
    data = [
        b"\xef\xbb\xbfa.test\n",
        b"# comment\n",
        b"\xff\xfe.test\n",
        b"\n",
        b"b.test x\n",
        b"c.test\r\n",
    ]
    items = list(read_entries(data))
    assert items[0] == BatchEntry(1, "a.test")  # byte order mark removed
    assert isinstance(items[1], BadLine) and items[1].line == 3 and "UTF-8" in items[1].reason
    assert isinstance(items[2], BadLine) and items[2].line == 5
    assert items[3] == BatchEntry(6, "c.test")


# -- library behaviour without servers ---------------------------------------------


def test_worst_status_ranks_critical_above_unknown() -> None:
    assert worst_status([Status.OK, Status.UNKNOWN, Status.CRITICAL]) is Status.CRITICAL
    assert worst_status([Status.OK, Status.UNKNOWN, Status.WARNING]) is Status.UNKNOWN
    assert worst_status([Status.OK, Status.WARNING]) is Status.WARNING
    assert worst_status([]) is Status.OK


def test_an_empty_batch_is_unknown() -> None:
    assert Summary().worst is Status.UNKNOWN


def test_error_lines_follow_the_report_schema() -> None:
    line = error_json("a@b.test", "is an email address", "invalid_domain")
    jsonschema.validate(line, REPORT_SCHEMA)
    assert (line["status"], line["exit_code"], line["error_kind"]) == (
        "UNKNOWN",
        3,
        "invalid_domain",
    )


OFFLINE_OPTIONS = {
    "timeout": 1.0,
    "deadline": 2.0,
    "nameserver": "127.0.0.86:9",
    "cert_warning_days": 21.0,
    "cert_critical_days": 7.0,
    "no_autoconfig": True,
}


def test_input_is_read_lazily_so_memory_stays_flat() -> None:
    """The batch pulls lines only as workers free up: an endless input is fine."""
    pulled = itertools.count()

    def endless():  # invalid names: each check ends at once, without the network
        for n in pulled:
            yield BatchEntry(n + 1, f"user{n}@invalid.test")

    stop = threading.Event()
    template = build_request("", **OFFLINE_OPTIONS)
    results = run_batch(endless(), template, concurrency=4, stop=stop)
    first = list(itertools.islice(results, 50))
    stop.set()
    results.close()
    assert len(first) == 50
    assert all(r.status is Status.UNKNOWN and r.error for r in first)  # type: ignore[union-attr]
    assert next(pulled) <= 50 + 4 * 3 + 1  # finished + a bounded number in flight


def test_host_limiter_caps_and_respects_the_deadline() -> None:
    limiter = HostLimiter(2)
    with limiter.hold("127.0.0.1", Deadline(1)), limiter.hold("127.0.0.1", Deadline(1)):
        assert limiter.in_use("127.0.0.1") == 2
        with limiter.hold("127.0.0.2", Deadline(1)):  # another address is not affected
            pass
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded), limiter.hold("127.0.0.1", Deadline(0.2)):
            pass
        assert 0.15 < time.monotonic() - started < 1.0
    assert limiter.in_use("127.0.0.1") == 0
    with limiter.hold("127.0.0.1", Deadline(0.1)):  # free again after the timeout
        pass


def test_host_limiter_hands_slots_on_in_order() -> None:
    limiter = HostLimiter(1)
    order: list[int] = []
    gate = threading.Event()

    def waiter(n: int) -> None:
        with limiter.hold("a", Deadline(5)):
            order.append(n)

    with limiter.hold("a", Deadline(5)):
        threads = []
        for n in range(5):
            thread = threading.Thread(target=waiter, args=(n,))
            thread.start()
            threads.append(thread)
            time.sleep(0.02)  # queue them up in a known order
        gate.set()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


# -- 200 domains against the provider ------------------------------------------------

DOMAINS = 200
ADDRESSES = ["127.0.0.87", "127.0.0.88", "127.0.0.89"]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory):
    extra = {"broken.test": "SERVFAIL", "dangling.test": {"@": {"MX": ["10 gone.provider.test."]}}}
    # Host 2 has no STARTTLS on submission: its domains are CRITICAL.
    with Provider(
        tmp_path_factory.mktemp("provider"),
        ADDRESSES,
        domains=DOMAINS,
        extra_zones=extra,
        behaviours={2: {"submission": Behaviour.NO_STARTTLS}},
    ) as lab:
        yield lab


class ConnectionCounter:
    """Counts maildiag's open connections per server address, exactly, at the transport.

    Every probe connection is a ``transport.Connection``; counting from a
    successful ``open`` to ``close`` sees each connection for exactly as long
    as the client has it, whatever the code around it does.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._lock = threading.Lock()
        original_open, original_close = Connection.open.__func__, Connection.close  # type: ignore[attr-defined]
        counter = self

        def counting_open(cls, address, port, **options):  # type: ignore[no-untyped-def]
            conn = original_open(cls, address, port, **options)
            with counter._lock:
                counter.open[address] += 1
                counter.peak[address] = max(counter.peak[address], counter.open[address])
            conn._counted_address = address
            return conn

        def counting_close(conn):  # type: ignore[no-untyped-def]
            address = conn.__dict__.pop("_counted_address", None)
            original_close(conn)
            if address is not None:
                with counter._lock:
                    counter.open[address] -= 1

        monkeypatch.setattr(Connection, "open", classmethod(counting_open))
        monkeypatch.setattr(Connection, "close", counting_close)


def reset_logs(lab: Provider) -> None:
    for host in lab.hosts:
        for server in host.servers.values():
            with server._lock:
                server._received.clear()


def server_overlap(lab: Provider) -> int:
    return max(command_overlap(s) for h in lab.hosts for s in h.servers.values())


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """The real command in its own process, as a cron job would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "maildiag", *args],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_200_domains_one_line_each_with_a_per_host_cap(
    provider, tmp_path, monkeypatch, capfdbinary
) -> None:
    domains = list(provider.domains)
    special = [
        "nowhere.kunden.test",
        "broken.test",
        "dangling.test",
        "alice@kunden.test",
        "bad_name!.test",
    ]
    lines = ["# the customers of the test provider", ""]
    lines += domains[:100] + ["d0000.kunden.test frobnicate=1"] + domains[100:]
    lines += ["", *special, "d0001.kunden.test imap"]
    source = write_list(tmp_path / "domains.txt", lines)

    reset_logs(provider)
    counter = ConnectionCounter(monkeypatch)
    # In this process and connecting for every domain, so the client-side count sees all.
    code = main(
        [
            "batch",
            str(source),
            "--concurrency",
            "40",
            "--per-host",
            "2",
            "--processes",
            "1",
            "--no-share-probes",
            "--timeout",
            "3",
            *provider.cli_options(),
        ]
    )
    captured = capfdbinary.readouterr()
    out, err = captured.out.decode(), captured.err.decode()

    # Exactly one valid JSON object per domain line, each on its own line.
    assert out.endswith("\n")
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["domain"] for r in records) == sorted(domains + special)
    for record in records:
        REPORT_VALIDATOR.validate(record)

    by_domain = {r["domain"]: r for r in records}
    host2 = {d for n, d in enumerate(domains) if n % 3 == 2}
    assert all(by_domain[d]["status"] == "OK" for d in domains if d not in host2)
    assert all(by_domain[d]["status"] == "CRITICAL" for d in host2)
    # Behaviour change (issue #11): a domain that does not exist is CRITICAL, a checked
    # answer with its DOMAIN_NOT_FOUND finding, not an UNKNOWN line with an error.
    nowhere = by_domain["nowhere.kunden.test"]
    assert (nowhere["status"], nowhere["exit_code"]) == ("CRITICAL", 2)
    assert "DOMAIN_NOT_FOUND" in [f["code"] for f in nowhere["findings"]]
    assert "error" not in nowhere and "error_kind" not in nowhere
    assert by_domain["broken.test"]["status"] == "UNKNOWN" and by_domain["broken.test"]["error"]
    assert by_domain["dangling.test"]["status"] == "CRITICAL"  # MX host without address
    for bad in ("alice@kunden.test", "bad_name!.test"):
        assert by_domain[bad]["status"] == "UNKNOWN"
        assert by_domain[bad]["error_kind"] == "invalid_domain"
        assert by_domain[bad]["error"]

    # Never more than two connections to one server address, across all its ports
    # (counted at the client), nor to one port (as the server's log proves)...
    assert set(counter.peak) == set(ADDRESSES)
    assert max(counter.peak.values()) == 2, counter.peak  # ...and the cap was reached.
    assert server_overlap(provider) <= 2
    assert max(host.gauge.peak for host in provider.hosts) == 2

    # Malformed lines are reported with their numbers; summary and exit code.
    assert "line 103: unknown key 'frobnicate'" in err
    assert f"line {len(lines)}: " in err
    assert f"{DOMAINS + len(special)} domains checked" in err
    assert "2 malformed line(s) skipped" in err
    assert "STARTTLS_MISSING" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    assert code == 2


def test_without_the_cap_connections_pile_up(provider, tmp_path, monkeypatch, capfdbinary) -> None:
    """The twin: --per-host 0 lets a busy batch open many connections to one address."""
    source = write_list(tmp_path / "domains.txt", provider.domains[:90])
    reset_logs(provider)
    counter = ConnectionCounter(monkeypatch)
    code = main(
        [
            "batch",
            str(source),
            "--concurrency",
            "30",
            "--per-host",
            "0",
            "--processes",
            "1",
            "--no-share-probes",
            "--timeout",
            "3",
            "-q",
            *provider.cli_options(),
        ]
    )
    assert len(capfdbinary.readouterr().out.splitlines()) == 90
    # Only the client-side count can prove overlap: the server log gives a lower
    # bound that may miss it (see server_overlap), so it is asserted in the cap test only.
    assert max(counter.peak.values()) > 2, counter.peak
    assert code == 2


def reset_gauges(lab: Provider) -> None:
    for host in lab.hosts:
        host.gauge.reset_peak()


def test_two_worker_processes_share_the_per_host_cap(provider, tmp_path, capfdbinary) -> None:
    """Each of two workers gets one of the two connections per host: counted at the servers."""
    source = write_list(tmp_path / "domains.txt", provider.domains[:120])
    reset_gauges(provider)
    code = main(
        [
            "batch",
            str(source),
            "--concurrency",
            "40",
            "--per-host",
            "2",
            "--processes",
            "2",
            "--no-share-probes",
            "--timeout",
            "3",
            "-q",
            *provider.cli_options(),
        ]
    )
    records = [json.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    assert sorted(r["domain"] for r in records) == sorted(provider.domains[:120])
    assert not any(e.get("shared") for r in records for e in r["endpoints"])
    peaks = [host.gauge.peak for host in provider.hosts]
    assert max(peaks) == 2, peaks  # reached, never passed
    assert code == 2


def test_two_worker_processes_without_a_cap_open_more(provider, tmp_path, capfdbinary) -> None:
    """The twin: the server-side gauge does see more than two when nothing caps them."""
    source = write_list(tmp_path / "domains.txt", provider.domains[:120])
    reset_gauges(provider)
    main(
        [
            "batch",
            str(source),
            "--concurrency",
            "40",
            "--per-host",
            "0",
            "--processes",
            "2",
            "--no-share-probes",
            "--timeout",
            "3",
            "-q",
            *provider.cli_options(),
        ]
    )
    assert len(capfdbinary.readouterr().out.splitlines()) == 120
    assert max(host.gauge.peak for host in provider.hosts) > 2


def test_shared_probes_connect_once_per_endpoint_not_per_domain(
    provider, tmp_path, capfdbinary
) -> None:
    on_host0 = provider.domains[0::3][:30]
    source = write_list(tmp_path / "domains.txt", on_host0)
    host0 = provider.hosts[0]
    before = sum(server.connections_total for server in host0.servers.values())
    code = main(
        [
            "batch",
            str(source),
            "--concurrency",
            "10",
            "--processes",
            "1",
            "-q",
            *provider.cli_options(),
        ]
    )
    records = [json.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    made = sum(server.connections_total for server in host0.servers.values()) - before
    assert made == 6  # one probe per port, however many domains name the host
    assert code == 0 and len(records) == 30
    endpoints = [e for r in records for e in r["endpoints"]]
    assert sum(1 for e in endpoints if e.get("shared")) == len(endpoints) - 6
    for record in records:
        REPORT_VALIDATOR.validate(record)
        assert all(e["ok"] and e["sources"] == ["mx"] for e in record["endpoints"])

    # The twin: --no-share-probes connects for every domain.
    before = sum(server.connections_total for server in host0.servers.values())
    main(
        [
            "batch",
            str(source),
            "--concurrency",
            "10",
            "--processes",
            "1",
            "-q",
            "--no-share-probes",
            *provider.cli_options(),
        ]
    )
    capfdbinary.readouterr()
    made = sum(server.connections_total for server in host0.servers.values()) - before
    assert made == 6 * 30


def test_host_overrides_per_domain(provider, tmp_path, capfdbinary) -> None:
    # d0002 lives on host 2 (no STARTTLS on submission); send its SMTP to host 0 instead.
    source = write_list(tmp_path / "domains.txt", ["d0002.kunden.test smtp=mail0.provider.test"])
    code = main(["batch", str(source), "-q", *provider.cli_options()])
    (record,) = [json.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    smtp_hosts = {e["host"] for e in record["endpoints"] if e["protocol"] == "smtp"}
    assert smtp_hosts == {"mail0.provider.test"}
    assert record["status"] == "OK" and code == 0


def test_reads_standard_input_and_draws_progress_when_asked(
    provider, monkeypatch, capfdbinary
) -> None:
    healthy = [d for n, d in enumerate(provider.domains) if n % 3 != 2][:5]
    data = "\n".join(healthy).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = main(["batch", "-", "--progress", *provider.cli_options()])
    captured = capfdbinary.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert b"\r\x1b[K" in captured.err and b"5 domains" in captured.err
    assert code == 0


def test_runs_in_process_with_its_own_environment(provider, capfdbinary) -> None:
    """Domains from its stdin, JSON lines to its stdout, the summary in its language."""
    from maildiag.environment import Environment

    healthy = [d for n, d in enumerate(provider.domains) if n % 3 != 2][:3]
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO("\n".join([*healthy, "bad_name!.test"]) + "\n"),
        stdout=out,
        stderr=err,
        environ={"LANG": "de_DE.UTF-8"},
    )
    code = main(["batch", "-", *provider.cli_options()], env=env)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(r["domain"] for r in records) == sorted([*healthy, "bad_name!.test"])
    assert all(r["lang"] == "en" for r in records)  # JSON lines are for programs
    assert (
        err.getvalue().startswith("maildiag batch: 4 Domains in ") and "geprüft" in err.getvalue()
    )
    assert code == 3  # the malformed name is UNKNOWN
    captured = capfdbinary.readouterr()
    assert captured.out == b"" and captured.err == b""  # nothing went past the Environment


def test_missing_file_is_a_usage_error(capfd) -> None:
    assert main(["batch", "/nonexistent/domains.txt"]) == 3
    assert "domains.txt" in capfd.readouterr().err


# -- interruption ---------------------------------------------------------------------


def _batch_process(
    lab: Provider, source: Path, out: Path | None, *options: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maildiag",
            "batch",
            str(source),
            "--concurrency",
            "4",
            "--timeout",
            "20",
            "--deadline",
            "60",
            *options,
            *lab.cli_options(),
        ],
        stdout=out.open("wb") if out is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory):
    """Host 1 accepts connections and never greets: its domains take until --timeout."""
    with Provider(
        tmp_path_factory.mktemp("stalling"),
        ["127.0.0.86", "127.0.1.86"],
        domains=40,
        behaviours={
            1: dict.fromkeys(
                ("imap", "imaps", "pop3", "pop3s", "submission", "submissions"),
                Behaviour.NEVER_GREET,
            )
        },
    ) as lab:
        yield lab


@pytest.mark.parametrize("processes", [None, "1"], ids=["worker_processes", "one_process"])
def test_ctrl_c_stops_at_once_and_leaves_whole_lines(stalling, tmp_path, processes) -> None:
    source = write_list(tmp_path / "domains.txt", stalling.domains)
    out = tmp_path / "out.jsonl"
    options = ("--processes", processes) if processes else ()
    process = _batch_process(stalling, source, out, *options)
    try:
        deadline = time.monotonic() + 20
        while out.read_bytes().count(b"\n") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_bytes().count(b"\n") >= 3, "the fast domains should be done by now"
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert time.monotonic() - interrupted_at < 5  # not the 20 s --timeout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    data = out.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]
    assert 3 <= len(records) < len(stalling.domains)
    assert b"(interrupted)" in err
    assert b"Traceback" not in err and b"Exception ignored" not in err
    assert process.returncode == 3


@pytest.mark.parametrize("processes", [None, "1"], ids=["worker_processes", "one_process"])
def test_a_reader_that_goes_away_ends_the_batch_quietly(stalling, tmp_path, processes) -> None:
    """``maildiag batch ... | head -1``: the checks still running are cancelled, no traceback."""
    source = write_list(tmp_path / "domains.txt", stalling.domains)
    options = ("--processes", processes) if processes else ()
    process = _batch_process(stalling, source, None, *options)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.stdout.close()
        closed_at = time.monotonic()
        _, err = process.communicate(timeout=15)
        assert time.monotonic() - closed_at < 5  # not the 20 s --timeout of the stalled ones
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.loads(first)["domain"] in stalling.domains
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    assert process.returncode == 3


def test_uninterrupted_run_of_the_same_kind_finishes(stalling, tmp_path) -> None:
    """The twin: without Ctrl-C, the healthy half of the list runs to the end, exit 0."""
    healthy = stalling.domains[0::2][:6]
    source = write_list(tmp_path / "domains.txt", healthy)
    out = tmp_path / "out.jsonl"
    process = _batch_process(stalling, source, out)
    _, err = process.communicate(timeout=30)
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(r["domain"] for r in records) == sorted(healthy)
    assert b"(interrupted)" not in err
    assert process.returncode == 0


@pytest.mark.parametrize("width", [20, 40, 80, 200])
def test_the_progress_line_never_wraps_on_a_narrow_terminal(width) -> None:
    import io

    from maildiag.batch import Progress, Summary

    stream = io.StringIO()
    progress = Progress(stream, total=1000, width=width)
    summary = Summary()
    progress.update(summary, force=True)
    line = stream.getvalue().split("\r\x1b[K")[-1]
    assert 0 < len(line) < width and line.startswith("[")
    assert "0/1000" in line  # the bar gives way before the numbers
