"""promtool (Debian package "prometheus", installed by tests/lab/install-tools.sh):
Prometheus' own checks of exposition text and of rule files, run by the tests.

Without promtool a test is skipped on a developer's machine, but fails under
CI=true: a CI run that skipped these checks would look green while proving
nothing about what Prometheus accepts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not found; run `bash tests/lab/install-tools.sh` (make lab-deps)"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true, so this fails)", pytrace=False)
        pytest.skip(reason)
    return path


def run(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def check_metrics(text: str) -> None:
    """`promtool check metrics`: the exposition parses and passes Prometheus' lint."""
    done = run("check", "metrics", stdin=text)
    assert done.returncode == 0, f"promtool check metrics:\n{done.stdout}{done.stderr}"
