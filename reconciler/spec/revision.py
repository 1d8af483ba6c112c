"""The spec revision: one digest of the spec files a run was made from.

One format everywhere it is recorded (store runs, /status, saved plans): `sha256:` and the first
16 hex digits of a SHA-256 over each file's absolute path and content, in path order, so a moved
or renamed file is a new revision as much as an edited one. A git source records its commit
instead. An unreadable file counts as its own marker, never as an error: the revision names what
was loaded, and loading has already succeeded or failed on its own.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

PREFIX = "sha256:"


def spec_revision(sources: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for src in sorted(str(Path(s).resolve()) for s in sources):
        digest.update(src.encode() + b"\0")
        try:
            digest.update(Path(src).read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return PREFIX + digest.hexdigest()[:16]


__all__ = ["PREFIX", "spec_revision"]
