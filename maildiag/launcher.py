"""The process entry point: answers ``--version`` before importing anything else.

Monitoring systems and shells run ``maildiag --version`` to learn what is
installed; importing click alone costs tens of milliseconds, so that one
question is answered from here and everything else goes to ``maildiag.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        sys.stdout.write(f"maildiag, version {__version__}\n")
        return 0
    from .cli import main as cli_main

    return cli_main(args)
