"""`reconcile export ENGINE-SPEC [-o FILE] [--no-probe]`: write a spec describing the fleet as it is now.

Reads the engine named by ENGINE-SPEC, and our modprobe file and the vGPU manager from its GPU
hosts, and writes a spec (host profiles grouped by identical settings, VMs with their GPUs and
consoles) that plans to no changes. With -o, relative paths of the engine and
hostAccess blocks are rewritten to stay valid from the output file's folder."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from reconciler.commands.options import add_no_probe, subcommand
from reconciler.errors import ReconcilerError


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "export", "write a spec from the fleet as observed (adopt a running fleet)", __doc__, run)
    parser.add_argument("spec", metavar="ENGINE-SPEC", help="spec file with the engine block")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    add_no_probe(parser, "our modprobe file and the vGPU manager (read from the hosts) are not "
                         "exported")


def engine_blocks(path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The `engine` (and `hostAccess`) blocks exactly as the input spec wrote them."""
    from reconciler.spec.load import load_documents

    engine: dict[str, Any] | None = None
    access: dict[str, Any] | None = None
    for doc in load_documents([path]):
        data = getattr(doc, "data", None)
        if not isinstance(data, dict):
            continue
        engine = engine or data.get("engine")
        access = access or data.get("hostAccess")
    if not engine:
        raise ReconcilerError(f"{path}: no engine block to export from")
    return engine, access


# Spec keys that hold paths, relative to the folder of the file that names them (docs/spec.md).
_PATH_KEYS = (("caFile",), ("passwordFrom", "file"), ("lab", "state"), ("lab", "fleet"),
              ("ssh", "identityFile"), ("ssh", "knownHostsFile"), ("localRoots",))


def rebase_paths(block: dict[str, Any], src_dir: Path, dst_dir: Path) -> dict[str, Any]:
    """A copy of an `engine` / `hostAccess` block whose relative paths still name the same files
    when the block is written to a spec in `dst_dir` instead of `src_dir`."""
    from reconciler.spec.fleetref import is_fleet_path

    out: dict[str, Any] = json.loads(json.dumps(block))    # deep copy of plain YAML data
    for keys in _PATH_KEYS:
        parent: Any = out
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or not isinstance(parent.get(keys[-1]), str):
            continue
        value = parent[keys[-1]]
        if keys == ("lab", "fleet") and not is_fleet_path(value):
            continue                                       # a built-in fleet's name
        if value.startswith("~") or os.path.isabs(value):
            continue
        parent[keys[-1]] = os.path.relpath(os.path.abspath(src_dir / value),
                                           os.path.abspath(dst_dir))
    return out


def run(args: argparse.Namespace) -> int:
    from reconciler.export import ExportNotes, dump_spec, export_spec, is_gpu_host, \
        waits_for_reboot
    from reconciler.model.facts import Observed
    from reconciler.commands.endpoints import fleet_session
    from reconciler.spec import load_desired

    desired = load_desired([args.spec])   # a SpecError is printed by the CLI, one issue a line
    engine, access = engine_blocks(args.spec)
    if args.output:
        # Relative paths are taken from the folder of the file that names them: keep them
        # pointing at the same files from where the export is written.
        src, dst = Path(args.spec).parent, Path(args.output).parent
        engine = rebase_paths(engine, src, dst)
        access = rebase_paths(access, src, dst) if access else access
    # The input spec's own profiles and VMs must not narrow what we read: export everything.
    from dataclasses import replace
    with fleet_session(replace(desired, host_profiles=(), vms=())) as fleet:
        read = fleet.read_engine()
        probes: tuple[Any, ...] = ()
        if not args.no_probe:
            # Our modprobe file and the vGPU manager are on the hosts: probe the GPU hosts.
            names = [h.name for h in read.hosts
                     if is_gpu_host(h) or h.custom_kernel_cmdline.strip()]
            transports = fleet.endpoint.transports(names, read.addresses)
            probes = fleet.probe(transports) if transports else ()
    observed = Observed(clusters=read.clusters, hosts=read.hosts, vms=read.vms, probes=probes)
    notes = ExportNotes()
    spec = export_spec(observed, engine, access, notes)
    stamp = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    header = f"Exported by `reconcile export {args.spec}` at {stamp}."
    waiting = sorted(h.name for h in observed.hosts if waits_for_reboot(h))
    if waiting:
        header += (f"\nConfigured kernel args not booted yet on {', '.join(waiting)}: their "
                   "profiles say rollout.reboot: never,\nso adopting the fleet reboots nothing; "
                   "remove it to let the reconciler reboot them.")
    failed = sorted(p.host for p in probes if not p.ok)
    if args.no_probe or failed:
        which = "any host" if args.no_probe else ", ".join(failed)
        header += (f"\nNot probed: {which}; our modprobe file and the vGPU manager are not "
                   "exported there.")
    if notes.lines:
        header += "\nLeft as found (not in this spec):\n" + "\n".join(f"  {n}" for n in notes.lines)
    text = dump_spec(spec, header=header)
    if args.output:
        write_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, so a reader never sees half a spec."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ReconcilerError(f"cannot write {path}: {exc.strerror}") from None
