"""What every real-server lab needs around its daemons: a slot, leftovers, free ports.

Two test sessions on one machine (several engineers share it) may each run
a lab, so each lab takes a numbered slot with its own loopback addresses.
The slot is an flock on a file in /tmp that also records the lab's state
(its process groups, its directory): when a session is killed before it
stops its daemons, the next owner of the slot kills them and removes the
directory before it starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


class LabError(RuntimeError):
    """The lab could not be started, or a lab helper failed."""


class LabSlotBusy(LabError):
    """Another test session on this machine holds this lab slot."""


class SlotLock:
    """The lock of one lab slot, and the state its owner left in it."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what  # "lab slot 0", "Exim lab slot 1", ...
        self._fd: int | None = None

    def acquire(self) -> dict[str, object] | None:
        """Takes the slot; returns what a killed owner left (None: nothing)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LabSlotBusy(
                f"{self.what} is in use by another test session (lock {self.path})"
            ) from None
        self._fd = fd
        # We hold the lock, so whoever wrote the state is gone; if it was killed
        # before stopping its servers, they still hold the lab's ports.
        with contextlib.suppress(ValueError, OSError):
            raw = os.pread(fd, 65536, 0)
            if raw:
                state = json.loads(raw)
                return state if isinstance(state, dict) else None
        return None

    def write(self, state: dict[str, object]) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(state).encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def slot_lock_path(lab: str, slot: int) -> Path:
    """The lock file of one slot of *lab*, keyed to this network namespace.

    The lab's addresses exist once per namespace, so test sessions in
    namespaces of their own (``unshare -n``) each get every slot.
    """
    netns = os.stat("/proc/self/ns/net").st_ino
    return Path(f"/tmp/maildiag-{lab}-slot{slot}-net{netns}.lock")


def kill_leftovers(
    state: dict[str, object], is_server: Callable[[str], bool], root_prefix: str
) -> None:
    """Kills the listed process groups' servers (by executable) and removes the lab directory."""
    listed = state.get("pgids")
    pgids = {p for p in listed if isinstance(p, int)} if isinstance(listed, list) else set()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            pgrp = int((proc_dir / "stat").read_text().rpartition(")")[2].split()[2])
            exe = os.readlink(proc_dir / "exe")
            if pgrp in pgids and is_server(exe):
                os.kill(int(proc_dir.name), signal.SIGKILL)
    root = state.get("root")
    if isinstance(root, str) and root.startswith(root_prefix):
        shutil.rmtree(root, ignore_errors=True)


def check_ports_free(endpoints: Iterable[tuple[str, int]], hint: str = "") -> None:
    """Raises ``LabError`` naming the first address:port something already listens on."""
    for address, port in endpoints:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                raise LabError(f"{address}:{port} is already in use{hint}") from None


class _Lab(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


L = TypeVar("L", bound=_Lab)


@contextlib.contextmanager
def first_free_slot(make: Callable[[int], L], slots: Iterable[int]) -> Iterator[L]:
    """A lab started in the first slot no other session holds."""
    last: LabSlotBusy | None = None
    for slot in slots:
        lab = make(slot)
        try:
            lab.start()
        except LabSlotBusy as e:
            last = e
            continue
        try:
            yield lab
        finally:
            lab.stop()
        return
    assert last is not None, "no slot to try"
    raise last
