"""`reconcile fleet SPEC... [-o text|json|html] [--out FILE] [--no-probe] [--state PATH|URL]`:
the fleet GPU map.

Observes the fleet, plans (only to learn its drift and blockers, which the map shows where they
apply; nothing is changed) and prints per cluster, host and physical GPU what runs there, the
seats per vGPU type and how many more VMs of each type fit.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconciler.commands.options import (add_no_probe, add_output, add_specs, add_state,
                                       state_path, subcommand)


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "fleet", "map every GPU: mode, VMs, seats per vGPU type, headroom", __doc__, run)
    add_specs(parser)
    add_output(parser, {"text": "for a terminal", "json": "schemas/fleet.schema.json",
                        "html": "one self-contained page"})
    parser.add_argument("--out", metavar="FILE",
                        help="write to FILE (replaced atomically) instead of stdout")
    add_no_probe(parser, "which GPU a vGPU sits on stays unknown")
    add_state(parser, "its applied records tell drift from pending changes; read only, a "
                      "missing file means none")


def run(args: argparse.Namespace) -> int:
    from reconciler.commands.endpoints import fleet_session
    from reconciler.commands.plan import applied_records
    from reconciler.fleetmap import build_fleet_map
    from reconciler.fleetmap.render_html import render_html
    from reconciler.fleetmap.render_json import render_json
    from reconciler.fleetmap.render_text import render_text
    from reconciler.plan import plan
    from reconciler.spec import load_desired

    desired = load_desired(args.specs)
    with fleet_session(desired) as fleet:
        applied = applied_records(state_path(args), fleet.endpoint.key)
        observed = fleet.observe(probe=not args.no_probe)
    at = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    fmap = build_fleet_map(observed, plan(desired, observed, applied), desired, generated_at=at)
    if args.output == "json":
        text = render_json(fmap)
    elif args.output == "html":
        text = render_html(fmap)
    else:
        text = render_text(fmap, {v.vgpu.type for v in desired.vms if v.vgpu})
    if args.out:
        _write_atomic(Path(args.out), text)
        print(f"fleet map written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
