"""Checks many domains: a list in, one JSON line per domain out, as each finishes.

The input format, one domain per line::

    # customers of the Hamburg cluster
    kunde.test
    müller.test                                  # Unicode is fine
    shop.test  imap=mail.provider.test  smtp=smtp.provider.test

After the domain, ``imap=HOST``, ``pop3=HOST`` and ``smtp=HOST`` replace
discovery for that protocol, as ``--imap-host`` and friends do for the whole
batch. ``#`` starts a comment (at the start of a line or after a space);
blank lines are ignored. A line that does not follow this format is reported
with its number and skipped; a line with a domain that cannot be checked
(an invalid name, an internal error) still gets its JSON line, with status
UNKNOWN and an ``error`` field.

Memory stays flat however long the list: lines are read as workers become
free, and nothing is kept of a finished domain but its status and finding
codes for the summary.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Generator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field
from msgspec.structs import replace

from . import __version__
from .model import Diagnosis, Protocol, Severity, Status
from .protocols.registry import BY_KEY

if TYPE_CHECKING:
    from .deadline import Deadline
    from .limits import HostLimiter
    from .runner import CheckRequest, ProbeCache
    from .tasks import ThreadPool

__all__ = [
    "HOST_KEYS",
    "BadLine",
    "BatchEntry",
    "BatchResult",
    "Summary",
    "check_entry",
    "failed_result",
    "parse_line",
    "read_entries",
    "run_batch",
    "worst_status",
]

HOST_KEYS: Mapping[str, Protocol] = BY_KEY  # imap=HOST, pop3=HOST, smtp=HOST
MAX_LINE = 2048  # characters; a domain with three host names fits many times over

# The order in which statuses make a batch's exit code: a domain that is down
# matters more than one that could not be judged (as Icinga ranks states).
_STATUS_WEIGHT = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


class BatchEntry(Struct, frozen=True):
    """One domain to check, from line ``line`` of the input."""

    line: int
    domain: str
    hosts: Mapping[Protocol, str] = field(default_factory=dict)


class BadLine(Struct, frozen=True):
    """A line that does not follow the format; it is reported and skipped."""

    line: int
    text: str
    reason: str


class BatchResult(Struct, frozen=True):
    entry: BatchEntry
    status: Status
    codes: tuple[str, ...]  # distinct codes of the warning and critical findings
    json_line: str  # one JSON object, no newline
    error: str | None = None


def worst_status(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_STATUS_WEIGHT.__getitem__, default=Status.OK)


# --------------------------------------------------------------------------
# Reading


def _strip_comment(text: str) -> str:
    if text.lstrip().startswith("#"):
        return ""
    for index, char in enumerate(text):
        if char == "#" and index and text[index - 1].isspace():
            return text[:index]
    return text


def parse_line(text: str, number: int) -> BatchEntry | BadLine | None:
    """A line of the batch file as an entry, a complaint, or None (blank, comment)."""
    from .dns import InvalidDomain, to_ascii

    if len(text) > MAX_LINE:
        return BadLine(number, text[:80] + "...", f"line longer than {MAX_LINE} characters")
    content = _strip_comment(text).strip()
    if not content:
        return None
    domain, *options = content.split()
    if "=" in domain:
        return BadLine(number, text, "the line must start with a domain, not KEY=HOST")
    hosts: dict[Protocol, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            return BadLine(
                number,
                text,
                f"{option!r}: after the domain only imap=HOST, pop3=HOST or smtp=HOST may follow",
            )
        protocol = HOST_KEYS.get(key.lower())
        if protocol is None:
            return BadLine(number, text, f"unknown key {key!r}; use {', '.join(HOST_KEYS)}")
        if protocol in hosts:
            return BadLine(number, text, f"{key} is given twice")
        try:
            hosts[protocol] = to_ascii(value)
        except InvalidDomain as exc:
            return BadLine(number, text, f"{key}: {exc}")
    return BatchEntry(number, domain, hosts)


def read_entries(lines: Iterable[bytes | str]) -> Iterator[BatchEntry | BadLine]:
    """Entries and complaints, lazily, in input order (line numbers start at 1)."""
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield BadLine(number, raw[:80].decode("utf-8", "replace"), "not valid UTF-8")
                continue
        else:
            text = raw
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte order mark from Windows editors
        parsed = parse_line(text.rstrip("\r\n"), number)
        if parsed is not None:
            yield parsed


def count_entries(lines: Iterable[bytes | str]) -> int:
    """How many lines name a domain (for a progress bar's total); cheap, no validation."""
    total = 0
    for raw in lines:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        content = _strip_comment(text).strip()
        if content and "=" not in content.split()[0]:
            total += 1
    return total


# --------------------------------------------------------------------------
# Checking


def _dumps(data: Mapping[str, Any]) -> str:
    # JSON Lines: one object per line, UTF-8; json.dumps escapes any newline.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def error_json(domain: str, message: str, kind: str, lang: str = "en") -> dict[str, Any]:
    """The line for a domain that could not be checked: the report's shape, with ``error``."""
    from .report.json import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "lang": lang,
        "tool": {"name": "maildiag", "version": __version__},
        "domain": domain,
        "domain_ascii": "",
        "user": None,
        "started_at": datetime.now(UTC).isoformat(),
        "duration_s": 0.0,
        "status": Status.UNKNOWN.name,
        "exit_code": int(Status.UNKNOWN),
        "summary": {severity.value: 0 for severity in Severity},
        "discovery": {
            "domain_exists": False,
            "mx": [],
            "srv": [],
            "autoconfig": [],
            "problems": [],
            "duration_s": 0.0,
        },
        "endpoints": [],
        "findings": [],
        "causes": [],
        "typed": [],
        "sync": None,
        "error": message,
        "error_kind": kind,
    }


def _unknown_reason(diagnosis: Diagnosis) -> tuple[str, str]:
    # A domain that does not exist is CRITICAL (a checked answer), never
    # UNKNOWN, so the only "could not judge" left after a diagnosis is DNS.
    titles = [
        f.title
        for f in diagnosis.findings
        if f.endpoint is None and f.severity.rank >= Severity.WARNING.rank
    ]
    kind = "dns_failed"
    unique = list(dict.fromkeys(titles))
    return "; ".join(unique) or "nothing could be checked", kind


def check_entry(
    entry: BatchEntry,
    template: CheckRequest,
    host_limiter: HostLimiter | None = None,
    probe_cache: ProbeCache | None = None,
    within: Deadline | None = None,
    threads: ThreadPool | None = None,
) -> BatchResult:
    """Checks one domain; never raises (a failure becomes an UNKNOWN line).

    ``within``: the batch's ``Deadline``; cancelling it ends the check at once.
    ``threads``: the batch's pool for the check's lookups and probes.
    """
    from .discovery import Overrides
    from .dns import InvalidDomain
    from .report.json import diagnosis_json
    from .runner import diagnose

    try:
        request = template
        if entry.hosts:
            request = replace(
                template,
                overrides=Overrides(
                    hosts={**template.overrides.hosts, **entry.hosts},
                    ports=template.overrides.ports,
                ),
            )
        request = replace(request, domain=entry.domain)
        diagnosis = diagnose(
            request,
            host_limiter=host_limiter,
            probe_cache=probe_cache,
            within=within,
            threads=threads,
        )
    except InvalidDomain as exc:
        return failed_result(entry, str(exc), "invalid_domain")
    except Exception as exc:  # noqa: BLE001 - one broken domain must not end the batch
        return failed_result(entry, f"maildiag internal error: {exc!r}", "internal_error")

    data = diagnosis_json(diagnosis)
    error = None
    if diagnosis.status is Status.UNKNOWN:
        error, kind = _unknown_reason(diagnosis)
        data.update(error=error, error_kind=kind)
    codes = tuple(
        dict.fromkeys(
            f.code for f in diagnosis.findings if f.severity.rank >= Severity.WARNING.rank
        )
    )
    return BatchResult(entry, diagnosis.status, codes, _dumps(data), error)


def failed_result(entry: BatchEntry, message: str, kind: str) -> BatchResult:
    """The UNKNOWN result of a domain that could not be checked (``kind`` as in ``error_json``)."""
    return BatchResult(
        entry, Status.UNKNOWN, (), _dumps(error_json(entry.domain, message, kind)), message
    )


_DONE = object()
_CLOSED = object()


class _Channel:
    """Results from the check threads to the consumer; bounded, and ``close`` ends every wait.

    Bounded, so a stalled consumer (a full pipe) stalls the checks too
    instead of piling up results in memory.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[object] = deque()
        self._closed = False
        lock = threading.Lock()
        self._not_full = threading.Condition(lock)
        self._not_empty = threading.Condition(lock)

    def put(self, item: object) -> None:
        """Hands ``item`` over; once closed, drops it."""
        with self._not_full:
            while len(self._items) >= self._size and not self._closed:
                self._not_full.wait()
            if self._closed:
                return
            self._items.append(item)
            self._not_empty.notify()

    def get(self) -> object:
        """The next item, waiting for one; ``_CLOSED`` once closed."""
        with self._not_empty:
            while not self._items and not self._closed:
                self._not_empty.wait()
            if self._closed:
                return _CLOSED
            self._not_full.notify()
            return self._items.popleft()

    def close(self) -> None:
        with self._not_empty:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()


def run_batch(
    items: Iterable[BatchEntry | BadLine],
    template: CheckRequest,
    *,
    concurrency: int = 20,
    host_limiter: HostLimiter | None = None,
    probe_cache: ProbeCache | None = None,
    stop: threading.Event | None = None,
) -> Generator[BatchResult | BadLine, None, None]:
    """Checks the entries, ``concurrency`` at a time; yields each result as it finishes.

    ``host_limiter`` and ``probe_cache`` are shared by all checks (see
    ``diagnose``). ``BadLine`` items are passed through, in input order among themselves.
    Workers pull the next line themselves, so a slow input (a pipe)
    never holds back results that are ready. Setting ``stop`` (or closing the
    generator) ends the batch without starting another domain; the checks
    still running are cancelled, and end at once.
    """
    from .deadline import Deadline
    from .tasks import ThreadPool

    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stop = stop or threading.Event()
    batch = Deadline.unlimited()
    threads = ThreadPool("check")
    source = iter(items)
    source_lock = threading.Lock()
    results = _Channel(2 * concurrency)

    def work() -> None:
        try:
            while not stop.is_set():
                with source_lock:
                    item = next(source, None)
                    while isinstance(item, BadLine):
                        # Reported while holding the input, so complaints keep their order.
                        results.put(item)
                        item = next(source, None)
                if item is None:
                    return
                results.put(check_entry(item, template, host_limiter, probe_cache, batch, threads))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            results.put(exc)
        finally:
            results.put(_DONE)

    def end_on_stop() -> None:
        # ``stop`` is set by a signal handler, another thread or the finally below.
        stop.wait()
        batch.cancel()
        results.close()

    watcher = threading.Thread(target=end_on_stop, name="batch-stop", daemon=True)
    watcher.start()
    workers = [
        threading.Thread(target=work, name=f"batch-{n}", daemon=True) for n in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            item = results.get()
            if item is _CLOSED:
                return
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
                if stop.is_set():
                    return
    finally:
        stop.set()
        watcher.join()
        # The checks still running were cancelled: their lookups and probes end at once.
        threads.close()


# --------------------------------------------------------------------------
# Summary


# The texts of the summary and the progress line (context "batch").
TEXTS = {
    "head": "maildiag batch: {domains} domains checked in {seconds} s",
    "interrupted": " (interrupted)",
    "bad_lines": "; {count} malformed line(s) skipped",
    "Status": "Status",
    "Domains": "Domains",
    "Most common findings": "Most common findings",
    "domains": "{count} domains",
    "status/OK": "ok",
    "status/WARNING": "warning",
    "status/CRITICAL": "critical",
    "status/UNKNOWN": "unknown",
}


def _words(lang: str) -> Any:
    from .report.vocabulary import Words

    return Words(lang, "batch", TEXTS)


class Summary:
    """Counts per status and per finding code; constant memory whatever the batch size."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.statuses: Counter[Status] = Counter()
        self.codes: Counter[str] = Counter()
        self.bad_lines = 0
        self.errors = 0

    @property
    def domains(self) -> int:
        return sum(self.statuses.values())

    def add(self, item: BatchResult | BadLine) -> None:
        if isinstance(item, BadLine):
            self.bad_lines += 1
            return
        self.statuses[item.status] += 1
        self.codes.update(item.codes)
        if item.error is not None:
            self.errors += 1

    @property
    def worst(self) -> Status:
        if not self.statuses:
            return Status.UNKNOWN  # nothing was checked
        return worst_status(self.statuses)

    def render(self, top: int = 10, interrupted: bool = False, lang: str = "en") -> str:
        from tabulate import tabulate

        words = _words(lang)
        seconds = time.monotonic() - self.started
        head = words("head", domains=self.domains, seconds=f"{seconds:.1f}")
        if interrupted:
            head += words("interrupted")
        if self.bad_lines:
            head += words("bad_lines", count=self.bad_lines)
        rows = [[status.name, self.statuses.get(status, 0)] for status in Status]
        headers = [words("Status"), words("Domains")]
        parts = [head, "", tabulate(rows, headers=headers, tablefmt="simple")]
        if self.codes:
            common = self.codes.most_common(top)
            headers = [words("Most common findings"), words("Domains")]
            parts += ["", tabulate(common, headers=headers, tablefmt="simple")]
        return "\n".join(parts) + "\n"


class Progress:
    """A one-line progress display for a terminal (the caller checks ``isatty``).

    The line never wraps: the bar shrinks with the terminal, and what still
    does not fit is cut at the terminal's width (a wrapped line would leave
    a trail of old lines, as ``\r`` only returns to the start of the last one).
    """

    BAR = 30  # the bar's width on a terminal wide enough for everything

    def __init__(self, stream: Any, total: int | None, lang: str = "en", width: int = 80) -> None:
        self.words = _words(lang)
        self.width = max(width, 20)
        self.stream = stream
        self.total = total or None
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, summary: Summary, force: bool = False) -> None:
        self.done = summary.domains
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        counts = " ".join(
            f"{self.words(f'status/{s.name}')} {summary.statuses.get(s, 0)}" for s in Status
        )
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            numbers = (
                f" {self.done}/{self.total} {rate:.1f}/s "
                f"eta {int(eta) // 60}:{int(eta) % 60:02d}  {counts}"
            )
            # The bar gives way first, down to 10 characters.
            size = max(10, min(self.BAR, self.width - 1 - len(numbers) - 2))
            filled = int(size * min(self.done / self.total, 1.0))
            line = f"[{'#' * filled}{'-' * (size - filled)}]{numbers}"
        else:
            line = f"{self.words('domains', count=self.done)} {rate:.1f}/s  {counts}"
        self.stream.write("\r\x1b[K" + line[: self.width - 1])
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def write_jsonl(
    results: Iterable[BatchResult | BadLine],
    out: Any,
    summary: Summary,
    *,
    complain: Any,
    progress: Progress | None = None,
    lang: str = "en",
) -> None:
    """Writes each result as one flushed line of ``out`` (binary) as soon as it arrives.

    Malformed lines go to ``complain(text)``. A line is written with one
    ``write`` and flushed at once, so a reader (or an interrupted run) only
    ever sees whole lines.
    """
    for item in results:
        summary.add(item)
        if isinstance(item, BadLine):
            if progress is not None:
                progress.close()
            from .messages import render, translate

            reason = translate(item.reason, lang)
            line = render(
                "line {line}: {reason}: {text}",
                lang,
                line=item.line,
                reason=reason,
                text=item.text.strip(),
            )
            complain(f"maildiag: {line}")
        else:
            out.write(item.json_line.encode("utf-8") + b"\n")
            out.flush()
        if progress is not None:
            progress.update(summary)
