"""`reconcile demo SPEC`: the whole loop on the embedded lab, stage by stage.

1. validate the spec; 2. plan; 3. apply (as `apply --yes`); 4. plan again, which must show no
changes (exit 1 otherwise). The spec's engine must be the embedded lab (`lab: {fleet: ...}`). The
lab's state for that fleet is reset first, so the demo starts from the fleet file every time;
the demo keeps its own state store inside the lab's state folder for the same reason.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.commands.options import add_specs, subcommand

if TYPE_CHECKING:
    from reconciler.access.endpoint import EngineEndpoint
    from reconciler.spec.model import DesiredState


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "demo", "validate, plan, apply and plan again on the embedded lab", __doc__, run)
    add_specs(parser)
    parser.add_argument("--keep-state", action="store_true",
                        help="do not reset the lab state first (continue from the last run)")


def _stage(out: TextIO, number: int, title: str) -> None:
    rule = "=" * 78
    print(f"\n{rule}\n  {number}. {title}\n{rule}", file=out, flush=True)


def run(args: argparse.Namespace) -> int:
    from reconciler.commands.endpoints import open_endpoint
    from reconciler.errors import ReconcilerError, SpecError
    from reconciler.plan.render_text import use_color
    from reconciler.spec import load_desired
    from reconciler_lab.embedded import lab_state_dir
    from reconciler_lab.statelock import LabStateBusy, state_lock

    out = sys.stdout
    color = use_color(out)
    _stage(out, 1, "validate " + " ".join(args.specs))
    try:
        desired = load_desired(args.specs)
    except SpecError as err:
        for issue in err.issues:
            print(issue.format(), file=sys.stderr)
        return 1
    if not desired.engine.is_lab:
        raise ReconcilerError("reconcile demo runs on the embedded lab only: the spec's engine "
                              "must be `lab: {fleet: ...}` (use plan/apply for a real engine)")
    print(f"valid: {len(desired.host_profiles)} host profile(s), {len(desired.vms)} VM(s), "
          f"engine: embedded lab, fleet {desired.engine.lab_fleet}", file=out)

    state = lab_state_dir(desired.engine)
    if not args.keep_state and state.exists():
        if not ((state / "engine.json").exists() or (state / "tls").exists()):
            raise ReconcilerError(f"{state} does not look like a lab state folder; not "
                                  "resetting it (remove it or pass --keep-state)")
        try:
            # A lab running on this folder (`reconcile lab serve`, a controller) holds the lock:
            # wiping its state from under it would leave it saving into a folder we removed.
            with state_lock(state):
                shutil.rmtree(state)
        except LabStateBusy as err:
            raise ReconcilerError(f"reconcile demo cannot reset the lab state: {err}") from None
        print(f"reset the lab state in {state}: the fleet starts from its fleet file",
              file=out)
    state.mkdir(parents=True, exist_ok=True)
    store = Path(state) / "demo-state.db"

    with open_endpoint(desired) as endpoint:
        return _stages(desired, endpoint, store, out, color)


def _stages(desired: DesiredState, endpoint: EngineEndpoint, store: Path, out: TextIO,
            color: bool) -> int:
    from reconciler.apply.progress import LiveProgress, StepLines
    from reconciler.apply.runner import ApplyOptions, execute
    from reconciler.observe.session import open_fleet
    from reconciler.plan import plan
    from reconciler.plan.render_text import render_text
    from reconciler.store import open_store

    _stage(out, 2, "plan")
    with open_fleet(desired, endpoint) as fleet:
        observed = fleet.observe()
    first = plan(desired, observed)
    print(render_text(first, color=color), end="", file=out)

    _stage(out, 3, "apply --yes")
    out.flush()
    isatty = getattr(out, "isatty", None)
    progress = LiveProgress(out) if isatty and isatty() else StepLines(out)
    try:
        outcome = execute(desired, ApplyOptions(yes=True, state=store), endpoint, out=out,
                          progress=progress)
    finally:
        progress.close()
    if outcome.exit_code != 0:
        print("\ndemo: the apply did not succeed (see above)", file=out)
        return outcome.exit_code

    _stage(out, 4, "plan again")
    with open_fleet(desired, endpoint) as fleet:
        observed = fleet.observe()
    with open_store(store) as db:
        applied = db.applied(endpoint.key)
    second = plan(desired, observed, applied)
    print(render_text(second, color=color), end="", file=out)
    if second.has_changes:
        print(f"\ndemo FAILED: the second plan still has {second.summary.changes} change(s)",
              file=out)
        return 1
    print("\ndemo OK: the fleet converged; the second plan has no changes.", file=out)
    return 0
