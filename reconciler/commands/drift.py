"""`reconcile drift SPEC... [-o text|json|markdown] [--state PATH|URL] [--no-probe]`.

Observes the fleet, plans, records the drift items in the store's drift history (and the objects
found matching the spec, so that a later out-of-band change is told apart from a spec edit) and
reports each one with what differs, where (the spec location) and since when (first seen). Exit
codes: 0 in sync, 2 out of sync (pending, drift or blocked items; unmanaged ones alone do not
count), 1 on an error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from reconciler.commands.options import (add_no_probe, add_output, add_specs, add_state,
                                       state_path, subcommand)

EXIT_IN_SYNC = 0
EXIT_ERROR = 1
EXIT_OUT_OF_SYNC = 2
KEEP_RUNS = 1000


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "drift", "report where the fleet differs from the spec, and since when", __doc__, run)
    add_specs(parser)
    add_output(parser, {"text": "for a terminal", "json": "for machines",
                        "markdown": "for a pull-request comment"})
    add_state(parser, "holds the drift history")
    add_no_probe(parser)
    usage_errors_exit(parser, EXIT_ERROR)


def usage_errors_exit(parser: argparse.ArgumentParser, code: int) -> None:
    """Make this subcommand's usage errors exit `code`: argparse's own 2 would read as "out of
    sync" to a script or CI job that checks `reconcile drift`'s exit code."""
    def error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        parser.exit(code, f"{parser.prog}: error: {message}\n")
    parser.error = error  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from reconciler import drift
    from reconciler.commands.endpoints import open_endpoint
    from reconciler.observe.session import open_fleet
    from reconciler.plan import plan
    from reconciler.spec import load_desired
    from reconciler.store import open_store

    desired = load_desired(args.specs)   # a SpecError is printed by the CLI, one issue a line
    with open_endpoint(desired) as endpoint, open_store(state_path(args)) as store:
        key = endpoint.key
        run_id = store.start_run("drift", key)
        try:
            with open_fleet(desired, endpoint) as fleet:
                observed = fleet.observe(probe=not args.no_probe)
            result = plan(desired, observed, store.applied(key))
            not_seen = drift.unobserved(observed)
            # Shared with the controller: what matches the spec now is what a later out-of-band
            # change is measured against (drift), while spec edits stay pending.
            drift.record_converged(store, key, result, run_id, not_seen)
            kept = drift.carried(store, key, result, not_seen)
            _, since = drift.record(store, key, result, not_seen=not_seen)
        except BaseException as err:
            store.finish_run(run_id, "failed", str(err) or type(err).__name__)
            raise
        report = drift.build_report(result, key, since, kept=kept)
        counts = report.counts()
        store.finish_run(run_id, "in-sync" if report.in_sync else "out-of-sync",
                         ", ".join(f"{n} {c}" for c, n in counts.items() if n))
        # Often run from cron: keep a bounded history of these runs.
        store.prune_runs(key, "drift", KEEP_RUNS)
    sys.stdout.write(drift.RENDERERS[args.output](report))
    sys.stdout.flush()
    return EXIT_IN_SYNC if report.in_sync else EXIT_OUT_OF_SYNC
