"""The report formats of ``check``, by name: each renders a diagnosis and a bad request.

Every format answers a request that could not be checked (a malformed
domain, an unreadable CA file) in its own shape, so a script reading JSON,
a Nagios/Icinga core and a CI system each get a well-formed answer with
status UNKNOWN; the text format leaves that to the one line on stderr.
A format's module is imported only when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol

from msgspec import Struct, field

from ..model import Diagnosis, Thresholds


class RenderOptions(Struct, frozen=True):
    lang: str = "en"
    colour: bool = False
    verbose: bool = False
    width: int = 80
    thresholds: Thresholds = field(default_factory=Thresholds)


class Format(Protocol):
    def render_report(self, diagnosis: Diagnosis, options: RenderOptions) -> str: ...

    def render_bad_request(
        self, domain: str, message: str, kind: str, options: RenderOptions
    ) -> str: ...


MODULES: Mapping[str, str] = {
    "text": "maildiag.report.text",
    "json": "maildiag.report.json",
    "nagios": "maildiag.report.nagios",
    "junit": "maildiag.report.junit",
}
NAMES = tuple(MODULES)


def get(name: str) -> Format:
    module: Format = importlib.import_module(MODULES[name])
    return module


def render(name: str, diagnosis: Diagnosis, options: RenderOptions) -> str:
    return get(name).render_report(diagnosis, options)


def render_bad_request(
    name: str, domain: str, message: str, kind: str, options: RenderOptions
) -> str:
    return get(name).render_bad_request(domain, message, kind, options)
