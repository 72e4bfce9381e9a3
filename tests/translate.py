"""Fill in translations without editing the .po file by hand.

    python -m tests.translate missing de > todo.json   # what needs German (after `make docs`)
    ... write the German into each entry's "translation" ...
    python -m tests.translate apply de todo.json       # into the .po, compiled to .mo

Entries are matched by (context, English text), so a file can be applied
again after the catalogue changed under it (e.g. after a rebase).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests import translations


def missing(lang: str) -> list[dict[str, str]]:
    catalog = translations.updated(lang)
    return [
        {"context": str(m.context or ""), "english": str(m.id), "translation": ""}
        for m in catalog
        if m.id and (not m.string or m.fuzzy)
    ]


def apply(lang: str, entries: list[dict[str, str]]) -> int:
    catalog = translations.updated(lang)
    applied = 0
    for entry in entries:
        if not entry.get("translation"):
            continue
        message = catalog.get(entry["english"], context=entry["context"] or None)
        if message is None:
            print(
                f"not in the catalogue (stale?): {entry['context']}: {entry['english'][:60]}",
                file=sys.stderr,
            )
            continue
        message.string = entry["translation"]
        message.flags.discard("fuzzy")
        applied += 1
    translations.write(lang, catalog)
    return applied


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "missing":
        json.dump(missing(argv[1]), sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    if len(argv) == 3 and argv[0] == "apply":
        entries = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
        print(f"{apply(argv[1], entries)} translations applied", file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
