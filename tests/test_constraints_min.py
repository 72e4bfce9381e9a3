"""The minimum-versions job tests what pyproject.toml promises, and runs on it.

``make test-min`` installs maildiag with ``tests/constraints-min.txt`` as pip
constraints and runs the unit tests. That proves the lower bounds only while
the file pins every runtime dependency at exactly its declared lower bound,
and only if pip really installed those versions.
"""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "tests" / "constraints-min.txt"


def declared_lower_bounds() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{line}: exactly one '>=' lower bound, so it can be tested"
        bounds[canonicalize_name(requirement.name)] = Version(lower[0])
    return bounds


def pinned_versions() -> dict[str, Version]:
    pins = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{raw!r}: a constraint must pin one version (name==version)"
        pins[canonicalize_name(name.strip())] = Version(version.strip())
    return pins


def test_every_runtime_dependency_is_pinned_at_its_declared_lower_bound() -> None:
    declared, pinned = declared_lower_bounds(), pinned_versions()
    assert sorted(pinned) == sorted(declared), "constraints-min.txt and pyproject.toml list"
    for name, lower in declared.items():
        assert pinned[name] == lower, f"{name}: pyproject says >={lower}, the pin is {pinned[name]}"


@pytest.mark.skipif(
    not os.environ.get("MAILDIAG_MIN_VERSIONS"), reason="only in `make test-min` (.venv-min)"
)
def test_the_minimum_versions_are_the_installed_ones() -> None:
    for name, version in pinned_versions().items():
        assert Version(metadata.version(name)) == version, name
