"""Golden files for the three renderers, the JSON schema, colour rules and the Markdown limit.

Regenerate the golden files with UPDATE_GOLDEN=1 after an intended change, and review the diff.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.plan import plan
from reconciler.plan.render_json import render_json
from reconciler.plan.render_markdown import render_markdown
from reconciler.plan.render_text import render_text, use_color
from reconciler.plan.result import DriftItem, Plan
from tests.plan.factsload import desired_from, observed_from

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
SCHEMA = json.loads((HERE.parents[1] / "schemas" / "plan.schema.json").read_text())


def showcase() -> Plan:
    data = yaml.safe_load((HERE / "showcase.yaml").read_text())
    return plan(desired_from(data["desired"]), observed_from(data["observed"]))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name,render", [
    ("showcase.txt", lambda p: render_text(p)),
    ("showcase.color.txt", lambda p: render_text(p, color=True)),
    ("showcase.json", lambda p: render_json(p)),
    ("showcase.md", lambda p: render_markdown(p)),
])
def test_golden(name: str, render) -> None:
    check_golden(name, render(showcase()))


def test_showcase_covers_what_the_renderers_show() -> None:
    p = showcase()
    assert p.summary.hosts_to_reboot and p.summary.vms_to_restart and p.blockers
    assert {d.status for d in p.drift} >= {"blocked", "pending", "unmanaged"}
    assert p.summary.seats


def test_text_ends_with_summary_line() -> None:
    p = showcase()
    last = render_text(p).rstrip("\n").splitlines()[-1]
    s = p.summary
    assert last == (f"Plan: {len(s.hosts_to_reboot)} hosts to reboot, 1 VM to restart, "
                    f"{s.changes} changes, {s.blockers} blocker{'s' if s.blockers != 1 else ''}.")


def test_no_colour_when_piped_or_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    assert use_color(Tty(), {}) is True
    assert use_color(Tty(), {"NO_COLOR": ""}) is False
    assert use_color(io.StringIO(), {}) is False
    assert "\x1b[" not in render_text(showcase(), color=False)
    assert "\x1b[" in render_text(showcase(), color=True)


def test_json_validates_against_schema_and_is_sorted() -> None:
    text = render_json(showcase())
    data = json.loads(text)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["format_version"] == 1
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_schema_rejects_a_broken_action() -> None:
    data = json.loads(render_json(showcase()))
    data["actions"][0]["disruption"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(data)
    data = json.loads(render_json(showcase()))
    del data["actions"][0]["verify"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(data)


def test_markdown_is_cut_to_the_comment_limit_with_a_note() -> None:
    p = showcase()
    big = Plan(actions=p.actions * 2000, drift=p.drift, notes=p.notes, waves=p.waves,
               summary=p.summary, sources=p.sources)
    full = render_markdown(big, limit=10**9)
    assert len(full) > 65_536
    cut = render_markdown(big)
    assert len(cut) <= 65_536
    assert "Cut to fit GitHub's 65,536-character comment limit" in cut
    assert cut.startswith(full[:cut.index("<details>")])    # the summary table is never cut
    assert "Cut to fit" not in render_markdown(p)


def test_plan_twice_gives_identical_json() -> None:
    assert render_json(showcase()) == render_json(showcase())


def test_markdown_with_thousands_of_blockers_stays_within_the_limit() -> None:
    p = showcase()
    many = tuple(DriftItem(f"vm:vm-{i:05d}", "blocked", "x" * 200, "specs/vms.yaml:1:1")
                 for i in range(5000))
    big = Plan(actions=p.actions, drift=many, summary=p.summary, sources=p.sources)
    text = render_markdown(big)
    assert len(text) <= 65_536
    assert "and 4980 more (all in the details below)" in text
    assert "Cut to fit" in text


RENDERS = {"text": lambda p: render_text(p), "color": lambda p: render_text(p, color=True),
           "json": lambda p: render_json(p), "markdown": lambda p: render_markdown(p)}

# Plans the showcase and writes each render as <name> NUL <length> NUL <bytes>.
_RENDER_CHILD = """
import sys
from tests.plan.test_render import RENDERS, showcase
p = showcase()
for name, render in RENDERS.items():
    data = render(p).encode("utf-8")
    sys.stdout.buffer.write(b"%s\\0%d\\0" % (name.encode(), len(data)) + data)
"""


def _renders_in_a_fresh_interpreter(hash_seed: str) -> dict[str, bytes]:
    import subprocess
    import sys
    raw = subprocess.run([sys.executable, "-c", _RENDER_CHILD], cwd=HERE.parents[1],
                         capture_output=True, check=True, timeout=120,
                         env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}).stdout
    out: dict[str, bytes] = {}
    while raw:
        name, size, rest = raw.split(b"\0", 2)
        out[name.decode()] = rest[:int(size)]
        raw = rest[int(size):]
    return out


@pytest.mark.slow        # plans in two fresh interpreters
def test_renders_are_byte_identical_across_hash_seeds() -> None:
    """Set and dict ordering must never leak into a plan or its renders: plan and render in two
    interpreters with different hash seeds (and in this one, with its own) and compare bytes."""
    first, second = (_renders_in_a_fresh_interpreter(seed) for seed in ("1", "2"))
    here = {name: render(showcase()).encode("utf-8") for name, render in RENDERS.items()}
    assert set(first) == set(second) == set(RENDERS)
    for name in RENDERS:
        assert first[name] == second[name], f"{name}: PYTHONHASHSEED=1 and =2 differ"
        assert first[name] == here[name], f"{name}: a fresh interpreter differs from this one"


def test_no_actions_says_in_sync_only_when_nothing_is_out_of_sync() -> None:
    from dataclasses import replace
    p = showcase()
    empty = replace(p, actions=(), waves=(),
                    drift=tuple(d for d in p.drift if d.status == "unmanaged"))
    assert render_text(empty).startswith("No changes. The fleet matches the spec.")
    held = replace(empty, drift=p.drift)
    text = render_text(held)
    assert "matches the spec" not in text
    assert text.startswith("No changes can be made now")
