"""Every bad spec in tests/spec/bad/ is refused with exit 1, at the exact place, with a clear message."""
from __future__ import annotations

import json

import pytest

from tests.spec.bad_expectations import EXPECTED
from tests.spec.conftest import HERE

BAD = HERE / "bad"


def test_corpus_and_table_match() -> None:
    files = {p.stem for p in BAD.glob("*.yaml")}
    table = [row[0] for row in EXPECTED]
    assert len(table) == len(set(table)), "a file is listed twice"
    assert files == set(table)
    assert len(files) >= 45


@pytest.mark.parametrize(("stem", "line", "column", "path", "fragment"), EXPECTED,
                         ids=[row[0] for row in EXPECTED])
def test_bad_spec_is_reported_at_its_place(in_repo, validate, stem, line, column, path,
                                           fragment) -> None:
    name = f"tests/spec/bad/{stem}.yaml"
    result = validate(name)
    assert result.code == 1
    assert "Traceback" not in result.out + result.err
    assert result.lines and len(result.lines) == 1, result.out
    prefix = f"{name}:{line}:{column}: {path}: "
    assert result.lines[0].startswith(prefix), result.lines[0]
    assert fragment in result.lines[0].removeprefix(prefix)


@pytest.mark.parametrize("stem", ["vm-misspelled-instances", "yaml-tab", "not-utf8"])
def test_json_output_carries_the_same_issue(in_repo, validate, stem) -> None:
    row = next(r for r in EXPECTED if r[0] == stem)
    result = validate("-o", "json", f"tests/spec/bad/{stem}.yaml")
    assert result.code == 1
    issues = json.loads(result.out)
    assert [(i["file"], i["line"], i["column"], i["path"]) for i in issues] == [
        (f"tests/spec/bad/{stem}.yaml", row[1], row[2], row[3])]
    assert row[4] in issues[0]["message"]


def test_whole_corpus_at_once_reports_every_file(in_repo, validate) -> None:
    result = validate("--each", "tests/spec/bad")
    assert result.code == 1
    reported = {line.split(":", 1)[0] for line in result.lines}
    assert reported == {f"tests/spec/bad/{row[0]}.yaml" for row in EXPECTED}
