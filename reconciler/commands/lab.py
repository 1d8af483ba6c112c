"""`reconcile lab serve|generate|reset|drift`: run and manage the lab engine."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler_lab.embedded import DEFAULT_STATE_ROOT, fleet_key
from reconciler_lab.engine import EngineFault, LabEngine
from reconciler_lab.faults import FaultConfig
from reconciler_lab.fleetmark import check_fleet_mark
from reconciler_lab.fleet import LabFleet
from reconciler_lab.server import LabError, LabServer, _load_fleet
from reconciler_lab.sharing import ServingLab, publish, serving_lab, withdraw
from reconciler_lab.statelock import LabStateBusy, state_lock


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab", help="run and manage the lab engine (an oVirt simulator)",
        description="The lab engine: an oVirt REST API simulator with simulated GPU hosts, for "
                    "demos, tests and CI (docs/lab.md). A spec reaches it embedded "
                    "(engine: {lab: {fleet: demo}}) or served (lab serve).",
        epilog="examples:\n"
               "  reconcile lab serve --fleet demo              # serve it; prints url, CA file\n"
               "  reconcile lab generate --hosts 50 --gpus-per-host 4 --vms 300 -o big.yaml\n"
               "  reconcile lab drift --fleet demo --kind kernel-args --host m60-01\n"
               "  reconcile lab reset --fleet demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    parser.set_defaults(func=lambda _args: (parser.print_help(sys.stderr), 1)[1])

    serve = sub.add_parser(
        "serve", help="serve a lab engine in the foreground",
        description="Serve a lab engine on 127.0.0.1 until SIGTERM or Ctrl-C. Prints one JSON "
                    "line when ready: url, ca_file, username and password_file (a fresh random "
                    "password, mode 0600). Commands whose spec names the same lab state "
                    "(engine: {lab: {fleet, state}}) use this running lab instead of starting "
                    "their own.")
    _fleet_args(serve, required=True)
    serve.add_argument("--port", type=_port, default=0, help="TCP port (default: any free port)")
    serve.add_argument("--http", action="store_true", help="plain HTTP instead of TLS")
    serve.add_argument("--faults", default="", metavar="SPEC",
                       help="inject faults: error-rate=0.1,latency-ms=5,drop-rate=0.01,"
                            "token-ttl=30,never-returns=host1,install-fails=host2")
    serve.add_argument("--time-scale", type=float, default=0.01, metavar="X",
                       help="simulated seconds are multiplied by X (default 0.01: a host reboot "
                            "takes a fraction of a second)")
    serve.set_defaults(func=run_serve)

    gen = sub.add_parser(
        "generate", help="generate a fleet file",
        description="Write a synthetic fleet: clusters of up to 50 hosts (every fourth AMD), "
                    "M60 / T4 / A2 vGPU hosts and H100 / Quadro passthrough hosts, VMs with vGPUs, "
                    "passthrough or no GPU (docs/lab-fleets.md). Deterministic per --seed.")
    gen.add_argument("--hosts", type=int, required=True, metavar="N", help="number of hosts")
    gen.add_argument("--gpus-per-host", type=int, required=True, metavar="N",
                     help="physical GPUs per host")
    gen.add_argument("--vms", type=int, required=True, metavar="N", help="number of VMs")
    gen.add_argument("--seed", type=int, default=0, metavar="N",
                     help="random seed (default 0): the same seed gives the same fleet")
    gen.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="write here instead of stdout")
    gen.set_defaults(func=run_generate)

    reset = sub.add_parser(
        "reset", help="forget a lab's state (it restarts from its fleet)",
        description="Remove a lab state folder, so the next lab on it starts from its fleet "
                    "file again. Refused while a lab runs on it, and for a folder that does not "
                    "look like a lab's.")
    _fleet_args(reset, required=False)
    reset.set_defaults(func=run_reset)

    drift = sub.add_parser(
        "drift", help="make an out-of-band change in a lab's state",
        description="Change the lab as someone outside the reconciler would, with the engine's "
                    "normal audit event: on a running lab (lab serve, or a controller's "
                    "embedded lab) through its API, otherwise in its saved state.")
    _fleet_args(drift, required=True)
    drift.add_argument("--kind", required=True,
                       choices=["vgpu-removed", "kernel-args", "device-detached"],
                       help="kernel-args: set a host's engine custom cmdline (default: drop its "
                            "last argument); vgpu-removed: delete a VM's mediated devices; "
                            "device-detached: detach a VM's host device (its IOMMU group)")
    drift.add_argument("--host", help="host to change (kernel-args; default: the fleet's first "
                                      "host)")
    drift.add_argument("--vm", help="VM to change (vgpu-removed, device-detached; default: the "
                                    "first that has some)")
    drift.add_argument("--value", help="the new custom kernel command line (kernel-args)")
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
    parser.add_argument("--fleet", required=required, metavar="NAME|FILE",
                        help="a built-in fleet name (demo) or a fleet file")
    parser.add_argument("--state", type=Path, metavar="DIR",
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
                # Commands whose spec names this state use this lab (reconciler_lab/sharing.py).
                publish(state, url=server.url, ca_file=server.ca_file, username=server.username,
                        password=server.password, time_scale=server.time_scale,
                        fleet_sha256=_digest(args.fleet))
                password_file = state / "password"
                fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(server.password + "\n")
                os.chmod(password_file, 0o600)
                print(json.dumps({"url": server.url,
                                  "ca_file": str(server.ca_file) if server.ca_file else None,
                                  "username": server.username,
                                  "password_file": str(password_file)}), flush=True)
                try:
                    while not stop.wait(0.5):
                        pass
                finally:
                    withdraw(state)
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
    text = dump(generate(args.hosts, args.gpus_per_host, args.vms, seed=args.seed))
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
    with ExitStack() as stack:
        try:
            stack.enter_context(state_lock(state))
        except LabStateBusy:
            # A running lab would save over a change made to its state: use its API instead.
            served = serving_lab(state)
            if served is None:
                raise
            print(_drift_through_api(served, args.kind, host=args.host, vm=args.vm,
                                     value=args.value))
            return 0
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


def _digest(fleet: str) -> str | None:
    from reconciler_lab.fleetmark import fleet_file
    try:
        return hashlib.sha256(fleet_file(fleet).read_bytes()).hexdigest()
    except OSError:
        return None


def _drift_through_api(served: ServingLab, kind: str, *, host: str | None, vm: str | None,
                       value: str | None) -> str:
    """The change `LabEngine.drift` makes, made through a running lab's API as an administrator
    would (the engine's rules apply: a VM's host devices are detached only while it is down)."""
    import ovirtsdk4 as sdk
    import ovirtsdk4.types as types

    conn = sdk.Connection(url=served.url, username=served.username, password=served.password,
                          ca_file=str(served.ca_file) if served.ca_file else None,
                          insecure=served.ca_file is None)
    try:
        system = conn.system_service()
        if kind == "kernel-args":
            hosts = system.hosts_service()
            listed = hosts.list(search=f"name={host}") if host else hosts.list()
            if not listed:
                raise ReconcilerError(f"drift failed: no host named {host!r}")
            h = listed[0]
            args = ((h.os.custom_kernel_cmdline if h.os else "") or "").split()
            new = value if value is not None else " ".join(args[:-1])
            hosts.host_service(h.id).update(types.Host(
                os=types.OperatingSystem(custom_kernel_cmdline=new)))
            return f"host {h.name}: custom_kernel_cmdline set to {new!r} (through the running lab)"
        vms = system.vms_service()
        found = vms.list(search=f"name={vm}" if vm else None,
                         follow="mediated_devices,host_devices")
        if kind == "vgpu-removed":
            chosen = next((v for v in found if v.mediated_devices), None)
            if chosen is None:
                raise ReconcilerError("drift failed: no VM with mediated devices to drift")
            service = vms.vm_service(chosen.id).mediated_devices_service()
            for m in chosen.mediated_devices:
                service.device_service(m.id).remove()
            return f"vm {chosen.name}: mediated devices removed (through the running lab)"
        chosen = next((v for v in found if any(not d.placeholder for d in v.host_devices or ())),
                      None)
        if chosen is None:
            raise ReconcilerError("drift failed: no VM with host devices to drift")
        device = next(d for d in chosen.host_devices if not d.placeholder)
        vms.vm_service(chosen.id).host_devices_service().device_service(device.id).remove()
        return (f"vm {chosen.name}: host device {device.name} detached (through the running "
                "lab)")
    except sdk.Error as err:
        fault = getattr(err, "fault", None)
        raise ReconcilerError(f"drift failed: {fault.detail if fault else err}") from None
    finally:
        conn.close()
