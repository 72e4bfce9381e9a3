"""A batch spread over worker processes, so that it can use more than one core.

Once the network is fast, a check is mostly CPU: TLS handshakes, certificate
and DNS parsing. One Python process runs Python on one core at a time, so a
batch in one process stops getting faster at one core's worth of checks,
however high its concurrency. ``run_in_processes`` gives each of N worker
processes a share of the concurrency, feeds them entries and yields their
results as they arrive: the same contract as ``batch.run_batch``.

The per-host cap stays a cap for the whole batch: it is divided between the
workers (a cap of 2 and two workers: one connection each), so together they
never open more than ``per_host`` connections to one address. That is also
why there are never more workers than the cap allows.

Workers ignore Ctrl-C; the parent decides when a batch stops and then ends
them. A worker that dies takes only its unfinished domains with it: they
get an UNKNOWN line, like any domain that could not be checked.

Nothing polls: the parent sleeps in ``multiprocessing.connection.wait`` on
the workers' result pipes and a wake-up socket that the input reader and
``stop`` write to; a worker sleeps in ``recv`` on its task pipe.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import socket
import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING

from msgspec import Struct, field
from msgspec.structs import replace

from .batch import BadLine, BatchEntry, BatchResult, check_entry, failed_result

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .runner import CheckRequest

__all__ = ["run_in_processes", "split", "usable_cpus", "worker_count"]

# How long a worker that was told to stop may take before it is killed.
_STOP_GRACE_SECONDS = 2.0
# Entries read ahead of the workers, at most.
_READ_AHEAD = 256


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(requested: int | None, *, concurrency: int, per_host: int) -> int:
    """``requested`` workers (None: one per usable CPU), as far as the shares allow.

    Every worker needs at least one unit of concurrency and, when connections
    per host are capped (``per_host`` > 0), at least one connection of the cap.
    """
    count = usable_cpus() if requested is None else requested
    count = min(count, concurrency)
    if per_host:
        count = min(count, per_host)
    return max(count, 1)


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that differ by at most one and add up to it."""
    base, extra = divmod(total, parts)
    return [base + (1 if n < extra else 0) for n in range(parts)]


def run_in_processes(
    items: Iterable[BatchEntry | BadLine],
    template: CheckRequest,
    *,
    processes: int,
    concurrency: int,
    per_host: int,
    share_probes: bool = True,
    stop: threading.Event | None = None,
) -> Generator[BatchResult | BadLine, None, None]:
    """Checks the entries in ``processes`` workers; yields each result as it finishes.

    ``concurrency`` and ``per_host`` (0: no cap) are totals for the whole
    batch, divided between the workers. With ``share_probes`` each worker
    reuses its probes without a login (``runner.ProbeCache``). ``BadLine`` items are passed
    through in input order. Setting ``stop`` ends the batch without starting
    another domain; the workers are ended (their checks with them).
    Close the iterator (or exhaust it) to end the workers.
    """
    if not 1 <= processes <= concurrency or (per_host and processes > per_host):
        raise ValueError(
            f"{processes} processes cannot share concurrency {concurrency} "
            f"and {per_host} connections per host"
        )
    stop = stop or threading.Event()
    caps = split(per_host, processes) if per_host else [0] * processes
    waker = _Waker()
    inbox = _Inbox(items, stop, waker)

    def wake_on_stop() -> None:
        # ``stop`` is set by a signal handler or another thread; this wakes the waits.
        stop.wait()
        inbox.wake()
        waker.wake()

    watcher = threading.Thread(target=wake_on_stop, name="batch-stop", daemon=True)
    watcher.start()
    workers: list[_Worker] = []
    try:
        with _sigint_ignored(), _few_malloc_arenas():  # both inherited by the workers
            for share, cap in zip(split(concurrency, processes), caps, strict=True):
                workers.append(_Worker.start(template, share, cap, share_probes))
        inbox.start()
        yield from _dispatch(workers, inbox, stop, waker)
    finally:
        stop.set()
        watcher.join()
        for worker in workers:
            worker.end()
        waker.close()


def _dispatch(
    workers: list[_Worker], inbox: _Inbox, stop: threading.Event, waker: _Waker
) -> Iterator[BatchResult | BadLine]:
    by_pipe = {worker.results: worker for worker in workers}
    while not stop.is_set():
        for item in inbox.complaints():
            yield item
        for worker in sorted(workers, key=lambda w: len(w.pending)):
            while worker.running and not worker.finishing and worker.has_room():
                entry = inbox.next_entry()
                if entry is None:
                    break
                worker.send(entry)
        if inbox.exhausted:
            for item in inbox.complaints():
                yield item
            for worker in workers:
                worker.finish()
        running = [worker.results for worker in workers if worker.running]
        if not running:
            yield from _orphans(inbox, stop, waker)
            return
        for ready in wait([*running, waker.readable]):
            if ready is waker.readable:
                waker.clear()  # new input, or stop: looked at above
            else:
                yield from by_pipe[ready].receive()  # type: ignore[index]


def _orphans(
    inbox: _Inbox, stop: threading.Event, waker: _Waker
) -> Iterator[BatchResult | BadLine]:
    """What is left of the input when every worker has died: reported, not dropped."""
    while not stop.is_set():
        item = inbox.next_item()
        if item is None:
            if inbox.exhausted:
                return
            wait([waker.readable])
            waker.clear()
            continue
        if isinstance(item, BadLine):
            yield item
        else:
            yield failed_result(
                item,
                "maildiag internal error: no worker process is left to check it",
                "internal_error",
            )


class _Waker:
    """A socket pair that wakes ``multiprocessing.connection.wait`` from any thread."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    @property
    def readable(self) -> socket.socket:
        """What to ``wait`` on: readable once woken, until ``clear``."""
        return self._reader

    def wake(self) -> None:
        try:
            self._writer.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed (nobody waits)

    def clear(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass  # nothing more to read

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


class _Inbox:
    """Reads the input in a thread, so a slow pipe never holds back finished results.

    Every entry it reads ahead wakes the dispatcher through ``waker``.
    """

    def __init__(
        self, items: Iterable[BatchEntry | BadLine], stop: threading.Event, waker: _Waker
    ) -> None:
        self._source = iter(items)
        self._stop = stop
        self._waker = waker
        self._cond = threading.Condition()
        # Bounded: the input is read only a little ahead of the workers.
        self._items: deque[BatchEntry | BadLine] = deque()
        self._read_all = False
        self._complaints: list[BadLine] = []
        self._thread = threading.Thread(target=self._read, name="batch-input", daemon=True)
        self.exhausted = False

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._source:
                with self._cond:
                    while len(self._items) >= _READ_AHEAD and not self._stop.is_set():
                        self._cond.wait()
                    if self._stop.is_set():
                        return
                    self._items.append(item)
                self._waker.wake()
        finally:
            with self._cond:
                self._read_all = True
            self._waker.wake()

    def wake(self) -> None:
        """Lets a reader waiting for room see ``stop``."""
        with self._cond:
            self._cond.notify_all()

    def next_entry(self) -> BatchEntry | None:
        """The next entry if one is ready (complaints met on the way are kept)."""
        while True:
            item = self.next_item()
            if not isinstance(item, BadLine):
                return item
            self._complaints.append(item)

    def next_item(self) -> BatchEntry | BadLine | None:
        """The next entry or complaint; None when none is ready (``exhausted``: ever again)."""
        with self._cond:
            if self._items:
                self._cond.notify()  # room for the reader
                return self._items.popleft()
            if self._read_all:
                self.exhausted = True
            return None

    def complaints(self) -> list[BadLine]:
        found, self._complaints = self._complaints, []
        return found


class _Worker(Struct):
    process: BaseProcess
    tasks: Connection  # entries to the worker; None: no more
    results: Connection  # results from the worker; None: all sent
    window: int  # entries handed over but not finished, at most
    pending: dict[int, BatchEntry] = field(default_factory=dict)
    running: bool = True
    finishing: bool = False
    _next_id: int = 0

    @classmethod
    def start(
        cls, template: CheckRequest, concurrency: int, per_host: int, share_probes: bool
    ) -> _Worker:
        context = multiprocessing.get_context("spawn")  # no inherited threads, locks or buffers
        task_reader, task_writer = context.Pipe(duplex=False)
        result_reader, result_writer = context.Pipe(duplex=False)
        # The password never travels in the pickled template (a Secret refuses
        # pickling): it goes once, as the first message on the worker's own
        # pipe, and lives on only inside the worker's Credentials.
        credentials = template.credentials
        process = context.Process(
            target=_work,
            args=(
                task_reader,
                result_writer,
                replace(template, credentials=None),
                concurrency,
                per_host,
                share_probes,
                credentials is not None,
            ),
            name="maildiag-batch-worker",
            daemon=True,
        )
        process.start()
        task_reader.close()
        result_writer.close()  # so that a worker's death reads as end of file here
        if credentials is not None:
            try:
                task_writer.send((credentials.user, credentials.password.reveal()))
            except OSError:
                pass  # it died at once: receive() reports that
        # A little more than it can run at once, so it never waits for the parent.
        return cls(process, task_writer, result_reader, window=concurrency + concurrency // 4 + 1)

    def has_room(self) -> bool:
        return len(self.pending) < self.window

    def send(self, entry: BatchEntry) -> None:
        self._next_id += 1
        self.pending[self._next_id] = entry
        try:
            self.tasks.send((self._next_id, entry))
        except OSError:
            pass  # it died: receive() reports its pending entries

    def finish(self) -> None:
        if self.running and not self.finishing:
            self.finishing = True
            try:
                self.tasks.send(None)
            except OSError:
                pass

    def receive(self) -> Iterator[BatchResult]:
        try:
            message = self.results.recv()
        except (EOFError, OSError):
            message = None
            lost = list(self.pending.values())
            self.pending.clear()
            self.running = False
            code = self.process.exitcode
            how = f"exit status {code}" if code is not None else "no exit status yet"
            for entry in lost:
                yield failed_result(
                    entry,
                    f"maildiag internal error: the worker process checking it ended ({how})",
                    "internal_error",
                )
            return
        if message is None:
            self.running = False
            return
        number, result = message
        self.pending.pop(number, None)
        yield result

    def end(self) -> None:
        """Ends the worker: at once if it still has work, else after it said goodbye."""
        if self.running or self.pending:
            self.process.terminate()
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.tasks.close()
        self.results.close()


@contextmanager
def _few_malloc_arenas() -> Iterator[None]:
    """Workers run hundreds of short-lived threads; glibc would give them up to
    8 malloc arenas per core, each keeping freed memory. Two are plenty (a
    value the user set is kept)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        yield
        return
    os.environ["MALLOC_ARENA_MAX"] = "2"
    try:
        yield
    finally:
        del os.environ["MALLOC_ARENA_MAX"]


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _work(
    tasks: Connection,
    results: Connection,
    template: CheckRequest,
    concurrency: int,
    per_host: int,
    share_probes: bool,
    credentials_follow: bool = False,
) -> None:
    """A worker process: checks what arrives on ``tasks``, answers on ``results``.

    With ``credentials_follow`` the first message is the login (user, password).
    """
    from .credentials_input import Credentials, Secret
    from .deadline import Deadline
    from .limits import HostLimiter
    from .runner import ProbeCache
    from .tasks import ThreadPool

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if credentials_follow:
        try:
            user, password = tasks.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        template = replace(template, credentials=Credentials(user, Secret(password)))
        del password
    limiter = HostLimiter(per_host) if per_host else None
    cache = ProbeCache() if share_probes else None
    # Cancelled when the parent is gone: nobody is left to read results, so
    # the checks running end at once (their sockets are shut down).
    batch = Deadline.unlimited()
    send_lock = threading.Lock()

    def answer(number: int, future: Future[BatchResult]) -> None:
        try:
            with send_lock:
                results.send((number, future.result()))
        except OSError:
            batch.cancel()

    # Leaving the blocks waits for every check: the worker exits with no thread left.
    with (
        ThreadPool("task") as threads,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check") as pool,
    ):
        while not batch.cancelled:
            try:
                message = tasks.recv()
            except (EOFError, OSError):
                batch.cancel()
                break
            if message is None:
                break
            number, entry = message
            future = pool.submit(check_entry, entry, template, limiter, cache, batch, threads)
            future.add_done_callback(functools.partial(answer, number))
    if not batch.cancelled:
        with send_lock:
            try:
                results.send(None)
            except OSError:
                pass
