"""Finding codes are an enum keyed to the catalogue (issue 10, item 4).

A code typed wrong must fail loudly (an AttributeError at import, a mypy
error), never become a finding nobody's rule matches or a comparison that
is silently never true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import maildiag
from maildiag.finding_codes import FindingCode
from maildiag.findings import CATALOGUE, make_finding

PACKAGE = Path(maildiag.__file__).parent


def test_every_code_has_exactly_one_catalogue_entry_and_every_entry_a_code():
    assert set(CATALOGUE) == set(FindingCode)
    assert len(CATALOGUE) == len(FindingCode)
    assert all(type(code) is FindingCode for code in CATALOGUE)
    assert all(spec.code is code for code, spec in CATALOGUE.items())


def test_a_code_is_its_name_so_reports_print_what_they_always_printed():
    for code in FindingCode:
        assert code.value == code.name
        assert str(code) == f"{code}" == code.name


def test_a_typo_is_an_error_not_a_new_code():
    with pytest.raises(AttributeError):
        _ = FindingCode.AUTH_FAILD  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        FindingCode("AUTH_FAILD")
    with pytest.raises(KeyError):
        make_finding("AUTH_FAILD")  # type: ignore[arg-type]


def test_a_finding_carries_the_enum_member_even_when_named_by_its_string():
    finding = make_finding("MX_MISSING", domain="kunde.test")  # type: ignore[arg-type]
    assert finding.code is FindingCode.MX_MISSING


def _code_strings_in(path: Path) -> list[tuple[int, str]]:
    names = {code.value for code in FindingCode}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value in names:
            found.append((node.lineno, node.value))
    return found


def test_no_module_names_a_code_by_its_string():
    # Only the enum spells the codes; everywhere else they are FindingCode
    # members, so mypy sees every use and a rename is impossible to miss.
    stray = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "finding_codes.py" and (hits := _code_strings_in(path))
    }
    assert stray == {}
