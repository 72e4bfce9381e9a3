"""The README's promises that can be checked mechanically."""

from __future__ import annotations

import re
from pathlib import Path

from maildiag.findings import CATALOGUE
from maildiag.report.codes import render

ROOT = Path(__file__).parents[1]


def test_readme_lists_every_finding_code_as_generated():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- codes:start -->\n(.*)<!-- codes:end -->", readme, re.S)
    assert table, "README.md lost its codes markers"
    assert table.group(1) == render("markdown"), "run `make docs` to regenerate the codes table"
    for code in CATALOGUE:
        assert f"`{code}`" in table.group(1)


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in block and "make test" in block
    assert "make test" in (ROOT / ".ci/run").read_text()
