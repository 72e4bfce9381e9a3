"""pytest plugin: the real Dovecot/Postfix lab as a session fixture.

Loaded from tests/conftest.py (`pytest_plugins = ["tests.lab.pytest_lab"]`) or
with `-p tests.lab.pytest_lab`. Tests that take `mail_lab` get the `lab` marker,
so `pytest -m "not lab"` runs without the servers.

When the lab cannot start, tests that need it are skipped on a developer's
machine, but fail under CI=true: a CI run that skipped the lab would look green
while testing nothing against real servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.lab.courier import CourierLab, running_courier
from tests.lab.exim import EximLab, running_exim_lab
from tests.lab.real import LabError, MailLab, running_lab


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"mail lab unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"mail lab unavailable: {reason} (run `make lab-deps` as root)")


@pytest.fixture(scope="session")
def mail_lab() -> Iterator[MailLab]:
    """A running MailLab shared by the whole session.

    Shared state: tests must not assume mailbox contents or log counts other
    tests could change; compare before/after values (inbox_state,
    failed_logins) instead of absolute ones, and use users/subjects of their own.
    """
    lab_context = running_lab()
    try:
        lab = lab_context.__enter__()
    except (LabError, OSError) as e:
        _unavailable(str(e))
        raise  # not reached: _unavailable always raises
    try:
        yield lab
    finally:
        lab_context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def exim_lab() -> Iterator[EximLab]:
    """The real Exim submission servers of tests/lab/exim.py, shared by the session.

    The throttled setup allows one connection at a time: hold one with
    `exim_lab.held_connection(...)` only inside a test, never across tests.
    """
    lab_context = running_exim_lab()
    try:
        lab = lab_context.__enter__()
    except (LabError, OSError) as e:
        _unavailable(f"Exim: {e}")
        raise  # not reached: _unavailable always raises
    try:
        yield lab
    finally:
        lab_context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def courier_lab() -> Iterator[CourierLab]:
    """The real Courier IMAP/POP3 of tests/lab/courier.py, shared by the session.

    Same rules as mail_lab: compare before/after log counts, users of one's own.
    """
    lab_context = running_courier()
    try:
        lab = lab_context.__enter__()
    except (LabError, OSError) as e:
        _unavailable(f"Courier: {e}")
        raise  # not reached: _unavailable always raises
    try:
        yield lab
    finally:
        lab_context.__exit__(None, None, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"mail_lab", "exim_lab", "courier_lab"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
