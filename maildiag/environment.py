"""What a command runs in: its streams, its terminal and its environment variables.

``cli.main`` takes one, so tests (and programs embedding maildiag) run the
real command line in-process with their own streams and variables instead of
patching ``sys`` and ``os.environ``.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from collections.abc import Mapping
from typing import IO, TextIO, cast

from msgspec import Struct, field

DEFAULT_WIDTH = 80  # when the output is not a terminal and $COLUMNS is not set


class Environment(Struct):
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def is_terminal(self, stream: TextIO) -> bool:
        isatty = getattr(stream, "isatty", None)
        return bool(isatty is not None and isatty())

    def binary_stdin(self) -> IO[bytes]:
        """The bytes under ``stdin`` (batch reads its domain list as bytes)."""
        buffer = getattr(self.stdin, "buffer", None)
        return buffer if buffer is not None else io.BytesIO(self.stdin.read().encode())

    def binary_stdout(self) -> IO[bytes]:
        """The bytes under ``stdout`` (batch writes UTF-8 JSON lines)."""
        buffer = getattr(self.stdout, "buffer", None)
        # Batch only writes and flushes; that is all the stand-in offers.
        return buffer if buffer is not None else cast(IO[bytes], _Utf8Into(self.stdout))

    def width(self, stream: TextIO | None = None) -> int:
        """$COLUMNS, else the width of the terminal ``stream`` (stdout) is on, else 80."""
        columns = self.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        stream = self.stdout if stream is None else stream
        if self.is_terminal(stream):
            try:
                return os.get_terminal_size(stream.fileno()).columns
            except (OSError, ValueError, AttributeError):
                pass
        return DEFAULT_WIDTH

    def colour(self, choice: str = "auto") -> bool:
        """``--color always|never|auto``: auto means a terminal and no NO_COLOR (no-color.org)."""
        if choice == "always":
            return True
        if choice == "never" or "NO_COLOR" in self.environ:
            return False
        return self.is_terminal(self.stdout)

    def language(self, requested: str | None = None) -> str:
        from .i18n import pick_language

        return pick_language(requested, self.environ)


class _Utf8Into(io.RawIOBase):
    """A byte stream that writes into a text stream (an in-process caller's ``StringIO``)."""

    def __init__(self, text: TextIO) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._text.write(self._decoder.decode(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self._text.flush()
