"""Threads for the lookups and probes of a check, each group ending with its step.

A check runs its DNS lookups, probes and side checks on threads. On its own
it starts them and, leaving the step, waits for every one to end. The
checks of a batch share one ``ThreadPool`` per process instead: a thread
start costs about as much CPU as parsing a DNS answer, and a check needs
about fifteen, so a pool's idle threads take the tasks.
Either way a ``TaskGroup`` waits for every task it started before its
block is left, so no task outlives its check.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["TaskGroup", "ThreadPool"]

_R = TypeVar("_R")


class ThreadPool:
    """Threads kept for the checks of a batch; ``close`` waits for them.

    A thread is started only when none is idle, so a task never waits in a
    queue behind others (a probe waits for the side checks it started, and
    they must not wait for a free thread).
    """

    def __init__(self, name: str = "task") -> None:
        self._executor = ThreadPoolExecutor(max_workers=sys.maxsize, thread_name_prefix=name)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class TaskGroup:
    """The tasks of one step; leaving the block waits for all of them.

    With a shared ``pool`` the tasks run on its threads, else on ``size``
    threads of the group's own. Once the block is left the group takes no
    more tasks: ``submit`` raises RuntimeError, as a shut-down executor does.
    """

    def __init__(self, pool: ThreadPool | None, *, size: int, name: str) -> None:
        self._own: ThreadPoolExecutor | None = None
        if pool is None:
            self._own = self._executor = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix=name
            )
        else:
            self._executor = pool._executor
        self._futures: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._open = True

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        with self._lock:
            if not self._open:
                raise RuntimeError("the step has ended: it takes no more tasks")
            future = self._executor.submit(fn, *args, **kwargs)
            if self._own is None:
                self._futures.append(future)
            return future

    def close(self) -> None:
        """Takes no more tasks and waits for those started (each bounded by its deadline)."""
        with self._lock:
            self._open = False
        if self._own is not None:
            self._own.shutdown(wait=True)
        else:
            wait(self._futures)

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
