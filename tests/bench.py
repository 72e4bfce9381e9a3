"""`make bench`: speed measured side by side in one run, on loopback.

Absolute times on a shared 2-core machine say little, so every number is
printed next to the one it should be compared with, and as a ratio.
"""

from __future__ import annotations

import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from maildiag.deadline import Deadline
from maildiag.model import Endpoint, Protocol, Security
from maildiag.probes.endpoint import ProbeSettings, probe_endpoint
from tests.bench_trees import BEFORE_ISSUE_10, ROOT, compiled, earlier_tree
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost

DNS_ADDRESS = "127.0.0.230"
HOST_ADDRESS = "127.0.0.231"
FILTERED_ADDRESS = "127.0.0.232"
FAST_ADDRESS = "127.0.0.233"  # answers at once: the comparison with sslyze
# sslyze lives in the bench's own environment (make bench-env), pinned there:
# its nassl and cryptography pins would otherwise decide maildiag's.
SSLYZE = os.environ.get("MAILDIAG_BENCH_SSLYZE") or str(
    Path(__file__).parents[1] / ".venv-bench" / "bin" / "sslyze"
)
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


def maildiag(
    *args: str, tree: Path | None = None, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m maildiag ARGS``, of this checkout or of an earlier ``tree``."""
    return subprocess.run(
        [sys.executable, "-m", "maildiag", *args],
        capture_output=True,
        text=True,
        check=False,
        env=_environment(tree, environ),
        cwd=tree,
    )


def _environment(tree: Path | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, plus ``environ``, with ``tree`` first on the import path."""
    env = {**os.environ, **(environ or {})}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def json_check_args(domain: str, pki: TestPKI, dns: DnsServer) -> list[str]:
    return [
        "check",
        domain,
        "--nameserver",
        dns.nameserver,
        "--ca-file",
        str(pki.ca_pem_path),
        "--no-autoconfig",
        "--format",
        "json",
    ]


def bench_parallel_vs_serial(pki: TestPKI, dns: DnsServer) -> None:
    print("(a) full check of six endpoints vs. the six probes one after another", flush=True)
    settings = ProbeSettings(timeout=5, ca_file=str(pki.ca_pem_path))

    def probe(key: str) -> None:
        protocol, security = SLOTS[key]
        endpoint = Endpoint(protocol, "mail.bench.test", ENDPOINTS[key][1], security, ("bench",))
        probe_endpoint(endpoint, lambda _h, _d: [HOST_ADDRESS], settings, Deadline(30))

    args = json_check_args("bench.test", pki, dns)
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


def bench_cold_start(before: Path | None) -> None:
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
    print("(b2) imports: what a check loads before its first probe vs. every module", flush=True)
    check_imports = statistics.median(timed(lambda: _python(_CHECK_IMPORTS)) for _ in range(runs))
    everything = statistics.median(timed(lambda: _python(_IMPORT_ALL)) for _ in range(runs))
    report("python -c pass", f"{baseline * 1000:.0f} ms")
    report("import maildiag.cli + runner as the launcher does", f"{check_imports * 1000:.0f} ms")
    report(
        "import every maildiag module (eager, as before the diet)", f"{everything * 1000:.0f} ms"
    )
    report("check start-up vs. bare interpreter", f"{check_imports / baseline:.1f}x")
    report("check start-up vs. eager imports", f"{check_imports / everything:.2f}x")
    if before is not None:
        earlier = statistics.median(
            timed(lambda: _python(_CHECK_IMPORTS, tree=before)) for _ in range(runs)
        )
        report(
            f"the same imports at {BEFORE_ISSUE_10} (before issue 10)",
            f"{earlier * 1000:.0f} ms = {earlier / baseline:.1f}x the bare interpreter",
        )
        report("check start-up: now / before", f"{check_imports / earlier:.2f}x")


# What a check imports before its first probe, the way the launcher does it:
# dnspython's questions about optional packages answered first (a tree from
# before maildiag.dnspython_features has nothing to prepare).
_CHECK_IMPORTS = (
    "try:\n"
    "    from maildiag import dnspython_features\n"
    "except ImportError:\n"
    "    pass\n"
    "else:\n"
    "    dnspython_features.prepare()\n"
    "import maildiag.cli, maildiag.runner\n"
)

# Every module of the package, as a check imported them before imports were
# made lazy (report renderers, analysis, cryptography for the trust anchors).
_IMPORT_ALL = (
    "import pkgutil, importlib, maildiag, maildiag.tls\n"
    "for m in pkgutil.walk_packages(maildiag.__path__, 'maildiag.'):\n"
    "    importlib.import_module(m.name)\n"
    "maildiag.tls.load_trust_anchors()\n"
)


def _python(code: str, tree: Path | None = None) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, env=_environment(tree), cwd=tree)


def _modules_after_version() -> set[str]:
    code = (
        "import sys; from maildiag.launcher import main; main(['--version']); "
        "print(' '.join(m.split('.')[0] for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return set(done.stdout.split())


def bench_filtered(dns: DnsServer) -> None:
    print("(c) six ports that drop packets, --timeout 5: idle vs. both cores busy", flush=True)

    def run() -> float:
        return timed(
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

    idle = [run() for _ in range(3)]
    with _busy_cores(os.cpu_count() or 2):
        loaded = [run() for _ in range(3)]
    for label, times in (("idle", idle), ("loaded", loaded)):
        report(
            f"wall time, {label} (goal <= 5.5 s)",
            f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s",
        )
    report("loaded vs. one 5 s timeout (worst)", f"{max(loaded) / 5:.2f}x")


@contextmanager
def _busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU: a machine busy with other work."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def bench_sslyze(pki: TestPKI, dns: DnsServer, before: Path | None) -> None:
    print("(d) full check of six endpoints vs. sslyze's certificate scan of one", flush=True)
    if not Path(SSLYZE).exists():
        print(f"  skipped: no sslyze at {SSLYZE} (make bench-env installs it)", flush=True)
        return
    check = json_check_args("fast.test", pki, dns)
    sslyze = [SSLYZE, "--quiet", "--certinfo", f"mail.fast.test:993{{{FAST_ADDRESS}}}"]
    rounds = []
    for _ in range(7):
        ours = timed(lambda: maildiag(*check))
        theirs = timed(lambda: subprocess.run(sslyze, capture_output=True, check=False))
        earlier = timed(lambda: maildiag(*check, tree=before)) if before is not None else 0.0
        rounds.append((ours, theirs, earlier))
    ours, theirs, earlier = (statistics.median(column) for column in zip(*rounds, strict=True))
    report("maildiag check, six endpoints (DNS, TLS, capabilities)", f"{ours:.3f} s")
    report("sslyze --certinfo, one endpoint", f"{theirs:.3f} s")
    report("maildiag / sslyze (goal <= 0.35)", f"{ours / theirs:.2f}")
    if before is not None:
        report(
            f"maildiag at {BEFORE_ISSUE_10} / sslyze (before issue 10)", f"{earlier / theirs:.2f}"
        )


def main() -> int:
    zones = {
        "bench.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [HOST_ADDRESS]}},
        "filtered.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [FILTERED_ADDRESS]}},
        "fast.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [FAST_ADDRESS]}},
    }
    # Byte-compiled first, as pip installs it: without that every run would
    # compile the sources first (PYTHONDONTWRITEBYTECODE, a fresh checkout).
    compiled(ROOT)
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
        stack.enter_context(
            FakeMailHost(
                FAST_ADDRESS,
                pki.good(["mail.fast.test"]).server_context(),
                hostname="mail.fast.test",
                behaviours=dict.fromkeys(SLOTS, Behaviour.HEALTHY),
            )
        )
        dns = stack.enter_context(DnsServer(zones, DNS_ADDRESS))
        print("maildiag benchmarks (loopback; medians)")
        bench_parallel_vs_serial(pki, dns)
        before = earlier_tree(BEFORE_ISSUE_10, Path(directory))
        bench_cold_start(before)
        bench_filtered(dns)
        bench_sslyze(pki, dns, before)
    for name in ("tests.bench_mailbox", "tests.bench_batch"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.run(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
