"""maildiag: explains why a mailbox does not work.

Library use::

    from maildiag import CheckRequest, diagnose
    diagnosis = diagnose(CheckRequest("example.org"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["CheckRequest", "diagnose", "__version__"]

if TYPE_CHECKING:
    from .runner import CheckRequest, diagnose


def __getattr__(name: str) -> object:
    # Imported on first use so that `maildiag --version` does not load dnspython.
    if name in ("CheckRequest", "diagnose"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
