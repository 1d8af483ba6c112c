"""What a dead apply run left half done, read from its journal.

Planning is level-triggered, so most of a killed run needs no repair: the next plan starts from
the fleet as it is. Two things a plan does not see as work are put right here: a host the dead
run took out of `up` (deactivated, never activated again) and a VM it stopped and never started.
Left alone they would stay down with nothing left to plan — the "killed run leaves the node
degraded forever" failure. Only objects the journal proves we took down are brought back.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.store import JournalEntry, RunRecord, Store

_TOOK_DOWN = {"deactivate": "host", "stop-vm": "vm"}
_BROUGHT_BACK = {"activate", "host-cycle", "start-vm"}


@dataclass(frozen=True)
class Interrupted:
    runs: tuple[str, ...]                 # dead runs of this engine (unfinished)
    hosts: tuple[str, ...]                # host names taken out of up and not brought back
    vms: tuple[str, ...]                  # VM names stopped and not started again

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.vms)


def dead_runs(store: Store, engine_key: str, own_run: str, limit: int = 50
              ) -> list[RunRecord]:
    """Runs of this engine that never finished. Call it holding the lock: they are all dead."""
    return [r for r in store.runs(limit=limit, engine_key=engine_key)
            if r.outcome is None and r.run_id != own_run and r.kind == "apply"]


def left_down(entries: Iterable[JournalEntry]) -> tuple[list[str], list[str]]:
    """Hosts and VMs a run took down (or tried to: the step ended ok or failed, or never ended)
    and did not bring back, in journal order."""
    down: dict[str, str] = {}
    for entry in entries:
        kind = _TOOK_DOWN.get(entry.action)
        # A failed step may still have taken effect (the engine went on after our deadline);
        # recovery looks at the object's status before touching it.
        if kind is not None and entry.outcome in ("ok", "failed", None, "abandoned"):
            down[entry.target] = kind
        elif entry.action in _BROUGHT_BACK and entry.outcome == "ok":
            down.pop(entry.target, None)
    hosts = [t.split(":", 1)[1] for t, k in down.items() if k == "host"]
    vms = [t.split(":", 1)[1] for t, k in down.items() if k == "vm"]
    return hosts, vms


def interrupted(store: Store, engine_key: str, own_run: str,
                runs: Sequence[RunRecord] | None = None) -> Interrupted:
    chosen = list(runs) if runs is not None else dead_runs(store, engine_key, own_run)
    # One history across the dead runs, oldest first: a later run may have brought back what
    # an earlier one took down.
    entries = sorted((e for r in chosen for e in store.journal(r.run_id)),
                     key=lambda e: (e.started_at, e.entry_id))
    hosts, vms = left_down(entries)
    return Interrupted(tuple(r.run_id for r in chosen), tuple(hosts), tuple(vms))


__all__ = ["Interrupted", "dead_runs", "interrupted", "left_down"]
