"""Batches over worker processes (maildiag.workers) and probes shared between domains.

Fake provider hosts on 127.0.5.x; the workers are real spawned processes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from maildiag.batch import BatchEntry, BatchResult
from maildiag.cli import build_request
from maildiag.deadline import Deadline
from maildiag.model import Endpoint, Outcome, ProbeResult, Protocol, Security, Status
from maildiag.probes.endpoint import ProbeSettings
from maildiag.runner import CheckRequest, ProbeCache
from maildiag.workers import run_in_processes, split, worker_count
from tests.lab.fake_servers import Behaviour
from tests.lab.provider import Provider

# -- dividing the work ---------------------------------------------------------------


def test_split_adds_up_and_differs_by_at_most_one() -> None:
    assert split(5, 2) == [3, 2]
    assert split(2, 2) == [1, 1]
    assert split(100, 3) == [34, 33, 33]
    assert sum(split(7, 7)) == 7


def test_worker_count_never_exceeds_the_cap_or_the_concurrency() -> None:
    assert worker_count(4, concurrency=100, per_host=2) == 2  # one connection each at least
    assert worker_count(4, concurrency=3, per_host=0) == 3
    assert worker_count(3, concurrency=100, per_host=0) == 3
    assert worker_count(1, concurrency=100, per_host=2) == 1
    assert 1 <= worker_count(None, concurrency=100, per_host=2) <= 2
    assert worker_count(None, concurrency=100, per_host=1) == 1


def test_more_workers_than_the_cap_allows_is_refused() -> None:
    with pytest.raises(ValueError):
        next(run_in_processes([], CheckRequest(""), processes=3, concurrency=10, per_host=2))


# -- sharing probes ------------------------------------------------------------------


def _endpoint(source: str) -> Endpoint:
    return Endpoint(Protocol.IMAP, "mail.provider.test", 993, Security.TLS, (source,))


def _result(endpoint: Endpoint, outcome: Outcome = Outcome.OK) -> ProbeResult:
    return ProbeResult(endpoint, outcome, address="127.0.5.9", timings={"connect": 0.01})


def test_one_probe_serves_every_request_for_the_endpoint_while_it_runs() -> None:
    cache = ProbeCache()
    settings = ProbeSettings(timeout=5)
    started, release = threading.Event(), threading.Event()
    runs = []

    def slow_probe() -> ProbeResult:
        runs.append(1)
        started.set()
        release.wait(5)
        return _result(_endpoint("mx"))

    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(cache.probe, _endpoint("mx"), settings, Deadline(10), slow_probe)
        started.wait(5)
        others = [
            pool.submit(cache.probe, _endpoint(f"guess{n}"), settings, Deadline(10), slow_probe)
            for n in range(4)
        ]
        time.sleep(0.1)
        release.set()
        results = [first.result(5)] + [f.result(5) for f in others]
    assert len(runs) == 1
    assert not results[0].shared and all(r.shared for r in results[1:])
    # Each domain keeps its own endpoint (how it was found), with the shared facts.
    assert [r.endpoint.sources for r in results[1:]] == [(f"guess{n}",) for n in range(4)]
    assert {r.address for r in results} == {"127.0.5.9"}


def test_other_settings_or_ports_are_probed_on_their_own() -> None:
    cache = ProbeCache()
    runs = []

    def probe(endpoint: Endpoint) -> ProbeResult:
        runs.append(endpoint)
        return _result(endpoint)

    plain = Endpoint(Protocol.IMAP, "mail.provider.test", 143, Security.STARTTLS, ("mx",))
    for endpoint, settings in [
        (_endpoint("mx"), ProbeSettings(timeout=5)),
        (_endpoint("mx"), ProbeSettings(timeout=9)),
        (plain, ProbeSettings(timeout=5)),
    ]:
        cache.probe(endpoint, settings, Deadline(5), lambda e=endpoint: probe(e))
    assert len(runs) == 3


def test_a_result_cut_short_by_the_deadline_is_not_kept() -> None:
    cache = ProbeCache()
    settings = ProbeSettings(timeout=5)
    outcomes = iter([Outcome.DEADLINE, Outcome.OK])
    first = cache.probe(
        _endpoint("mx"), settings, Deadline(5), lambda: _result(_endpoint("mx"), next(outcomes))
    )
    second = cache.probe(
        _endpoint("mx"), settings, Deadline(5), lambda: _result(_endpoint("mx"), next(outcomes))
    )
    assert first.outcome is Outcome.DEADLINE
    assert second.outcome is Outcome.OK and not second.shared  # probed anew


def test_results_age_out() -> None:
    cache = ProbeCache(max_age=0.05)
    settings = ProbeSettings(timeout=5)
    runs = []

    def probe() -> ProbeResult:
        runs.append(1)
        return _result(_endpoint("mx"))

    assert not cache.probe(_endpoint("mx"), settings, Deadline(5), probe).shared
    assert cache.probe(_endpoint("mx"), settings, Deadline(5), probe).shared
    time.sleep(0.1)
    assert not cache.probe(_endpoint("mx"), settings, Deadline(5), probe).shared
    assert len(runs) == 2


def test_a_failing_probe_does_not_poison_the_endpoint() -> None:
    cache = ProbeCache()
    settings = ProbeSettings(timeout=5)

    def broken() -> ProbeResult:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        cache.probe(_endpoint("mx"), settings, Deadline(5), broken)
    result = cache.probe(_endpoint("mx"), settings, Deadline(5), lambda: _result(_endpoint("mx")))
    assert result.outcome is Outcome.OK and not result.shared


# -- worker processes against fake servers --------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """Host 0 is healthy; host 1 accepts connections and never greets."""
    with Provider(
        tmp_path_factory.mktemp("workers"),
        ["127.0.5.1", "127.0.5.2"],
        domains=40,
        dns_address="127.0.5.3",
        behaviours={
            1: dict.fromkeys(
                ("imap", "imaps", "pop3", "pop3s", "submission", "submissions"),
                Behaviour.NEVER_GREET,
            )
        },
    ) as provider:
        yield provider


def _template(lab: Provider, timeout: float = 5.0, deadline: float = 30.0) -> CheckRequest:
    return build_request(
        "",
        timeout=timeout,
        deadline=deadline,
        nameserver=lab.dns.nameserver,
        ca_file=str(lab.pki.ca_pem_path),
        cert_warning_days=21.0,
        cert_critical_days=7.0,
        no_autoconfig=True,
    )


def test_workers_check_every_entry_and_keep_bad_lines_in_order(lab: Provider) -> None:
    from maildiag.batch import read_entries

    healthy = lab.domains[0::2][:12]
    lines = [healthy[0], "x.test frobnicate=1", *healthy[1:], "y.test imap"]
    results = list(
        run_in_processes(
            read_entries(lines), _template(lab), processes=2, concurrency=6, per_host=2
        )
    )
    checked = [r for r in results if isinstance(r, BatchResult)]
    assert sorted(r.entry.domain for r in checked) == sorted(healthy)
    assert all(r.status is Status.OK for r in checked)
    complaints = [r.line for r in results if not isinstance(r, BatchResult)]
    assert complaints == [2, len(lines)]


def test_a_worker_that_dies_leaves_unknown_lines_not_holes(lab: Provider) -> None:
    import multiprocessing

    stalling = lab.domains[1::2][:8]  # on host 1: they wait for their --timeout
    entries = [BatchEntry(n, domain) for n, domain in enumerate(stalling, start=1)]
    template = _template(lab, timeout=20, deadline=60)
    results = run_in_processes(entries, template, processes=2, concurrency=8, per_host=2)
    killed = threading.Event()

    def kill_one_worker() -> None:
        time.sleep(1.0)
        children = multiprocessing.active_children()
        if children:
            os.kill(children[0].pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed.set()

    threading.Thread(target=kill_one_worker, daemon=True).start()
    started = time.monotonic()
    first = next(results)  # the dead worker's domains arrive first, as failures
    assert killed.is_set() and time.monotonic() - started < 10
    assert isinstance(first, BatchResult) and first.status is Status.UNKNOWN
    assert first.error is not None and "worker process" in first.error
    results.close()  # ends the other worker without waiting for its 20 s probes


def test_stop_ends_the_batch_and_its_workers_at_once(lab: Provider) -> None:
    import multiprocessing

    stalling = [BatchEntry(n, d) for n, d in enumerate(lab.domains[1::2][:4], start=1)]
    stop = threading.Event()
    collected: list[object] = []
    runner = threading.Thread(
        target=lambda: collected.extend(
            run_in_processes(
                stalling,
                _template(lab, timeout=20),
                processes=2,
                concurrency=4,
                per_host=2,
                stop=stop,
            )
        )
    )
    runner.start()
    time.sleep(1.0)  # the workers are up and waiting for greetings
    assert multiprocessing.active_children()
    stopped_at = time.monotonic()
    stop.set()
    runner.join(10)
    assert not runner.is_alive() and time.monotonic() - stopped_at < 5  # not the 20 s timeout
    assert collected == []  # nothing was finished, nothing half-written
    assert not multiprocessing.active_children()


_ORPHANING_PARENT = """
import sys
from maildiag.batch import BatchEntry
from maildiag.cli import build_request
from maildiag.workers import run_in_processes

nameserver, ca_file, *domains = sys.argv[1:]
template = build_request(
    "", timeout=20.0, deadline=60.0, nameserver=nameserver, ca_file=ca_file,
    cert_warning_days=21.0, cert_critical_days=7.0, no_autoconfig=True,
)
entries = [BatchEntry(n, d) for n, d in enumerate(domains, start=1)]
for result in run_in_processes(entries, template, processes=2, concurrency=4, per_host=2):
    print(result, flush=True)
"""


def test_workers_whose_parent_dies_end_their_checks_and_exit(lab: Provider, tmp_path) -> None:
    """SIGKILL leaves the parent no chance to end its workers: they notice and exit by
    themselves, at once, not after the 20 s their stalled checks would take."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(_ORPHANING_PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    stalling = lab.domains[1::2][:4]
    parent = subprocess.Popen(
        [sys.executable, str(script), lab.dns.nameserver, str(lab.pki.ca_pem_path), *stalling],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        until = time.monotonic() + 20
        while len(children) < 2 and time.monotonic() < until:
            time.sleep(0.1)
            children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
            children = [
                int(pid)
                for pid in children_file.read_text().split()
                # not multiprocessing's resource tracker, which the parent also starts
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
        assert len(children) == 2, "the workers did not start"
        time.sleep(1.5)  # the workers are checking, waiting for greetings that never come
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed_at = time.monotonic()
        while any(Path(f"/proc/{pid}").exists() for pid in children):
            assert time.monotonic() - killed_at < 5, "a worker outlived its parent"
            time.sleep(0.05)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if parent.poll() is None:
            parent.kill()
            parent.wait()
