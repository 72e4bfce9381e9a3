"""A cap on simultaneous connections to one server address, shared across checks.

Hosting providers serve thousands of domains from a handful of machines; a
batch that opened every endpoint of a hundred domains at once would look
like an attack to them (and trip their connection limits, which then shows
up as false "throttled" findings). Probes hold a slot per IP address for
as long as their connection is open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .deadline import Deadline, DeadlineExceeded


class HostLimiter:
    """At most ``per_host`` open connections to any one address.

    Waiters are woken first come, first served (``Condition.notify`` wakes
    the longest waiter), so a domain queued early is not starved into its
    deadline by later ones. Bookkeeping is dropped as soon as an address
    is idle, so memory does not grow with the number of servers seen.
    """

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}

    @contextmanager
    def hold(self, address: str, deadline: Deadline) -> Iterator[None]:
        """Holds one slot for ``address``; raises ``DeadlineExceeded`` if none frees in time."""
        self._acquire(address, deadline)
        try:
            yield
        finally:
            self._release(address)

    def in_use(self, address: str) -> int:
        with self._lock:
            slot = self._slots.get(address)
            return slot.busy if slot else 0

    def _acquire(self, address: str, deadline: Deadline) -> None:
        with self._lock:
            slot = self._slots.get(address)
            if slot is None:
                slot = self._slots[address] = _Slot(threading.Condition(self._lock))
            slot.waiting += 1
            try:
                while slot.busy >= self.per_host:
                    if deadline.expired:
                        raise DeadlineExceeded(
                            f"the run's deadline passed while waiting for a free connection "
                            f"to {address} (at most {self.per_host} at a time)"
                        )
                    slot.free.wait(deadline.wait_timeout())
            except BaseException:
                slot.waiting -= 1
                if slot.busy < self.per_host:
                    slot.free.notify()  # a wake-up this waiter took must not be lost
                self._forget_if_idle(address, slot)
                raise
            slot.waiting -= 1
            slot.busy += 1

    def _release(self, address: str) -> None:
        with self._lock:
            slot = self._slots[address]
            slot.busy -= 1
            slot.free.notify()
            self._forget_if_idle(address, slot)

    def _forget_if_idle(self, address: str, slot: _Slot) -> None:
        if slot.busy == 0 and slot.waiting == 0:
            del self._slots[address]


class _Slot:
    __slots__ = ("busy", "free", "waiting")

    def __init__(self, free: threading.Condition) -> None:
        self.free = free
        self.busy = 0
        self.waiting = 0
