"""Threads for the lookups and probes of a check, each group ending with its step.

A check runs its probes, side checks, autoconfig and address prefetches on
the threads of a ``ThreadPool`` (its DNS questions are asked from one
thread, ``dns.Lookups``): its own, closed when the check returns, or, for
the checks of a batch, one per process. A thread start costs about as much
CPU as parsing a DNS answer, and a check has about fifteen tasks, so idle
threads take them. A ``TaskGroup`` waits for every task it started before
its block is left, so no task outlives its step; without a pool it starts
threads of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["TaskGroup", "ThreadPool"]

_R = TypeVar("_R")


class ThreadPool:
    """Threads kept for one check, or for the checks of a batch; ``close`` waits for them.

    A thread is started only when none is idle, so a task never waits in a
    queue behind others (a probe waits for the side checks it started, and
    they must not wait for a free thread). A thread ends after
    ``tasks_per_thread`` tasks and a new one takes its place when needed:
    glibc gives every thread a cache of freed memory, and a pool whose
    hundreds of threads lived for the whole batch held more of it with
    every domain (a batch process grew by ~8 MB per 500 domains). After 8
    tasks a batch uses what it did with a thread per task (3,000 domains
    without shared probes: 168 MB PSS, 170 MB before the pool), and a
    check starts about 5 threads instead of 15 (1,040 thread starts for 200
    domains, 2,928 before).
    """

    def __init__(self, name: str = "task", tasks_per_thread: int = 8) -> None:
        if tasks_per_thread < 1:
            raise ValueError("tasks_per_thread must be at least 1")
        self._name = name
        self._tasks_per_thread = tasks_per_thread
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task, less the tasks promised to them
        self._threads: set[threading.Thread] = set()
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        future: Future[_R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed: it takes no more tasks")
            self._queue.put(_Task(future, fn, args, kwargs))
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{self._started}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
        return future

    def _work(self) -> None:
        for done in range(1, self._tasks_per_thread + 1):
            task = self._queue.get()
            if task is None:
                break  # closed
            # The last task: the next one that finds no idle thread starts one.
            retiring = done == self._tasks_per_thread
            task.run(then=None if retiring else self._become_idle)
            del task
            if retiring:
                break
        with self._lock:
            self._threads.discard(threading.current_thread())

    def _become_idle(self) -> None:
        with self._lock:
            self._idle += 1

    def close(self) -> None:
        """Takes no more tasks, lets the running ones end and waits for every thread."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Task:
    __slots__ = ("future", "fn", "args", "kwargs")

    def __init__(
        self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self, then: Callable[[], None] | None) -> None:
        """Runs the call and settles its future; ``then`` is called just before that.

        So a thread counts as idle again before whoever waits for the
        result submits the next task, which then needs no new thread.
        """
        future = self.future
        if not future.set_running_or_notify_cancel():
            if then is not None:
                then()
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to whoever waits for the future
            if then is not None:
                then()
            # This frame stays in the error's traceback: it must not hold the
            # future (which holds the error), or the two make a reference cycle.
            del self
            future.set_exception(exc)
            del future
        else:
            if then is not None:
                then()
            future.set_result(result)


class TaskGroup:
    """The tasks of one step; leaving the block waits for all of them.

    With a shared ``pool`` the tasks run on its threads, else on ``size``
    threads of the group's own. Once the block is left the group takes no
    more tasks: ``submit`` raises RuntimeError, as a shut-down executor does.
    """

    def __init__(self, pool: ThreadPool | None, *, size: int, name: str) -> None:
        self._own: ThreadPoolExecutor | None = None
        self._executor: ThreadPoolExecutor | ThreadPool
        if pool is None:
            self._own = self._executor = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix=name
            )
        else:
            self._executor = pool
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
