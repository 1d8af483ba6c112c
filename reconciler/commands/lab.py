"""`reconcile lab serve|generate|reset|drift`: run and manage the lab engine."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler_lab.embedded import DEFAULT_STATE_ROOT, fleet_key
from reconciler_lab.engine import EngineFault, LabEngine
from reconciler_lab.faults import FaultConfig
from reconciler_lab.fleetmark import check_fleet_mark
from reconciler_lab.fleet import LabFleet
from reconciler_lab.server import LabError, LabServer, _load_fleet
from reconciler_lab.statelock import state_lock


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lab", help="run and manage the lab engine (an oVirt simulator)")
    sub = parser.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    parser.set_defaults(func=lambda _args: (parser.print_help(sys.stderr), 1)[1])

    serve = sub.add_parser("serve", help="serve a lab engine in the foreground")
    _fleet_args(serve, required=True)
    serve.add_argument("--port", type=_port, default=0, help="TCP port (default: any free port)")
    serve.add_argument("--http", action="store_true", help="plain HTTP instead of TLS")
    serve.add_argument("--faults", default="", metavar="SPEC",
                       help="error-rate=0.1,latency-ms=5,drop-rate=0.01,token-ttl=30,"
                            "never-returns=host1,install-fails=host2")
    serve.add_argument("--time-scale", type=float, default=0.01, metavar="X",
                       help="simulated seconds are multiplied by X (default 0.01)")
    serve.set_defaults(func=run_serve)

    gen = sub.add_parser("generate", help="generate a fleet file")
    gen.add_argument("--hosts", type=int, required=True)
    gen.add_argument("--gpus-per-host", type=int, required=True)
    gen.add_argument("--vms", type=int, required=True)
    gen.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    gen.set_defaults(func=run_generate)

    reset = sub.add_parser("reset", help="forget a lab's state (it restarts from its fleet)")
    _fleet_args(reset, required=False)
    reset.set_defaults(func=run_reset)

    drift = sub.add_parser("drift", help="make an out-of-band change in a stopped lab's state")
    _fleet_args(drift, required=True)
    drift.add_argument("--kind", required=True,
                       choices=["vgpu-removed", "kernel-args", "device-detached"])
    drift.add_argument("--host", help="host to change (kernel-args)")
    drift.add_argument("--vm", help="VM to change (vgpu-removed, device-detached)")
    drift.add_argument("--value", help="new custom kernel command line (kernel-args)")
    drift.set_defaults(func=run_drift)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0: any free port)")
    return port


def _fleet_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--fleet", required=required, help="fleet name (deploy/lab/fleets) or file")
    parser.add_argument("--state", type=Path,
                        help=f"state folder (default {DEFAULT_STATE_ROOT}/<fleet>)")


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state is not None:
        return Path(args.state)
    if not args.fleet:
        raise ReconcilerError("give --fleet or --state")
    return DEFAULT_STATE_ROOT / fleet_key(args.fleet)


def run_serve(args: argparse.Namespace) -> int:
    faults = FaultConfig.parse(args.faults) if args.faults else None
    if args.time_scale < 0:
        raise ReconcilerError("--time-scale must not be negative")
    state = _state_dir(args)
    fleet = _load_fleet(args.fleet)
    if faults is not None:
        _check_fault_hosts(faults, fleet)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: object) -> None:
        stop.set()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with state_lock(state):
            check_fleet_mark(state, args.fleet)
            # A served lab listens on a real port: give it a fresh random password, handed over
            # only through the 0600 password file.
            server = LabServer(fleet, state, port=args.port, tls=not args.http, faults=faults,
                               time_scale=args.time_scale, password=secrets.token_urlsafe(18))
            try:
                server.start()
            except OSError as err:
                raise LabError(f"cannot start the lab in {state}: {err.strerror or err}") from None
            with server:
                password_file = state / "password"
                fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(server.password + "\n")
                os.chmod(password_file, 0o600)
                print(json.dumps({"url": server.url,
                                  "ca_file": str(server.ca_file) if server.ca_file else None,
                                  "username": server.username,
                                  "password_file": str(password_file)}), flush=True)
                while not stop.wait(0.5):
                    pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _check_fault_hosts(faults: FaultConfig, fleet: LabFleet) -> None:
    """A misspelt host in --faults would silently inject nothing: refuse it instead."""
    known = {host.name for host in fleet.hosts}
    for option, names in (("never-returns", faults.never_returns),
                          ("install-fails", faults.install_fails)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ReconcilerError(f"--faults {option}: no host named {', '.join(unknown)} in "
                                  f"fleet {fleet.name!r}")


def run_generate(args: argparse.Namespace) -> int:
    from reconciler_lab import fleet as fleet_mod
    generate = getattr(fleet_mod, "generate_fleet", None)
    dump = getattr(fleet_mod, "dump_fleet", None)
    if generate is None or dump is None:
        raise LabError("the fleet generator is not available in this build")
    for name in ("hosts", "gpus_per_host", "vms"):
        if getattr(args, name) < 0:
            raise ReconcilerError(f"--{name.replace('_', '-')} must not be negative")
    text = dump(generate(args.hosts, args.gpus_per_host, args.vms))
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as err:
            raise ReconcilerError(f"cannot write {args.output}: {err.strerror or err}") from None
    else:
        sys.stdout.write(text)
    return 0


def run_reset(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    if state.exists():
        if not (state / "engine.json").exists() and not (state / "tls").exists():
            raise ReconcilerError(f"{state} does not look like a lab state folder; not removing")
        with state_lock(state):     # never pull the state from under a running lab
            shutil.rmtree(state)
        print(f"removed {state}")
    else:
        print(f"nothing to reset at {state}")
    return 0


def run_drift(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    fleet = _load_fleet(args.fleet)
    # A running lab would overwrite the change with its own state: drift only a stopped lab.
    with state_lock(state):
        check_fleet_mark(state, args.fleet)
        engine = LabEngine(fleet, state)
        try:
            done = engine.drift(args.kind, host=args.host, vm=args.vm, value=args.value)
        except EngineFault as fault:
            raise ReconcilerError(f"drift failed: {fault.detail}") from None
        finally:
            engine.stop()
    print(done)
    return 0
