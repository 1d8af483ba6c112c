"""Canonical JSON and sha256 fingerprints of observed objects and desired settings.

The canonical form is `json.dumps(..., sort_keys=True, separators=(",", ":"))` of the dataclass
fields, tuples as lists. It is produced by the C encoder with a per-object callback, which keeps
fingerprinting a 1,000-host fleet cheap.
"""
from __future__ import annotations

import hashlib
import json
from enum import Enum
from pathlib import PurePath
from typing import Any

from reconciler.model.facts import Host, ProbeFacts, Vm

# Fields that change on every observation without the fleet changing (timings; nvidia-smi's
# figures, the vGPU instances VMs start and stop, which no plan decision reads), or that only say
# where a value was written: they must not make a plan stale or a desired fingerprint differ.
_VOLATILE: dict[type, tuple[str, ...]] = {
    ProbeFacts: ("seconds", "nvidia_smi", "nvidia_smi_note", "mdevs")}
_DROP_NAME = "location"


# Per class met while fingerprinting: the dataclass fields left out, or None for other types.
# Looked up once per object (a 1,000-host plan meets hundreds of thousands of them).
_LEFT_OUT: dict[type, tuple[str, ...] | None] = {}


def _left_out(cls: type) -> tuple[str, ...] | None:
    fields = getattr(cls, "__dataclass_fields__", None)
    drop = (None if fields is None else
            tuple(n for n in _VOLATILE.get(cls, ()) + (_DROP_NAME,) if n in fields))
    _LEFT_OUT[cls] = drop
    return drop


def _plain(obj: object) -> Any:
    cls = type(obj)
    drop = _LEFT_OUT[cls] if cls in _LEFT_OUT else _left_out(cls)
    if drop is not None:
        data: dict[str, Any] = obj.__dict__
        # the common case (no field to leave out) returns the instance dict itself: no copy
        if not drop:
            return data
        # a copy made in C, then the few fields taken out: spec objects carry a location each
        data = data.copy()
        for name in drop:
            data.pop(name, None)
        return data
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot fingerprint {type(obj).__name__}")


def canonical_json(obj: object) -> str:
    return json.dumps(obj, default=_plain, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def host_snapshot(host: Host, probe: ProbeFacts | None) -> str:
    """What a plan depends on for one host: the engine's host fact and the host's own probe."""
    return canonical_json({"engine": host, "probe": probe})


def vm_snapshot(vm: Vm) -> str:
    return canonical_json(vm)


def fingerprint(snapshot: str) -> str:
    return sha256_text(snapshot)
