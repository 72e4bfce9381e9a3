"""One clock for a whole run, and the switch that ends it.

Every network step asks the run's ``Deadline`` how long it may take. When
the run is over, ``cancel()`` shuts down every socket the run still has
open, so a thread blocked in ``recv`` or ``connect`` returns at once instead
of being left behind: a deadline ends work, it does not abandon it.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import Protocol


class DeadlineExceeded(TimeoutError):
    """The run's overall deadline has passed (or the run was cancelled)."""


class Shutdownable(Protocol):
    def shutdown(self, how: int, /) -> None: ...


class Deadline:
    """The moment a run must be finished by, on the monotonic clock.

    Every blocking step uses ``step_timeout(per_step)``: the per-step timeout,
    cut down to what is left of the whole run, so no step can outlive the run.
    Sockets opened for the run are ``track``-ed; ``cancel()`` ends the run
    early or on time: the clock reads zero from then on and every tracked
    socket is shut down.
    """

    def __init__(
        self, seconds: float | None, *, start: float | None = None, within: Deadline | None = None
    ) -> None:
        """``seconds`` from ``start`` (a ``time.monotonic()`` reading; default: now).

        ``within``: a larger run (a batch) whose cancelling cancels this one too.
        """
        begin = time.monotonic() if start is None else start
        self._end = None if seconds is None else begin + seconds
        self._cancelled = False
        self._lock = threading.Lock()
        self._open: set[Shutdownable] = set()
        # Weak, so a batch's scope does not keep every finished check's deadline.
        self._parts: weakref.WeakSet[Deadline] = weakref.WeakSet()
        if within is not None:
            within._adopt(self)

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(None)

    def remaining(self) -> float:
        if self._cancelled:
            return 0.0
        if self._end is None:
            return float("inf")
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait_timeout(self) -> float | None:
        """How long to wait for another thread of the run: what is left; None if unlimited."""
        left = self.remaining()
        return None if left == float("inf") else left

    def share(self, fraction: float) -> Deadline:
        """A deadline for one part of the run: ``fraction`` of what is left now.

        Discovery gets a share, so that a slow autoconfig server can never
        leave the probes without time. Cancelling the run cancels the part.
        """
        return Deadline(None if self._end is None else self.remaining() * fraction, within=self)

    def _adopt(self, part: Deadline) -> None:
        with self._lock:
            if not self._cancelled:
                self._parts.add(part)
                return
        part.cancel()

    def step_timeout(self, per_step: float) -> float:
        left = self.remaining()
        if left <= 0.0:
            raise DeadlineExceeded("the run's deadline has passed")
        return min(per_step, left)

    def track(self, sock: Shutdownable) -> None:
        """Shuts ``sock`` down when the run is cancelled; raises if it already is."""
        with self._lock:
            if self._cancelled:
                raise DeadlineExceeded("the run's deadline has passed")
            self._open.add(sock)

    def untrack(self, sock: Shutdownable) -> None:
        """Call before closing ``sock``, so ``cancel`` never touches a closed socket."""
        with self._lock:
            self._open.discard(sock)

    def cancel(self) -> None:
        """Ends the run now: every tracked socket is shut down, in this run and its parts.

        ``shutdown``, not ``close``: closing a descriptor another thread is
        blocked on does not wake that thread on Linux, and its number could
        be reused under it; shutdown wakes every blocked ``recv``, ``send``
        and ``connect`` with an error or end of stream, and the owner closes.
        """
        with self._lock:
            self._cancelled = True
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected yet or already reset: nothing to wake
            self._open.clear()
            parts = list(self._parts)
            self._parts.clear()
        for part in parts:
            part.cancel()
