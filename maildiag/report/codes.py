"""The finding catalogue as documentation (README section, or JSON for tooling)."""

from __future__ import annotations

import json

from .. import i18n
from ..findings import CATALOGUE, FindingSpec

COLUMNS = ("Code", "Usual severity", "Meaning")


def render(output_format: str = "markdown", lang: str = "en") -> str:
    """The catalogue; the templates keep their {facts}, in ``lang``. Codes never change."""
    specs = [_in(lang, s) for s in sorted(CATALOGUE.values(), key=lambda s: s.code)]
    if output_format == "json":
        return (
            json.dumps(
                [
                    {
                        "code": s.code,
                        "severity": s.severity.value,
                        "title": s.title,
                        "explanation": s.explanation,
                        "fix": s.fix,
                    }
                    for s in specs
                ],
                indent=2,
            )
            + "\n"
        )
    head = " | ".join(i18n.text(lang, "codes", column) for column in COLUMNS)
    lines = [f"| {head} |", "|---|---|---|"]
    lines += [f"| `{s.code}` | {s.severity.value} | {s.title} |" for s in specs]
    return "\n".join(lines) + "\n"


def _in(lang: str, spec: FindingSpec) -> FindingSpec:
    if lang == "en":
        return spec
    return FindingSpec(
        spec.code,
        spec.severity,
        i18n.text(lang, spec.code, spec.title),
        i18n.text(lang, spec.code, spec.explanation),
        i18n.text(lang, spec.code, spec.fix),
    )
