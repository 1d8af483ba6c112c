"""Specs for several engines in one folder: which file belongs to which engine.

The controller reconciles every engine its spec folder names, each in its own loop. The rule an
operator can see from the file tree:

- a file that gives `engine:` names its engine, and each engine is given by exactly one file
  (as for a single engine: one place says how to reach it);
- a file without `engine:` belongs to the engine given in its own folder, or else in the nearest
  enclosing folder that gives one; with one engine in the whole spec, every file belongs to it
  (so a single-engine spec reads exactly as before);
- a folder whose files give two engines can hold no file without `engine:` (which would it be?),
  and with several engines a file no folder above it assigns is an error too.

So both usual layouts work: one self-contained file per engine (`dc1.yaml`, `dc2.yaml`, each
with its `engine`, hostProfiles and vms), or one folder per engine (`dc1/engine.yaml`,
`dc1/vms/*.yaml`, `dc2/...`). Every problem is a SpecIssue with FILE:LINE:COL; each engine's
files then pass the same checks as a single-engine spec.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.spec import model
from reconciler.spec.build import _sort_key, build_state, collector_paused, load_each
from reconciler.spec.load import SpecDocument
from reconciler.spec.semantic import check_documents


@dataclass(frozen=True)
class EngineSpecs:
    """The desired state of each engine, by `engine_id` (in the order the files name them)."""

    engines: dict[str, model.DesiredState]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for d in self.engines.values() for s in d.sources)


def engine_id(raw: Any) -> str:
    """What tells two engines apart in a spec: the API URL, or `lab:<fleet>` for the lab.
    (The store's engine key comes from the endpoint; this one exists before any is opened.)"""
    if isinstance(raw, dict):
        if isinstance(raw.get("lab"), dict):
            return f"lab:{raw['lab'].get('fleet')}"
        if raw.get("url") is not None:
            return str(raw["url"]).rstrip("/")
    return "?"


def engine_of(desired: model.DesiredState) -> str:
    """`engine_id` of a built DesiredState."""
    engine = desired.engine
    if engine.is_lab:
        return f"lab:{engine.lab_fleet}"
    return str(engine.url).rstrip("/")


def group_documents(docs: Sequence[SpecDocument]
                    ) -> tuple[dict[str, list[SpecDocument]], list[SpecIssue]]:
    """Each engine's documents, and the issues that stop files being assigned."""
    owners: dict[str, SpecDocument] = {}            # engine id -> the file that gives it
    issues: list[SpecIssue] = []
    by_folder: dict[Path, list[tuple[str, SpecDocument]]] = {}
    for doc in docs:
        if "engine" not in doc.data:
            continue
        ident = engine_id(doc.data["engine"])
        if ident in owners:
            first = owners[ident]
            m = first.mark(("engine",), prefer_key=True)
            issues.append(doc.issue(("engine",), f"engine {ident} is already given at "
                                                 f"{first.file}:{m.line}; give each engine in "
                                                 "exactly one spec file", prefer_key=True))
            continue
        owners[ident] = doc
        by_folder.setdefault(doc.path.parent, []).append((ident, doc))
    groups: dict[str, list[SpecDocument]] = {ident: [] for ident in owners}
    for doc in docs:
        if "engine" in doc.data:
            ident = engine_id(doc.data["engine"])
            if owners.get(ident) is doc:
                groups[ident].append(doc)
            continue
        if len(owners) <= 1:
            if owners:
                groups[next(iter(owners))].append(doc)
            continue
        folder = _nearest(doc.path.parent, by_folder)
        if folder is None:
            names = ", ".join(f"{i} ({d.file})" for i, d in owners.items())
            issues.append(SpecIssue(doc.file, 1, 1, "(document)",
                                    f"this spec names {len(owners)} engines ({names}): this "
                                    "file gives no `engine` and lies in no folder whose spec "
                                    "files give one; give it its engine's `engine` block's "
                                    "folder (or a subfolder of it)"))
            continue
        candidates = by_folder[folder]
        if len(candidates) > 1:
            names = ", ".join(f"{i} ({d.file})" for i, d in candidates)
            issues.append(SpecIssue(doc.file, 1, 1, "(document)",
                                    f"folder {folder} gives {len(candidates)} engines ({names}):"
                                    " a file there without `engine` could belong to any; move "
                                    "it into a folder of its engine's own"))
            continue
        groups[candidates[0][0]].append(doc)
    return groups, issues


def _nearest(folder: Path, by_folder: dict[Path, Any]) -> Path | None:
    for candidate in (folder, *folder.parents):
        if candidate in by_folder:
            return candidate
    return None


def check_and_build_engines(paths: Sequence[str], within: Path | None = None
                            ) -> tuple[EngineSpecs | None, list[SpecIssue]]:
    """Validate PATHs as the specs of one or more engines and, when valid, build each one."""
    with collector_paused():
        return _checked_engines(paths, within)


def _checked_engines(paths: Sequence[str], within: Path | None
                     ) -> tuple[EngineSpecs | None, list[SpecIssue]]:
    docs, issues = load_each(paths, within)
    if not docs:
        if not issues:
            issues.append(SpecIssue(paths[0] if paths else "-", 1, 1, "(document)",
                                    "no spec files"))
        return None, sorted(issues, key=_sort_key)
    groups, grouping = group_documents(docs)
    issues.extend(grouping)
    if not groups:
        issues.extend(check_documents(docs))      # reports the missing engine as before
    for group in groups.values():
        issues.extend(check_documents(group))
    if issues:
        return None, sorted(issues, key=_sort_key)
    return EngineSpecs({ident: build_state(group) for ident, group in groups.items()}), []


def load_engines(paths: Sequence[str], within: Path | None = None) -> EngineSpecs:
    """Every engine's DesiredState from the spec files under PATHs; SpecError lists every
    problem."""
    specs, issues = check_and_build_engines(paths, within)
    if issues or specs is None:
        raise SpecError(issues)
    return specs


__all__ = ["EngineSpecs", "check_and_build_engines", "engine_id", "engine_of",
           "group_documents", "load_engines"]
