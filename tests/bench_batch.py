"""`maildiag batch` at scale: 100 and 1,000 domains of one hosting provider, on loopback.

Five fake mail hosts on 127.0.0.90-94 play the provider's servers, a local
DNS server on 127.0.0.95 gives every customer domain an MX record on one of
them, and ``maildiag batch --concurrency 100`` runs as a separate process,
with the default cap of two connections per server address. Measured, not
asserted: wall time and peak RSS of the batch process for both sizes, and
how they grow (goal: ≤ 30 s and ≤ 150 MB at 1,000 domains, time growing
linearly, memory flat).

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

from tests.lab.provider import Provider

HOSTS = ["127.0.0.90", "127.0.0.91", "127.0.0.92", "127.0.0.93", "127.0.0.94"]
DNS_ADDRESS = "127.0.0.95"
SIZES = (100, 1000)
CONCURRENCY = 100
ROOT = Path(__file__).resolve().parent.parent

Report = Callable[[str, str], None]


@dataclass(frozen=True)
class Run:
    domains: int
    seconds: float
    peak_rss_mb: float
    lines: int
    statuses: Counter[str]
    exit_code: int


def _batch(lab: Provider, directory: Path, size: int) -> Run:
    source = directory / f"domains-{size}.txt"
    source.write_text("\n".join(lab.domains[:size]) + "\n", encoding="utf-8")
    output = directory / f"results-{size}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with output.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "maildiag", "batch", str(source),
             "--concurrency", str(CONCURRENCY), "--no-progress", "-q", *lab.cli_options()],
            stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        # wait4 gives this child's own peak RSS; RUSAGE_CHILDREN would be the
        # maximum over every child waited for so far.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = output.read_bytes().splitlines()
    statuses = Counter(json.loads(line)["status"] for line in lines)
    return Run(size, seconds, usage.ru_maxrss / 1024, len(lines), statuses, process.returncode)


def run(report: Report) -> None:
    print(f"(batch) {', '.join(map(str, SIZES))} domains on {len(HOSTS)} servers, "
          f"--concurrency {CONCURRENCY}, --per-host 2", flush=True)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        with Provider(directory, HOSTS, domains=max(SIZES), dns_address=DNS_ADDRESS) as lab:
            _batch(lab, directory, 20)  # warm the page cache and the DNS server's cache
            runs = [_batch(lab, directory, size) for size in SIZES]
    for result in runs:
        complete = "all" if result.lines == result.domains else f"ONLY {result.lines}"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items()))
        report(f"{result.domains} domains: wall time", f"{result.seconds:.1f} s "
               f"({result.domains / result.seconds:.0f} domains/s)")
        report(f"{result.domains} domains: peak RSS of the batch process",
               f"{result.peak_rss_mb:.0f} MB")
        report(f"{result.domains} domains: result lines", f"{complete} ({statuses}); "
               f"exit {result.exit_code}")
    small, large = runs[0], runs[-1]
    size_ratio = large.domains / small.domains
    report("1,000 domains (goal <= 30 s, <= 150 MB)",
           f"{large.seconds:.1f} s, {large.peak_rss_mb:.0f} MB")
    report(f"time growth for {size_ratio:.0f}x the domains (linear: {size_ratio:.0f}x)",
           f"{large.seconds / small.seconds:.1f}x")
    report(f"memory growth for {size_ratio:.0f}x the domains (flat: 1.0x)",
           f"{large.peak_rss_mb / small.peak_rss_mb:.2f}x")


def _print(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


if __name__ == "__main__":
    run(_print)
