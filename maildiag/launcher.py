"""The process entry point: answers ``--version`` before importing anything else.

Monitoring systems and shells run ``maildiag --version`` to learn what is
installed; importing click alone costs tens of milliseconds, so that one
question is answered from here and everything else goes to ``maildiag.cli``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

# The moment the process began its work, before the imports: a check's
# --deadline is wall-clock time from here, not from after loading click,
# dnspython and cryptography (which takes a noticeable share on a busy machine).
STARTED = time.monotonic()

from . import __version__  # noqa: E402 - after the clock, on purpose

# New objects between two collections of the young generation (CPython: 700).
YOUNG_GENERATION_THRESHOLD = 50_000


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        sys.stdout.write(f"maildiag, version {__version__}\n")
        return 0
    import gc

    # Loading the CLI, dnspython and cryptography creates ~40,000 objects
    # that live as long as the process. With the young generation collected
    # every 700 new objects, a check ran the collector ~60 times over them:
    # ~9 ms, a twentieth of its CPU. Collected every 50,000, a check needs
    # about one collection; the older generations keep their thresholds, so
    # the long-running commands (batch, serve) still collect their garbage.
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD)

    from . import dnspython_features

    dnspython_features.prepare()  # before the CLI's first import of dnspython
    from .cli import main as cli_main

    try:
        return cli_main(args, started=STARTED)
    finally:
        # The process ends here, and what it loaded (modules, classes, the
        # catalogue) ends with it. Frozen, those objects are skipped by the
        # interpreter's last garbage collection at exit instead of being
        # walked once more: a tenth of a quick check's run time (make bench, (b3)).
        gc.freeze()
