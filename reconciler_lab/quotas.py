"""Quotas of the lab's data center: just enough of the engine's rules for what clients do with
them here (gpu-reconciler keeps its per-engine apply lock as a quota).

The engine's rules kept: a quota's name is unique across the engine (the `quota_quota_name_unique`
constraint; AddQuota fails with ACTION_TYPE_FAILED_NAME_ALREADY_USED, a 409), a quota is read,
renamed or re-described by id, and removed by id (404 once gone). Limits, enforcement and
assignments to VMs and disks are not modelled: the lab's data center runs with quotas disabled.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import ovirtsdk4.types as types

from reconciler_lab.errors import EngineFault

MAX_NAME = 65            # quota.quota_name
MAX_DESCRIPTION = 250    # quota.description


@dataclass
class Quota:
    id: str
    name: str
    description: str = ""


class Quotas:
    """The data center's quotas; the caller holds the engine's lock."""

    def __init__(self, saved: list[dict[str, str]] | None = None) -> None:
        self.items: dict[str, Quota] = {q["id"]: Quota(**q) for q in saved or ()}

    def to_list(self) -> list[dict[str, str]]:
        return [vars(q) for q in self.items.values()]

    def get(self, quota_id: str) -> Quota:
        quota = self.items.get(quota_id)
        if quota is None:
            raise EngineFault(404, "Quota not found")
        return quota

    def add(self, wanted: types.Quota) -> Quota:
        name = wanted.name or ""
        if not name:
            raise EngineFault(400, "Quota [name] required for add", reason="Incomplete parameters")
        self._check(name, wanted.description)
        if any(q.name == name for q in self.items.values()):
            raise EngineFault(409, "[Cannot add Quota. The name is already in use, please choose "
                                   "a unique name and try again.]")
        quota = Quota(str(uuid.uuid4()), name, wanted.description or "")
        self.items[quota.id] = quota
        return quota

    def update(self, quota_id: str, wanted: types.Quota) -> Quota:
        quota = self.get(quota_id)
        name = wanted.name if wanted.name is not None else quota.name
        self._check(name, wanted.description)
        if name != quota.name and any(q.name == name for q in self.items.values()):
            raise EngineFault(409, "[Cannot edit Quota. The name is already in use, please "
                                   "choose a unique name and try again.]")
        quota.name = name
        if wanted.description is not None:
            quota.description = wanted.description
        return quota

    def remove(self, quota_id: str) -> None:
        self.get(quota_id)
        del self.items[quota_id]

    @staticmethod
    def _check(name: str, description: str | None) -> None:
        if len(name) > MAX_NAME:
            raise EngineFault(400, f"[Cannot add Quota. The name must not exceed {MAX_NAME} "
                                   "characters.]")
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise EngineFault(400, "[Cannot edit Quota. The description must not exceed "
                                   f"{MAX_DESCRIPTION} characters.]")


__all__ = ["Quota", "Quotas"]
