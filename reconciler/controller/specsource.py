"""Where the controller's engine loops read the spec: files, or a git ref's checkout.

One `SpecSource` per process, shared by every engine loop: a git work tree must not be checked
out by two loops at once, and a change read once serves every engine. `load()` returns the
specs of every engine the files name (reconciler.spec.engines) with the revision they came from;
with git, the result is kept per commit, so N engine loops reading one new commit check it out
and validate it once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.controller.gitsource import GitSource, check_subpath
from reconciler.errors import ReconcilerError
from reconciler.spec.engines import EngineSpecs, load_engines
from reconciler.spec.model import DesiredState
from reconciler.spec.revision import spec_revision


@dataclass(frozen=True)
class LoadedSpec:
    revision: str
    specs: EngineSpecs

    @property
    def engines(self) -> dict[str, DesiredState]:
        return self.specs.engines

    def engine(self, ident: str | None) -> DesiredState:
        """The spec of engine `ident`; with None, the only engine (an error when several)."""
        engines = self.specs.engines
        if ident is None:
            if len(engines) != 1:
                raise ReconcilerError(
                    f"the spec names {len(engines)} engines ({', '.join(engines)}); this loop "
                    "reconciles one: run `reconcile controller`, which runs one loop per engine")
            return next(iter(engines.values()))
        if ident not in engines:
            raise ReconcilerError(f"engine {ident} is no longer named by the spec")
        return engines[ident]


class SpecSource:
    """The spec paths, or one path inside a git repository's checkout (`git`)."""

    def __init__(self, paths: tuple[str, ...], git: GitSource | None = None,
                 git_sub: PurePosixPath | None = None) -> None:
        self.paths = paths
        self.git = git
        self.git_sub = git_sub
        self._lock = threading.Lock()
        self._by_commit: tuple[str, LoadedSpec] | None = None

    @classmethod
    def from_config(cls, config: Any, local_folder: Path) -> SpecSource:
        if not config.git_url:
            return cls(tuple(config.spec_paths))
        if len(config.spec_paths) != 1:
            raise ReconcilerError("with --git give exactly one SPEC-DIR (a path inside the "
                                  "repository)")
        sub = check_subpath(config.spec_paths[0])
        workdir = GitSource.default_workdir(local_folder, config.git_url)
        return cls(tuple(config.spec_paths), GitSource(config.git_url, config.git_ref, workdir),
                   sub)

    def spec_paths(self) -> list[str]:
        if self.git is not None and self.git_sub is not None:
            return [str(self.git.path(self.git_sub))]
        return list(self.paths)

    def load(self) -> LoadedSpec:
        """Read and validate the spec now (SpecError lists every problem)."""
        with self._lock:
            if self.git is None:
                specs = load_engines(self.spec_paths())
                return LoadedSpec(spec_revision(specs.sources), specs)
            if self.git.fetched is None:
                self.git.fetch()
            commit = self.git.checkout()
            if self._by_commit is not None and self._by_commit[0] == commit:
                return self._by_commit[1]
            loaded = LoadedSpec(commit, load_engines(self.spec_paths(), self.git.workdir))
            self._by_commit = (commit, loaded)
            return loaded


__all__ = ["LoadedSpec", "SpecSource"]
