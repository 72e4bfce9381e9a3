"""What a maildiag process loads: the start-up diet of issue 10 (item 10) must not change answers.

Each test runs a fresh interpreter, as a real invocation does: laziness is
about what one process imports, so it cannot be seen from inside pytest,
which has imported most of it already.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench import json_check_args
from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost

ROOT = Path(__file__).resolve().parents[1]
DNS_ADDRESS = "127.0.0.180"
HOST_ADDRESS = "127.0.0.181"

# Runs the real entry point, then reports on stderr what the process loaded.
_RUN_AND_LIST = """
import json, sys
from maildiag.launcher import main
code = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _python(*args: str, code: str = _RUN_AND_LIST) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _loaded(done: subprocess.CompletedProcess[str]) -> tuple[int, set[str]]:
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.fixture(scope="module")
def healthy_domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``check`` arguments for fast.test: six healthy endpoints on loopback."""
    pki = TestPKI(tmp_path_factory.mktemp("startup-pki"))
    cert = pki.good(["mail.fast.test"])
    zones = {"fast.test": {"@": {"MX": ["10 mail"]}, "mail": {"A": [HOST_ADDRESS]}}}
    behaviours = dict.fromkeys(ENDPOINTS, Behaviour.HEALTHY)
    with (
        FakeMailHost(
            HOST_ADDRESS, cert.server_context(), hostname="mail.fast.test", behaviours=behaviours
        ),
        DnsServer(zones, DNS_ADDRESS) as dns,
    ):
        yield json_check_args("fast.test", pki, dns)


def test_version_loads_neither_click_nor_dnspython_nor_cryptography() -> None:
    done = _python("--version")
    code, modules = _loaded(done)
    assert code == 0 and done.stdout == "maildiag, version 0.1.0\n"
    heavy = {"click", "dns", "cryptography", "certifi", "importlib.metadata"}
    assert heavy.isdisjoint(modules)


def test_a_check_does_not_load_importlib_metadata(healthy_domain: list[str]) -> None:
    done = _python(*healthy_domain)
    code, modules = _loaded(done)
    report = json.loads(done.stdout)
    assert code == 0 and report["status"] == "OK"
    assert [e["outcome"] for e in report["endpoints"]] == ["ok"] * 6
    assert {"dns.message", "cryptography.x509"} <= modules  # it did use both
    # importlib.metadata's own imports: the module was never loaded, only its stand-in.
    assert "importlib.metadata._meta" not in modules
    assert "email.message" not in modules


_FEATURES = """
import json, sys
if sys.argv[1] == "prepared":
    from maildiag import dnspython_features
    dnspython_features.prepare()
import dns._features, dns.message, dns.query, dns.resolver
from maildiag.dnspython_features import FEATURES
print(json.dumps({f: dns._features.have(f) for f in FEATURES}))
"""


def test_dnspython_hears_the_answers_importlib_metadata_would_give() -> None:
    answers = {}
    for way in ("prepared", "plain"):
        done = _python(way, code=_FEATURES)
        assert done.returncode == 0, done.stderr
        answers[way] = json.loads(done.stdout)
    assert answers["prepared"] == answers["plain"]
    assert answers["plain"]["doh"] is False  # no DNS over HTTPS packages in maildiag's venv


_STAND_IN = """
import sys
from maildiag import dnspython_features
dnspython_features.prepare()
import dns.message
assert "importlib.metadata._meta" not in sys.modules
import importlib.metadata
from importlib.metadata import version
print(version("click"), importlib.metadata.version("idna"), type(sys.modules["importlib.metadata"]))
"""


def test_importlib_metadata_still_works_after_the_stand_in() -> None:
    done = _python(code=_STAND_IN)
    assert done.returncode == 0, done.stderr
    import importlib.metadata

    click_version, idna_version, kind = done.stdout.split(maxsplit=2)
    assert click_version == importlib.metadata.version("click")
    assert idna_version == importlib.metadata.version("idna")
    assert kind.strip() == "<class 'module'>"  # the real module replaced the stand-in


@pytest.mark.parametrize(
    ("version", "expected"),
    [("3.10", (3, 10)), ("2.0rc1", (2, 0)), ("1.2.3.post4", (1, 2, 3)), ("x1", ())],
)
def test_versions_compare_as_dnspython_compares_them(
    version: str, expected: tuple[int, ...]
) -> None:
    import dns._features

    from maildiag.dnspython_features import _numbers

    assert _numbers(version) == expected == dns._features._tuple_from_text(version)


# Counts the garbage collector's passes while the entry point runs.
_RUN_AND_COUNT_COLLECTIONS = """
import gc, json, sys
from maildiag.launcher import main
passes = [0, 0, 0]
gc.callbacks.append(lambda phase, info: phase == "stop" and passes.__setitem__(
    info["generation"], passes[info["generation"]] + 1))
code = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"code": code, "passes": passes}), file=sys.stderr)
"""


def test_a_check_runs_the_garbage_collector_at_most_once(healthy_domain: list[str]) -> None:
    # Loading the CLI, dnspython and cryptography makes objects that live as
    # long as the process; walking them ~60 times cost a check ~9 ms.
    done = _python(*healthy_domain, code=_RUN_AND_COUNT_COLLECTIONS)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "OK"
    assert sum(report["passes"]) <= 1
    assert report["passes"][2] == 0  # never a full collection


def test_the_older_generations_keep_their_thresholds() -> None:
    # Batch and serve run for hours: their garbage is still collected.
    done = _python(
        code="import gc; from maildiag.launcher import main; main(['codes']); "
        "print(gc.get_threshold())"
    )
    assert done.returncode == 0, done.stderr
    young, middle, old = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert young == 50_000 and (middle, old) == (10, 10)
