"""`make bench`: speed measured side by side in one run, on loopback.

Absolute times on a shared 2-core machine say little, so every number is
printed next to the one it should be compared with, and as a ratio.
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack

from maildiag.deadline import Deadline
from maildiag.model import Endpoint, Protocol, Security
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost

DNS_ADDRESS = "127.0.0.230"
HOST_ADDRESS = "127.0.0.231"
FILTERED_ADDRESS = "127.0.0.232"
GREETING_DELAY = 0.25  # a server that takes its time, as busy production servers do
SLOTS = {
    "imap": (Protocol.IMAP, Security.STARTTLS),
    "imaps": (Protocol.IMAP, Security.TLS),
    "pop3": (Protocol.POP3, Security.STARTTLS),
    "pop3s": (Protocol.POP3, Security.TLS),
    "submission": (Protocol.SMTP, Security.STARTTLS),
    "submissions": (Protocol.SMTP, Security.TLS),
}


def report(label: str, value: str) -> None:
    print(f"  {label:<58} {value}", flush=True)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def maildiag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maildiag", *args], capture_output=True, text=True, check=False
    )


def bench_parallel_vs_serial(pki: TestPKI, dns: DnsServer) -> None:
    print("(a) full check of six endpoints vs. the six probes one after another", flush=True)
    settings = ProbeSettings(timeout=5, ca_file=str(pki.ca_pem_path))

    def probe(key: str) -> None:
        protocol, security = SLOTS[key]
        endpoint = Endpoint(protocol, "mail.bench.test", ENDPOINTS[key][1], security, ("bench",))
        probe_endpoint(endpoint, lambda _h, _d: [HOST_ADDRESS], settings, Deadline(30))

    args = [
        "check",
        "bench.test",
        "--nameserver",
        dns.nameserver,
        "--ca-file",
        str(pki.ca_pem_path),
        "--no-autoconfig",
        "--format",
        "json",
    ]
    from maildiag.cli import main

    rounds = []
    for _ in range(3):
        singles = {key: timed(lambda key=key: probe(key)) for key in SLOTS}
        full = timed(lambda: _quiet(main, args))
        rounds.append((full, sum(singles.values()), max(singles.values())))
    full, serial, slowest = (statistics.median(column) for column in zip(*rounds, strict=True))
    report("six probes one after another (sum)", f"{serial:.3f} s")
    report("slowest single probe", f"{slowest:.3f} s")
    report("full `maildiag check` (discovery + six probes + report)", f"{full:.3f} s")
    report("speed-up over serial", f"{serial / full:.2f}x")
    report("full check / slowest probe (goal <= 1.3)", f"{full / slowest:.2f}")


def _quiet(function: Callable[[list[str]], int], args: list[str]) -> None:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        function(args)


def bench_cold_start() -> None:
    print("(b) cold start of `maildiag --version`", flush=True)
    runs = 15
    baseline = statistics.median(
        timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        for _ in range(runs)
    )
    version = statistics.median(timed(lambda: maildiag("--version")) for _ in range(runs))
    report("python -c pass (interpreter start)", f"{baseline * 1000:.0f} ms")
    report("python -m maildiag --version (goal <= 120 ms)", f"{version * 1000:.0f} ms")
    report("maildiag's own share", f"{(version - baseline) * 1000:.0f} ms")
    heavy = [
        name for name in ("dns", "cryptography", "tabulate") if name in _modules_after_version()
    ]
    report("heavy modules imported by --version", ", ".join(heavy) or "none")


def _modules_after_version() -> set[str]:
    code = (
        "import sys; from maildiag.launcher import main; main(['--version']); "
        "print(' '.join(m.split('.')[0] for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return set(done.stdout.split())


def bench_filtered(dns: DnsServer) -> None:
    print("(c) six ports that drop packets, --timeout 5", flush=True)
    elapsed = timed(
        lambda: maildiag(
            "check",
            "filtered.test",
            "--nameserver",
            dns.nameserver,
            "--timeout",
            "5",
            "--no-autoconfig",
        )
    )
    report("wall time (goal <= 5.5 s)", f"{elapsed:.2f} s")
    report("vs. one 5 s timeout", f"{elapsed / 5:.2f}x")


def main() -> int:
    zones = {
        "bench.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [HOST_ADDRESS]}},
        "filtered.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [FILTERED_ADDRESS]}},
    }
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        pki = TestPKI(directory)
        cert = pki.good(["mail.bench.test"])
        stack.enter_context(
            FakeMailHost(
                HOST_ADDRESS,
                cert.server_context(),
                hostname="mail.bench.test",
                behaviours=dict.fromkeys(SLOTS, Behaviour.SLOW_GREETING),
                delay=GREETING_DELAY,
            )
        )
        stack.enter_context(
            FakeMailHost(
                FILTERED_ADDRESS, None, behaviours=dict.fromkeys(SLOTS, Behaviour.FILTERED)
            )
        )
        dns = stack.enter_context(DnsServer(zones, DNS_ADDRESS))
        print("maildiag benchmarks (loopback; medians)")
        bench_parallel_vs_serial(pki, dns)
        bench_cold_start()
        bench_filtered(dns)
    for name in ("tests.bench_mailbox", "tests.bench_batch"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.run(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
