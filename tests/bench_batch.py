"""`maildiag batch` at scale: 100 and 1,000 domains of one hosting provider, on loopback.

Five fake mail hosts on 127.0.0.90-94 play the provider's servers, a local
DNS server on 127.0.0.95 gives every customer domain an MX record on one of
them, and ``maildiag batch --concurrency 100`` runs as a separate process
(with its worker processes, one per CPU), with the default cap of two
connections per server address. Measured, not asserted: wall time and peak
memory (the PSS of the batch process and its workers, summed, sampled every
20 ms: shared library pages are counted once, not once per process; the RSS
sum is printed too) for both sizes, and how they grow (goal: <= 30 s and <= 150 MB at
1,000 domains, time growing linearly, memory flat).

Two ways are measured side by side: the default, where a probe of a
server endpoint is shared by every domain that names it, and
``--no-share-probes``, where every domain's six endpoints are connected to
(6,000 connections for 1,000 domains).

``run(report)`` is called by ``make bench`` (tests/bench.py) with its
``report(label, value)``; ``python3 -m tests.bench_batch`` runs it alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.bench_trees import BEFORE_ISSUE_10, ROOT, compiled, earlier_tree
from tests.lab.provider import Provider

HOSTS = ["127.0.0.90", "127.0.0.91", "127.0.0.92", "127.0.0.93", "127.0.0.94"]
DNS_ADDRESS = "127.0.0.95"
SIZES = (100, 1000)
CONCURRENCY = 100

Report = Callable[[str, str], None]


@dataclass(frozen=True)
class Run:
    domains: int
    seconds: float
    peak_rss_mb: float  # summed over the processes: shared pages counted in each
    peak_pss_mb: float  # proportional: shared pages divided between the processes
    lines: int
    statuses: Counter[str]
    exit_code: int


def _batch(lab: Provider, directory: Path, size: int, *options: str, tree: Path = ROOT) -> Run:
    source = directory / f"domains-{size}.txt"
    source.write_text("\n".join(lab.domains[:size]) + "\n", encoding="utf-8")
    output = directory / f"results-{size}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with output.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "maildiag",
                "batch",
                str(source),
                "--concurrency",
                str(CONCURRENCY),
                "--no-progress",
                "-q",
                *options,
                *lab.cli_options(),
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tree,
        )
        peak_rss = peak_pss = 0
        while process.poll() is None:
            rss, pss = _tree_memory_kb(process.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    lines = output.read_bytes().splitlines()
    statuses = Counter(json.loads(line)["status"] for line in lines)
    return Run(
        size, seconds, peak_rss / 1024, peak_pss / 1024, len(lines), statuses, process.returncode
    )


def _tree_memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of ``pid`` and its children (the workers), summed, from /proc."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        return 0, 0
    rss = pss = 0
    for each in pids:
        try:
            rss += _field_kb(Path(f"/proc/{each}/status"), "VmRSS:")
            pss += _field_kb(Path(f"/proc/{each}/smaps_rollup"), "Pss:")
        except OSError:
            continue
    return rss, pss


def _field_kb(path: Path, name: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return 0


MODES = {
    "shared probes (default)": (),
    "--no-share-probes": ("--no-share-probes",),
}


def run(report: Report) -> None:
    print(
        f"(batch) {', '.join(map(str, SIZES))} domains on {len(HOSTS)} servers, "
        f"--concurrency {CONCURRENCY}, --per-host 2",
        flush=True,
    )
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        with Provider(directory, HOSTS, domains=max(SIZES), dns_address=DNS_ADDRESS) as lab:
            _batch(lab, directory, 20)  # warm the page cache and the DNS server's cache
            for mode, options in MODES.items():
                results[mode] = [_batch(lab, directory, size, *options) for size in SIZES]
            for mode, runs in results.items():
                _report_mode(report, mode, runs)
            _against_before(lab, directory, report)


ROUNDS = 3


def _against_before(lab: Provider, directory: Path, report: Report) -> None:
    """1,000 domains by maildiag now and before issue 10, alternately, both modes."""
    import statistics

    print(f"  -- 1,000 domains now vs. maildiag at {BEFORE_ISSUE_10} ({ROUNDS} rounds)", flush=True)
    old = earlier_tree(BEFORE_ISSUE_10, directory)
    if old is None:
        return
    trees = {"now": compiled(ROOT), BEFORE_ISSUE_10: old}
    size = max(SIZES)
    for mode, options in MODES.items():
        times: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(ROUNDS):
            for name, tree in trees.items():
                result = _batch(lab, directory, size, *options, tree=tree)
                if result.lines != size:
                    report(f"{name}, {mode}", f"ONLY {result.lines} lines")
                times[name].append(result.seconds)
        now, before = (statistics.median(times[name]) for name in trees)
        report(
            f"{mode}: before / now (goal: now <= before)",
            f"{before:.1f} / {now:.1f} s = {now / before:.2f}x",
        )


def _report_mode(report: Report, mode: str, runs: list[Run]) -> None:
    print(f"  -- {mode}", flush=True)
    for result in runs:
        complete = "all" if result.lines == result.domains else f"ONLY {result.lines}"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items()))
        report(
            f"{result.domains} domains: wall time",
            f"{result.seconds:.1f} s ({result.domains / result.seconds:.0f} domains/s)",
        )
        report(
            f"{result.domains} domains: peak memory, batch and workers",
            f"PSS {result.peak_pss_mb:.0f} MB (RSS summed {result.peak_rss_mb:.0f} MB)",
        )
        report(
            f"{result.domains} domains: result lines",
            f"{complete} ({statuses}); exit {result.exit_code}",
        )
    small, large = runs[0], runs[-1]
    size_ratio = large.domains / small.domains
    report(
        "1,000 domains (goal <= 30 s, <= 150 MB)",
        f"{large.seconds:.1f} s, PSS {large.peak_pss_mb:.0f} MB",
    )
    report(
        f"time growth for {size_ratio:.0f}x the domains (linear: {size_ratio:.0f}x)",
        f"{large.seconds / small.seconds:.1f}x",
    )
    report(
        f"memory growth for {size_ratio:.0f}x the domains (flat: 1.0x)",
        f"{large.peak_pss_mb / small.peak_pss_mb:.2f}x",
    )


def _print(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


if __name__ == "__main__":
    run(_print)
