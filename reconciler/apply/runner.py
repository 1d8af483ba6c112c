"""From a spec (or a saved plan) to a finished apply run: lock, recover, observe, plan, confirm,
execute, record.

`apply_specs` and `apply_saved` are what `reconcile apply` and `reconcile demo` call. Both take the
engine's apply lock *before* observing, so the plan shown and the fleet it is carried out on cannot
be changed by a second apply in between; both report and abandon the unfinished steps of a run
that died, then carry on from freshly observed state (planning is level-triggered, so nothing is
replayed). After executing, the fleet is observed and planned again: objects with nothing left to
do are recorded as applied with the desired fingerprint the plan used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from reconciler.access.endpoint import EngineEndpoint
from reconciler.apply.engine_lock import DEFAULT_TTL as ENGINE_LOCK_TTL
from reconciler.apply.engine_lock import EngineLock, this_holder
from reconciler.apply.executor import (STOPPED, ApplyPolicy, ApplyResult, Executor,
                                       FleetAccess, Timeouts)
from reconciler.apply.ops import SdkEngineOps, sdk_worker_ops
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.progress import Progress, for_stream
from reconciler.apply import recovery
from reconciler.apply.rollout import Budget, max_unavailable_by_host
from reconciler.apply.settings import NOT_IN_SPEC
from reconciler.apply.verify import ObjectReader
from reconciler.engine.retry import Timing
from reconciler.errors import LockedError, PlanError, ReconcilerError
from reconciler.log import get_logger
from reconciler.model.facts import Observed
from reconciler.model.vocab import DriftStatus
from reconciler.observe.session import FleetSession, open_fleet
from reconciler.plan import plan as make_plan
from reconciler.plan.actions import Disruption, HostCycle
from reconciler.plan.expand import expand_host
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text, use_color
from reconciler.plan.result import Plan
from reconciler.plan.planfile import (SavedPlan, SpecFile, load_saved_plan, spec_files,
                                      stale_objects)
from reconciler.plan.replay import edited_actions, replan
from reconciler.spec.model import DesiredState
from reconciler.spec.revision import spec_revision
from reconciler.store import DEFAULT_PATH, JournalEntry, StateStore, open_store

log = get_logger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

@dataclass(frozen=True)
class ApplyOptions:
    yes: bool = False
    max_disruption: Disruption = Disruption.HOST_REBOOT
    state: Path | str = DEFAULT_PATH          # an SQLite file or a postgresql:// URL
    force_unlock: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    timing: Timing | None = None            # None: the endpoint's own
    probe: bool = True
    # Set it to end the run at the next safe point (no host out of service, no VM stopped by
    # us): the run is closed as "stopped" and the lock released.
    stop: threading.Event | None = None
    # Recorded on the run: the controller's git commit or spec revision; None: the revision of
    # the spec files (reconciler.spec.revision).
    spec_revision: str | None = None
    # The apply locks' ttl (store and engine); None: their defaults. Controller replicas use a
    # short one, so a leader that died on another machine lets go of them soon.
    lock_ttl: float | None = None


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    run_id: str | None = None
    plan: Plan | None = None
    result: ApplyResult | None = None
    after: Plan | None = None              # the plan computed after executing
    engine_requests: int = 0               # API requests this apply sent (observations too)
    engine_errors: int = 0                 # of them, the ones that failed (retries included)


class StalePlan(PlanError):
    """The fleet changed since the saved plan was made; `keys` name the changed objects."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.keys = keys


class NotConfirmed(ReconcilerError):
    """The user did not confirm the apply (or could not be asked)."""


def tty_confirm(stdin: TextIO, stdout: TextIO) -> Callable[[Plan], bool]:
    """Ask on the terminal; only `yes` confirms (as Terraform does)."""
    def ask(plan: Plan) -> bool:
        stdout.write(f"\nApply {plan.summary.changes} change(s)? Only 'yes' will be accepted: ")
        stdout.flush()
        answer = stdin.readline()
        return answer.strip() == "yes"
    return ask


def require_confirmation(yes: bool, stdin: TextIO) -> None:
    """Fail up front when there is no way to ask and --yes was not given."""
    if yes:
        return
    isatty = getattr(stdin, "isatty", None)
    if not (isatty and isatty()):
        raise NotConfirmed("no terminal to ask for confirmation on: review the plan "
                           "(`reconcile plan`) and pass --yes to apply without a prompt")


def _report_abandoned(entries: Sequence[JournalEntry], out: TextIO) -> None:
    runs: dict[str, list[JournalEntry]] = {}
    for e in entries:
        runs.setdefault(e.run_id, []).append(e)
    for run_id, steps in runs.items():
        where = ", ".join(f"{e.action} {e.target} (step {e.step_id})" for e in steps)
        print(f"run {run_id} stopped during {where}; its unfinished steps are marked abandoned "
              "and this run continues from the fleet as observed now", file=out)


def _vgpu_required(desired: DesiredState, observed: Observed) -> Callable[[str], bool]:
    hosts = {h.name: h for h in observed.hosts}

    def required(name: str) -> bool:
        host = hosts.get(name)
        hd = expand_host(host, desired.host_profiles) if host and desired.host_profiles else None
        return hd is not None and hd.vgpu_manager == "required"
    return required


def _summary(result: ApplyResult, after: Plan, out: TextIO, down: Sequence[str] = ()) -> None:
    counts = {k: len(result.by_outcome(k)) for k in ("ok", "failed", "pending", "not-started")}
    print(f"\nApply {result.run_id}: {counts['ok']} step(s) ok, {counts['failed']} failed, "
          f"{counts['pending']} pending, {counts['not-started']} not started "
          f"({result.seconds:.1f}s).", file=out)
    for step in result.failed:
        print(f"  ! failed: {step.target} {step.action}: {step.message}", file=out)
    for step in result.by_outcome(StepOutcome.STOPPED):
        print(f"  ~ stopped: {step.target} {step.action}: {step.message}", file=out)
    for host, why in sorted(result.degraded.items()):
        print(f"  ! degraded: host {host}: {why}", file=out)
    if result.halted:
        print(f"  ! rollout halted: {result.halted}", file=out)
    for step in result.pending:
        print(f"  * pending: {step.target} {step.action} ({step.message})", file=out)
    left = sorted((d for d in after.drift if d.status in _NOT_MET),
                  key=lambda d: (_NOT_MET.index(d.status), d.key))
    if after.has_changes:
        print(f"Still to do: {after.summary.line()}", file=out)
    elif not left and not down:
        print("The fleet now matches the spec (a new plan has no changes).", file=out)
    else:
        counts = [f"{sum(1 for d in left if d.status == s)} {s}" for s in _NOT_MET
                  if any(d.status == s for d in left)]
        if down:
            counts.append(f"{len(down)} still down")
        print(f"The fleet does not match the spec yet ({', '.join(counts)}); a new plan has no "
              "change this apply could make:", file=out)
    for item in left:
        print(f"  ! {item.status}: {item.key}: {item.message}", file=out)
    for line in down:
        print(f"  ! still down: {line}", file=out)


# Items of a plan that mean the spec is not met, in the order they are reported.
_NOT_MET = tuple(s for s in DriftStatus if s.out_of_sync)


def _record_converged(store: StateStore, key: str, run_id: str, plan: Plan, after: Plan) -> int:
    """`applied` for objects with nothing left to do whose desired settings are what we applied."""
    busy = {a.target for a in after.actions}
    busy |= {d.key for d in after.drift if d.status in ("blocked", "pending", "drift")}
    count = 0
    for obj, fp in sorted(after.desired_fingerprints.items()):
        if obj in busy or plan.desired_fingerprints.get(obj) != fp:
            continue
        store.record_applied(key, obj, fp, run_id)
        count += 1
    return count


def execute(desired: DesiredState, options: ApplyOptions, endpoint: EngineEndpoint, *,
            saved: SavedPlan | None = None, confirm: Callable[[Plan], bool] | None = None,
            out: TextIO = sys.stdout, progress: Progress | None = None) -> RunOutcome:
    """Lock, recover, observe, plan (or check the saved plan), confirm, execute, record."""
    key = endpoint.key
    store = open_store(options.state, **({"lock_ttl": options.lock_ttl}
                                          if options.lock_ttl else {}))
    try:
        revision = options.spec_revision or spec_revision(desired.sources)
        run_id = store.start_run("apply", key, spec_revision=revision,
                                 plan_digest=_digest(saved.plan) if saved is not None else None)
        try:
            engine_lock = EngineLock(lambda: endpoint.connect(connections=1),
                                     this_holder(run_id), timing=endpoint.timing,
                                     ttl=options.lock_ttl or ENGINE_LOCK_TTL)
            # Two locks: the store's guards this state file; the engine's guards the engine
            # against applies with other state files, from other processes and machines.
            with store.lock(key, run_id, pid=os.getpid(), force_unlock=options.force_unlock) \
                    as info, engine_lock.hold(options.force_unlock) as engine_previous:
                if info.taken_over_from == options.force_unlock and info.taken_over_from:
                    print(f"took over the apply lock from run {info.taken_over_from} "
                          "(--force-unlock)", file=out)
                elif info.taken_over_from:
                    print(f"took over the apply lock from run {info.taken_over_from}, whose "
                          "process is gone", file=out)
                if engine_previous is not None:
                    print(f"took over the engine's apply lock from {engine_previous.describe()}, "
                          "which stopped renewing it", file=out)
                dead = recovery.dead_runs(store, key, run_id)
                # Every earlier run, not only the dead ones: a run that ended failed or stopped
                # may have left VMs it stopped down, and hosts in maintenance.
                left = recovery.interrupted(store, key, run_id)
                _report_abandoned(store.abandon_unfinished(key, run_id), out)
                for record in dead:
                    if (store.run(record.run_id) or record).outcome is None:
                        # Killed between two steps: nothing unfinished, but it never ended.
                        store.finish_run(record.run_id, "crashed",
                                         f"found unfinished by run {run_id}")
                        print(f"run {record.run_id} stopped between steps; marked crashed",
                              file=out)
                outcome = _locked(desired, options, endpoint, store, run_id, saved, confirm,
                                  out, progress, left)
            # The lock's own requests (taking, renewing, releasing it) are the run's too.
            outcome = dataclasses.replace(
                outcome, engine_requests=outcome.engine_requests + engine_lock.requests,
                engine_errors=outcome.engine_errors + engine_lock.failed)
        except BaseException as err:
            current = store.run(run_id)
            if current is not None and current.outcome is None:
                refused = isinstance(err, (NotConfirmed, LockedError, PlanError))
                store.finish_run(run_id, "refused" if refused else "failed",
                                 str(err) or type(err).__name__)
            raise
        return outcome
    finally:
        store.close()


def _digest(plan: Plan) -> str:
    return hashlib.sha256(render_json(plan).encode()).hexdigest()[:16]


def _locked(desired: DesiredState, options: ApplyOptions, endpoint: EngineEndpoint, store: StateStore,
            run_id: str, saved: SavedPlan | None, confirm: Callable[[Plan], bool] | None,
            out: TextIO, progress: Progress | None, left: recovery.Interrupted) -> RunOutcome:
    key = endpoint.key
    with open_fleet(desired, endpoint) as fleet:
        if saved is not None:
            # Before anything that changes the fleet (recovery included).
            _check_engine(saved, fleet)
        observed = fleet.observe(probe=options.probe)
        transports = fleet.transports()
        timing = options.timing or endpoint.timing
        reader = ObjectReader(fleet.connection, observed, transports,
                              probe_timeout=options.timeouts.probe, timing=timing)
        budget = Budget(max_unavailable_by_host(desired, observed.hosts))
        own_progress = progress is None
        progress = progress or for_stream(sys.stderr)
        # Every engine request of the run carries its id (Correlation-Id), cycle workers' too.
        access = FleetAccess(SdkEngineOps(fleet.connection, reader, timing, run_id, options.stop),
                             transports, open_ops=sdk_worker_ops(endpoint.connect, reader, timing,
                                                                 run_id, options.stop))
        policy = ApplyPolicy(options.max_disruption, _restart_policy(desired),
                             _vgpu_required(desired, observed))
        executor = Executor(access, store, run_id, budget, policy=policy,
                            timeouts=options.timeouts, progress=progress, stop=options.stop)
        try:
            outcome = _plan_and_run(desired, options, store, key, run_id, saved, confirm, out,
                                    fleet, observed, executor, left)
            requests, errors = executor.engine_counts()
            return dataclasses.replace(outcome, engine_requests=requests, engine_errors=errors)
        finally:
            if own_progress:
                progress.close()


def _restart_policy(desired: DesiredState) -> Callable[[str], str | None]:
    """The spec's restart policy per VM; NOT_IN_SPEC for a VM the spec does not name (we only
    ever stop VMs the spec allows us to)."""
    policies = {v.name: v.restart for v in desired.vms}
    return lambda vm: policies.get(vm, NOT_IN_SPEC)


def _resumable(desired: DesiredState, observed: Observed, applied: dict[str, str],
               left: recovery.Interrupted, options: ApplyOptions) -> tuple[str, ...]:
    """Hosts an earlier run left in maintenance whose host cycle this run would start anyway."""
    if not left.hosts:
        return ()
    cycles = {a.object_name for a in make_plan(desired, observed, applied).actions
              if isinstance(a, HostCycle) and a.disruption <= options.max_disruption}
    return tuple(h for h in left.hosts if h in cycles
                 and (host := observed.host(h)) is not None and host.status == "maintenance")


def _plan_and_run(desired: DesiredState, options: ApplyOptions, store: StateStore, key: str,
                  run_id: str, saved: SavedPlan | None, confirm: Callable[[Plan], bool] | None,
                  out: TextIO, fleet: FleetSession, observed: Observed, executor: Executor,
                  left: recovery.Interrupted) -> RunOutcome:
    resumed = _resumable(desired, observed, store.applied(key), left, options) \
        if saved is None else ()
    if resumed:
        # The dead run's host cycle goes on where it stopped: deactivating a host already in
        # maintenance sends nothing, so no step the dead run did is done twice.
        print("resuming the host cycle of " + ", ".join(f"host {h}" for h in resumed)
              + ", which an earlier run left in maintenance", file=out)
        left = dataclasses.replace(left, hosts=tuple(h for h in left.hosts if h not in resumed))
    if not left.empty:
        print("bringing back what an earlier run left down: "
              + ", ".join([f"host {h}" for h in left.hosts] + [f"vm {v}" for v in left.vms]),
              file=out)
        executor.recover(left.hosts, left.vms)
        observed = fleet.observe(probe=options.probe)
    applied = store.applied(key)
    if saved is not None:
        stale = stale_objects(saved.plan, observed)
        if stale:
            lines = "\n".join(f"  {s.key}: {s.what_changed}" for s in stale)
            raise StalePlan(f"the saved plan is stale: {len(stale)} object(s) changed since "
                            f"it was made; nothing was changed. Make a new plan.\n{lines}",
                            tuple(s.key for s in stale))
        the_plan = saved.plan
    else:
        the_plan = make_plan(desired, observed, applied)
    print(render_text(the_plan, color=use_color(out)), end="", file=out)
    if not the_plan.has_changes:
        recovered = executor.result()
        down = recovery.still_down(store, key, observed)
        bad = bool(the_plan.blockers) or not recovered.ok or bool(down)
        for host, why in sorted(recovered.degraded.items()):
            print(f"  ! degraded: host {host}: {why}", file=out)
        for line in down:
            print(f"  ! still down: {line}", file=out)
        store.finish_run(run_id, "failed" if bad else "ok", the_plan.summary.line())
        _record_converged(store, key, run_id, the_plan, the_plan)
        return RunOutcome(EXIT_FAILED if bad else EXIT_OK, run_id, the_plan, recovered,
                          after=the_plan)
    if confirm is not None and not confirm(the_plan):
        raise NotConfirmed("apply cancelled: nothing was changed")
    if options.max_disruption < the_plan.max_disruption:
        print(f"\n--max-disruption {options.max_disruption.value}: actions above it are "
              "reported as pending and not run.", file=out)
    result = executor.run(the_plan)
    after_observed = fleet.observe(probe=options.probe)
    after = make_plan(desired, after_observed, applied)
    recorded = _record_converged(store, key, run_id, the_plan, after)
    log.debug("apply.recorded_applied", run_id=run_id, objects=recorded)
    down = recovery.still_down(store, key, after_observed)
    _summary(result, after, out, down)
    if result.stopped:
        not_started = len(result.by_outcome("not-started"))
        message = (f"stopped at a safe point; {not_started} step(s) not started (the next apply "
                   "re-plans from the fleet)")
        store.finish_run(run_id, STOPPED, message)
        return RunOutcome(EXIT_FAILED, run_id, the_plan, result, after)
    failed = not result.ok or bool(the_plan.blockers) or bool(down)
    message = (result.halted or (f"{len(result.failed)} step(s) failed" if result.failed
                                 else f"{len(result.pending)} pending"
                                 if result.pending else "converged"))
    if the_plan.blockers:
        message += f"; {len(the_plan.blockers)} blocker(s) not applied"
    if down:
        message += f"; {len(down)} object(s) we took down still down"
    store.finish_run(run_id, "failed" if failed else "ok", message)
    return RunOutcome(EXIT_FAILED if failed else EXIT_OK, run_id, the_plan, result, after)


class PlanNotAsReviewed(PlanError):
    """A saved plan that is not the plan its spec gives, or not for this engine: nothing ran."""


def _check_engine(saved: SavedPlan, fleet: FleetSession) -> None:
    made_for, here = saved.made_for.engine, fleet.engine_identity()
    if not made_for.same_engine(here):
        raise PlanNotAsReviewed(f"the plan was made for another engine: {made_for.describe()}; "
                                f"this is {here.describe()}. Nothing was changed; make a plan "
                                "for this engine")


def _check_spec_files(path: str | os.PathLike[str], recorded: tuple[SpecFile, ...]) -> None:
    for spec in recorded:
        if not Path(spec.path).exists():
            raise PlanNotAsReviewed(f"{path}: the plan was made from the spec file {spec.path} "
                                    "(the plan records absolute paths), which does not exist "
                                    "here. Nothing was changed")
    now = {f.path: f.sha256 for f in spec_files([f.path for f in recorded])}
    for spec in recorded:
        if now.get(spec.path) != spec.sha256:
            raise PlanNotAsReviewed(f"{path}: the spec file {spec.path} changed since the plan "
                                    "was made. Nothing was changed; make a new plan")


def load_saved(path: str | os.PathLike[str]) -> tuple[SavedPlan, DesiredState]:
    """A saved plan, refused unless it is what its spec files (unchanged since) give against
    the facts it recorded; the plan returned is the one planned again (people-only wording
    included), so nothing of the file's own text is carried out or shown."""
    from reconciler.spec import load_desired

    saved = load_saved_plan(path)
    _check_spec_files(path, saved.made_for.spec_files)
    desired = load_desired([f.path for f in saved.made_for.spec_files])
    again = replan(desired, saved.made_for.facts, saved.made_for.applied)
    problems = edited_actions(saved.plan, again)
    if problems:
        raise PlanNotAsReviewed(f"{path}: the plan file was edited after it was made: its "
                                "actions are not what its spec gives against the facts it "
                                "recorded. Nothing was changed.\n" + "\n".join(
                                    f"  {p}" for p in problems))
    return SavedPlan(again, saved.made_for), desired


def looks_like_plan(paths: Sequence[str]) -> bool:
    """One argument that is a JSON file: a saved plan rather than specs."""
    if len(paths) != 1:
        return False
    path = Path(paths[0])
    if not path.is_file():
        return False
    if path.suffix == ".json":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


__all__ = ["ApplyOptions", "NotConfirmed", "PlanNotAsReviewed", "RunOutcome", "StalePlan",
           "execute",
           "load_saved", "looks_like_plan", "require_confirmation", "tty_confirm"]
