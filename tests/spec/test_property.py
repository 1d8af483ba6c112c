"""Random damage to valid specs: the validator only ever returns located issues, never raises.

And whenever it finds nothing, building the DesiredState succeeds too.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import SpecIssue
from reconciler.spec import load_desired, validate_paths
from tests.spec.conftest import EXAMPLES

SOURCES = {p.name: p.read_text(encoding="utf-8")
           for p in sorted((EXAMPLES.glob("*-fleet.yaml")))}
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

junk_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["", "0000:03:00.0", "10de:11b4", "nvidia-22", "x;y",
                                           "http://e", "demo", "a b", "\n", "~"]))
junk_values = st.recursive(junk_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _nodes(item, path + (i,))
    return found


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(SOURCES)))
    data = copy.deepcopy(yaml.safe_load(SOURCES[name]))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _nodes(data) if p]
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(junk_values)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(junk_values)
        else:
            parent.insert(draw(st.integers(0, len(parent))), draw(junk_values))
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@st.composite
def damaged_text(draw: st.DrawFn) -> str:
    text = SOURCES[draw(st.sampled_from(sorted(SOURCES)))]
    cut = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:cut]
    insert = draw(st.text(alphabet=st.sampled_from(list("[]{}:,-&*!|>'\"#%@`\t\n ab1")),
                          max_size=6))
    return text[:cut] + insert + text[cut:]


def _check(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(text, encoding="utf-8")
        issues = validate_paths([str(spec)])
        assert isinstance(issues, list)
        for issue in issues:
            assert isinstance(issue, SpecIssue)
            assert issue.file == str(spec)
            assert issue.line >= 1 and issue.column >= 1
            assert issue.path and issue.message
        if not issues:
            assert load_desired([str(spec)]).engine is not None


@SETTINGS
@given(mutated_specs())
@pytest.mark.slow        # Hypothesis: 150 generated specs
def test_mutated_data_gives_issues_not_exceptions(text: str) -> None:
    _check(text)


@SETTINGS
@given(damaged_text())
@pytest.mark.slow        # Hypothesis: generated spec texts
def test_damaged_text_gives_issues_not_exceptions(text: str) -> None:
    _check(text)


def test_the_mutations_do_find_problems() -> None:
    # Guard against a property that holds only because nothing is ever wrong.
    broken = yaml.safe_load(SOURCES["vgpu-fleet.yaml"])
    broken["vms"][0]["vgpu"]["instances"] = "many"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump(broken), encoding="utf-8")
        assert [i.path for i in validate_paths([str(spec)])] == ["vms[0].vgpu.instances"]
