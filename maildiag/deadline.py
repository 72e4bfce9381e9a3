"""One clock for a whole run: every network step asks it how long it may take."""

from __future__ import annotations

import time


class DeadlineExceeded(TimeoutError):
    """The run's overall deadline has passed."""


class Deadline:
    """The moment a run must be finished by, on the monotonic clock.

    Every blocking step uses ``step_timeout(per_step)``: the per-step timeout,
    cut down to what is left of the whole run, so no step can outlive the run.
    """

    def __init__(self, seconds: float | None, *, start: float | None = None) -> None:
        """``seconds`` from ``start`` (a ``time.monotonic()`` reading; default: now)."""
        begin = time.monotonic() if start is None else start
        self._end = None if seconds is None else begin + seconds

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(None)

    def remaining(self) -> float:
        if self._end is None:
            return float("inf")
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def wait_timeout(self, grace: float = 0.0) -> float | None:
        """How long to wait for another thread: what is left plus ``grace``; None if unlimited."""
        left = self.remaining()
        return None if left == float("inf") else left + grace

    def share(self, fraction: float) -> Deadline:
        """A deadline for one part of the run: ``fraction`` of what is left now.

        Discovery gets a share, so that a slow autoconfig server can never
        leave the probes without time.
        """
        if self._end is None:
            return Deadline(None)
        return Deadline(self.remaining() * fraction)

    def step_timeout(self, per_step: float) -> float:
        left = self.remaining()
        if left <= 0.0:
            raise DeadlineExceeded("the run's deadline has passed")
        return min(per_step, left)
