"""Shared fixtures: a test PKI, local DNS and scriptable mail servers on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.lab.certs import TestPKI

pytest_plugins = ["tests.lab.pytest_lab"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


_ADDRESSES = itertools.cycle(range(1, 251))


@pytest.fixture
def loopback_address() -> Iterator[str]:
    """A fresh 127.0.2.x per test, so the servers of consecutive tests never collide."""
    yield f"127.0.2.{next(_ADDRESSES)}"
