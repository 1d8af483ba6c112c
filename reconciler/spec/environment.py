"""What a spec needs from the machine it runs on: the CA file, the password (variable or file) and
the SSH files it names must be there. `validate` checks these (unless `--offline`), so that a
missing CA file or an unset password variable is found before `plan`, with FILE:LINE:COL.

Reads only whether files exist and variables are set; never reads a secret's value.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.errors import SpecIssue
from reconciler.spec.load import SpecDocument, SpecPath

OFFLINE_HINT = "(validate --offline skips this check where secrets are not available)"


def environment_issues(docs: Sequence[SpecDocument],
                       environ: Mapping[str, str] | None = None) -> list[SpecIssue]:
    env = os.environ if environ is None else environ
    issues: list[SpecIssue] = []
    for doc in docs:
        engine = doc.data.get("engine")
        if isinstance(engine, dict) and "lab" not in engine:
            issues.extend(_engine(doc, engine, env))
        access = doc.data.get("hostAccess")
        if isinstance(access, dict) and isinstance(access.get("ssh"), dict):
            for key in ("identityFile", "knownHostsFile"):
                issues.extend(_file(doc, ("hostAccess", "ssh", key), access["ssh"].get(key),
                                    "SSH identity file" if key == "identityFile"
                                    else "known_hosts file"))
    return issues


def _engine(doc: SpecDocument, engine: dict[str, Any],
            env: Mapping[str, str]) -> Iterator[SpecIssue]:
    if engine.get("insecure") is not True:
        yield from _file(doc, ("engine", "caFile"), engine.get("caFile"), "CA file")
    source = engine.get("passwordFrom")
    if not isinstance(source, dict):
        return
    name = source.get("env")
    if isinstance(name, str) and not env.get(name):
        yield doc.issue(("engine", "passwordFrom", "env"),
                        f"environment variable {name} is not set (or empty) here; plan and apply "
                        f"read the engine password from it {OFFLINE_HINT}")
    yield from _file(doc, ("engine", "passwordFrom", "file"), source.get("file"),
                     "password file")


def _file(doc: SpecDocument, path: SpecPath, value: object, what: str) -> Iterator[SpecIssue]:
    if not isinstance(value, str) or not value:
        return
    full = Path(os.path.expanduser(value))
    if not full.is_absolute():
        full = doc.path.parent / full
    if not full.exists():
        yield doc.issue(path, f"no {what} at {full} {OFFLINE_HINT}")
    elif not full.is_file():
        yield doc.issue(path, f"the {what} {full} is not a file")
    elif not os.access(full, os.R_OK):
        yield doc.issue(path, f"the {what} {full} cannot be read by this user {OFFLINE_HINT}")


__all__ = ["environment_issues"]
