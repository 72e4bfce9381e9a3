"""One batch from start to end: checks, JSON lines out, progress, signals, the summary.

The CLI's ``batch`` command parses its options and opens the file; this
module runs the batch the way a long job on a terminal must behave: Ctrl-C
and SIGTERM stop it between lines (never in the middle of one), a reader
that goes away (``| head``) ends it quietly, the checks still running are
cancelled, and the exit status is the worst status of all domains (3 when
stopped or when nothing was checked).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from msgspec import Struct

from . import batch, workers
from .limits import HostLimiter
from .model import Status

if TYPE_CHECKING:
    from .runner import CheckRequest

EXIT_STOPPED = int(Status.UNKNOWN)


class BatchSettings(Struct, frozen=True):
    concurrency: int = 20
    per_host: int = 2
    share_probes: bool = True
    processes: int | None = None  # None: one per CPU, at most per_host
    quiet: bool = False  # no summary at the end
    lang: str = "en"  # of the summary, the progress line and complaints


def run(
    lines: IO[bytes],
    template: CheckRequest,
    settings: BatchSettings,
    *,
    out: IO[bytes],
    err: IO[str],
    progress: batch.Progress | None = None,
) -> int:
    """Checks every domain of ``lines``, writes one JSON line each to ``out``; the exit status."""
    from .runner import ProbeCache

    stop, interrupted = threading.Event(), threading.Event()
    summary = batch.Summary()
    broken_pipe = False
    entries = batch.read_entries(lines)
    processes = workers.worker_count(
        settings.processes, concurrency=settings.concurrency, per_host=settings.per_host
    )
    with _stop_on_signals(stop, interrupted):
        if processes > 1:
            results = workers.run_in_processes(
                entries,
                template,
                processes=processes,
                concurrency=settings.concurrency,
                per_host=settings.per_host,
                share_probes=settings.share_probes,
                stop=stop,
            )
        else:
            results = batch.run_batch(
                entries,
                template,
                concurrency=settings.concurrency,
                host_limiter=HostLimiter(settings.per_host) if settings.per_host else None,
                probe_cache=ProbeCache() if settings.share_probes else None,
                stop=stop,
            )
        try:
            batch.write_jsonl(
                results,
                out,
                summary,
                complain=lambda text: print(text, file=err, flush=True),
                progress=progress,
                lang=settings.lang,
            )
        except BrokenPipeError:
            broken_pipe = True  # the reader went away (| head): stop quietly
            stop.set()
        finally:
            results.close()  # cancels the checks still running and ends the worker processes
    if progress is not None:
        progress.close()
    if not settings.quiet and not broken_pipe:
        err.write(summary.render(interrupted=interrupted.is_set(), lang=settings.lang))
        err.flush()
    if broken_pipe:
        _silence(out)
    if broken_pipe or interrupted.is_set():
        return EXIT_STOPPED
    return int(summary.worst)


@contextmanager
def _stop_on_signals(*events: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``events`` instead of raising mid-write, while the batch runs."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def handler(signum: int, frame: object) -> None:
        for event in events:
            event.set()

    previous = {
        signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _silence(out: IO[bytes]) -> None:
    """Points ``out``'s descriptor at /dev/null after its reader went away.

    Python flushes stdout once more on the way out; into the closed pipe that
    would print "Exception ignored ... BrokenPipeError" (see the signal
    module's documentation, "Note on SIGPIPE").
    """
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    except (OSError, ValueError, AttributeError):
        pass
