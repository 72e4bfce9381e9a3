"""dnspython's questions about optional packages, answered without importlib.metadata.

While it is imported, dnspython asks ``dns._features.have()`` whether idna
(``dns.name``), the DNS-over-QUIC and the DNS-over-HTTPS packages
(``dns.quic``, ``dns.query``) are installed and recent enough, and answers
through ``importlib.metadata``. Importing that (zipfile, email, csv and
more) costs a check about a third as much as dnspython itself, for three
questions about packages maildiag either depends on (idna) or never uses.

``prepare()`` answers them from the packages themselves and hands the
answers to dnspython's ``dns._features.force`` (meant for where
importlib.metadata is of no help): a package that cannot be imported does
not meet a requirement, and idna says its version itself. A question with
any other answer is left to dnspython. So that ``dns._features``' own
``import importlib.metadata`` costs nothing, that module is imported on its
first use instead: ``sys.modules`` holds a stand-in until then, which any
attribute access replaces with the real module.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types

# The features dnspython asks about while its modules used here are imported.
FEATURES = ("idna", "doq", "doh")
METADATA = "importlib.metadata"


def prepare() -> None:
    """Call before the first import of dnspython; does nothing after it."""
    if "dns._features" in sys.modules:
        return
    if METADATA not in sys.modules:
        _defer(METADATA)
    import dns._features

    requirements = getattr(dns._features, "_requirements", None)
    force = getattr(dns._features, "force", None)
    if not isinstance(requirements, dict) or force is None:
        return
    for feature in FEATURES:
        answer = _answer(requirements.get(feature))
        if answer is not None:
            force(feature, answer)


def _answer(requirements: object) -> bool | None:
    """True or False when the packages say so themselves; None: ask importlib.metadata."""
    if not isinstance(requirements, list):
        return None
    versions = []
    for requirement in requirements:
        package, separator, minimum = str(requirement).partition(">=")
        if not separator:
            return None
        try:
            installed = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            return None
        if not installed:
            return False  # what importlib.metadata says of a package that is not there
        versions.append((package, minimum))
    for package, minimum in versions:
        if package != "idna":
            return None
        import idna

        version = getattr(idna, "__version__", None)
        if not isinstance(version, str):
            return None
        if _numbers(version) < _numbers(minimum):
            return False
    return True


def _numbers(version: str) -> tuple[int, ...]:
    """(3, 10) for "3.10", (2, 0) for "2.0rc1": as dnspython compares versions."""
    numbers = []
    for part in version.split("."):
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


class _StandIn(types.ModuleType):
    """A module not loaded yet: the first attribute asked for loads it."""

    _lock = threading.Lock()

    def __getattr__(self, attribute: str) -> object:
        name = self.__name__
        with _StandIn._lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
                importlib.import_module(name)  # also sets the parent package's attribute
        return getattr(sys.modules[name], attribute)


def _defer(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _StandIn(name)
    # An import statement reads __spec__ of a module in sys.modules: given, it loads nothing.
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, stand_in)
