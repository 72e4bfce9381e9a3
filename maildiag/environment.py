"""What a command runs in: its streams, its terminal and its environment variables.

``cli.main`` takes one, so tests (and programs embedding maildiag) run the
real command line in-process with their own streams and variables instead of
patching ``sys`` and ``os.environ``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

DEFAULT_WIDTH = 80  # when the output is not a terminal and $COLUMNS is not set


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def is_terminal(self, stream: TextIO) -> bool:
        isatty = getattr(stream, "isatty", None)
        return bool(isatty is not None and isatty())

    def width(self) -> int:
        """$COLUMNS, else the terminal's width, else 80 (not a terminal)."""
        columns = self.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        if self.is_terminal(self.stdout):
            try:
                return os.get_terminal_size(self.stdout.fileno()).columns
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
