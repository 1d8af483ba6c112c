"""`reconcile plan SPEC... [-o text|json|markdown] [--out FILE] [--detailed-exitcode] [--no-probe]
[--state PATH|URL]`.

Loads the spec, observes the fleet, plans, renders to stdout and optionally saves the plan for
`reconcile apply FILE`. The state store's `applied` records tell drift (the fleet moved away from
an applied spec) from pending changes; the store is only read, and a missing one means nothing was
applied yet. Exit codes: 0 success (with --detailed-exitcode: 0 the fleet matches the spec, 2
changes, planned or waiting), 1 on an error or when the plan has blockers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reconciler.commands.options import (add_no_probe, add_output, add_specs, add_state,
                                       state_path, subcommand)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "plan", "show the actions that would make the fleet match the spec", __doc__, run)
    add_specs(parser)
    add_output(parser, {"text": "for a terminal", "json": "schemas/plan.schema.json",
                        "markdown": "for a pull-request comment"})
    parser.add_argument("--out", metavar="FILE",
                        help="also save the plan (with fingerprints) for `reconcile apply FILE`")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 0 when the fleet matches the spec, 2 when there are changes "
                             "(planned or waiting), 1 on error or blockers")
    add_no_probe(parser)
    add_state(parser, "its applied records tell drift from pending changes; read only, a "
                      "missing file means none")


def applied_records(state: Path | str, engine_key: str) -> dict[str, str]:
    """The store's applied fingerprints for the engine; none when the store does not exist.

    Planning only reads: a missing store file is not created, so `plan` leaves no files behind.
    """
    from reconciler.store import is_postgres_url, open_store

    if not is_postgres_url(state) and not Path(state).exists():
        return {}
    with open_store(state) as store:
        return store.applied(engine_key)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `reconcile --help` stays fast and does not need the engine client.
    from reconciler.commands.endpoints import open_endpoint
    from reconciler.observe.session import open_fleet
    from reconciler.plan import plan
    from reconciler.plan.render_json import render_json
    from reconciler.plan.render_markdown import render_markdown
    from reconciler.plan.render_text import render_text, use_color
    from reconciler.plan.planfile import MadeFor, save_plan, spec_files
    from reconciler.spec import load_desired

    desired = load_desired(args.specs)   # a SpecError is printed by the CLI, one issue a line
    with open_endpoint(desired) as endpoint:
        # Read before observing, so a broken store is reported without waiting for the fleet.
        applied = applied_records(state_path(args), endpoint.key)
        with open_fleet(desired, endpoint) as fleet:
            observed = fleet.observe(probe=not args.no_probe)
            # A saved plan says which engine it is for: apply refuses it anywhere else.
            identity = fleet.engine_identity() if args.out else None
    result = plan(desired, observed, applied)
    if args.output == "json":
        text = render_json(result)
    elif args.output == "markdown":
        text = render_markdown(result)
    else:
        text = render_text(result, color=use_color(sys.stdout))
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.out:
        assert identity is not None
        save_plan(result, args.out,
                  MadeFor(identity, spec_files(desired.sources), observed, applied))
        print(f"plan saved to {args.out}", file=sys.stderr)
    if result.blockers:
        return EXIT_ERROR
    # A change that must wait (VM not down, reboots not allowed) is still a difference: exit 0
    # means the fleet matches the spec, so a loop "until exit 0" never stops early.
    waiting = any(d.status in ("pending", "drift") for d in result.drift)
    if args.detailed_exitcode and (result.has_changes or waiting):
        return EXIT_CHANGES
    return EXIT_OK
