"""What earlier apply runs took down and did not bring back, read from their journals.

Planning is level-triggered, so most of an interrupted run needs no repair: the next plan starts
from the fleet as it is. Two things a plan does not see as work are put right here: a host a run
took out of `up` (deactivated, never activated again) and a VM it stopped and never started. Left
alone they would stay down with nothing left to plan. That holds for a run that was killed (it
never ended) as much as for one that ended `failed` or `stopped`: the journal of every recent apply
run on the engine is read as one history, oldest first, so a later run that brought something back
closes it. Only objects the journal proves we took down are brought back; a recovery attempt that
fails keeps the object on the list, so it is not forgotten when its first stop scrolls out of the
window of runs read.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.model.facts import Observed
from reconciler.store import JournalEntry, RunRecord, Store

_TOOK_DOWN = {"deactivate": "host", "stop-vm": "vm"}
_BROUGHT_BACK = {"activate", "host-cycle", "start-vm"}
_RECOVERY = "recover."
# How many recent apply runs of an engine are read; a recovery that keeps failing re-asserts its
# object in every run, so nothing falls out of this window while it is still down.
RUNS_READ = 50


@dataclass(frozen=True)
class Interrupted:
    runs: tuple[str, ...]                 # the runs whose journals were read
    hosts: tuple[str, ...]                # host names taken out of up and not brought back
    vms: tuple[str, ...]                  # VM names stopped and not started again

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.vms)


def dead_runs(store: Store, engine_key: str, own_run: str, limit: int = RUNS_READ
              ) -> list[RunRecord]:
    """Runs of this engine that never finished. Call it holding the lock: they are all dead."""
    return [r for r in store.runs(limit=limit, engine_key=engine_key)
            if r.outcome is None and r.run_id != own_run and r.kind == "apply"]


def earlier_runs(store: Store, engine_key: str, own_run: str, limit: int = RUNS_READ
                 ) -> list[RunRecord]:
    """The recent apply runs of this engine other than `own_run`, finished or not."""
    return [r for r in store.runs(limit=limit, engine_key=engine_key)
            if r.kind == "apply" and r.run_id != own_run]


def left_down(entries: Iterable[JournalEntry]) -> tuple[list[str], list[str]]:
    """Hosts and VMs the journal took down (or tried to: the step ended ok or failed, or never
    ended) and did not bring back, in journal order."""
    down: dict[str, str] = {}
    for entry in entries:
        kind = _TOOK_DOWN.get(entry.action)
        # A failed step may still have taken effect (the engine went on after our deadline);
        # recovery looks at the object's status before touching it.
        if kind is not None and entry.outcome in ("ok", "failed", None, "abandoned"):
            down[entry.target] = kind
        elif entry.action in _BROUGHT_BACK and entry.outcome == "ok":
            down.pop(entry.target, None)
        elif entry.step_id.startswith(_RECOVERY) and entry.outcome != "ok":
            # Bringing it back failed: it is still ours to bring back.
            down[entry.target] = "host" if entry.target.startswith("host:") else "vm"
    hosts = [t.split(":", 1)[1] for t, k in down.items() if k == "host"]
    vms = [t.split(":", 1)[1] for t, k in down.items() if k == "vm"]
    return hosts, vms


def _history(store: Store, runs: Sequence[RunRecord]) -> list[JournalEntry]:
    # One history across the runs, oldest first: a later run may have brought back what an
    # earlier one took down.
    return sorted((e for r in runs for e in store.journal(r.run_id)),
                  key=lambda e: (e.started_at, e.entry_id))


def interrupted(store: Store, engine_key: str, own_run: str,
                runs: Sequence[RunRecord] | None = None) -> Interrupted:
    chosen = list(runs) if runs is not None else earlier_runs(store, engine_key, own_run)
    hosts, vms = left_down(_history(store, chosen))
    return Interrupted(tuple(r.run_id for r in chosen), tuple(hosts), tuple(vms))


def still_down(store: Store, engine_key: str, observed: Observed) -> list[str]:
    """What the journals say we took down and the fleet shows still down, as sentences; empty
    when everything we stopped runs again (the condition for saying the fleet matches)."""
    runs = [r for r in store.runs(limit=RUNS_READ, engine_key=engine_key) if r.kind == "apply"]
    hosts, vms = left_down(_history(store, runs))
    found = []
    for name in hosts:
        host = observed.host(name)
        if host is not None and host.status != "up":
            found.append(f"host {name} is {host.status}: an apply run took it out of up")
    for name in vms:
        vm = observed.vm(name)
        if vm is not None and vm.status == "down":
            found.append(f"vm {name} is down: an apply run stopped it")
    return found


__all__ = ["Interrupted", "RUNS_READ", "dead_runs", "earlier_runs", "interrupted", "left_down",
           "still_down"]
