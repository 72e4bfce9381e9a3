"""The finding catalogue as documentation (README section, or JSON for tooling)."""

from __future__ import annotations

import json

from ..findings import CATALOGUE


def render(output_format: str = "markdown") -> str:
    specs = sorted(CATALOGUE.values(), key=lambda s: s.code)
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
    lines = ["| Code | Usual severity | Meaning |", "|---|---|---|"]
    lines += [f"| `{s.code}` | {s.severity.value} | {s.title} |" for s in specs]
    return "\n".join(lines) + "\n"
