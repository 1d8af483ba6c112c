"""Executor overhead: what an apply costs beyond waiting for the engine.

A generated lab fleet (default 100 hosts x 2 GPUs, 1,000 VMs) is served by a lab engine in a
child process with time_scale 0, so engine operations complete at once. The spec asks every host
for one more kernel argument (a host cycle each: cmdline, deactivate, install, activate, verify)
and every vGPU VM for `secondaryDisplay: none` (one mediated-device update per vGPU instance),
with restarts allowed so that VMs holding a host are stopped and started around its cycle. Polls
never sleep (interval 0), so the figures are:

- wall: seconds of `Executor.run` (every step journaled, performed and verified by re-reading);
- engine: seconds the lab spent answering those requests (measured in the lab process);
- overhead: wall - engine, i.e. our code, the SDK, HTTP and the journal;

plus requests and overhead per step. No host transports (engine facts only), so host probes,
which cost what the hosts cost, are not part of the figure.

    python -m benchmarks.bench_apply [--hosts 100] [--vms 1000] [--gpus-per-host 2]
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def _serve(hosts: int, gpus: int, vms: int, state: str, conn: Any) -> None:
    from reconciler_lab.fleet import generate_fleet
    from reconciler_lab.server import LabServer
    fleet = generate_fleet(hosts, gpus, vms)
    with LabServer(fleet, Path(state), time_scale=0.0) as lab:
        conn.send({"url": lab.url, "ca_file": str(lab.ca_file), "username": lab.username,
                   "password": lab.password})
        mark = 0
        while True:
            message = conn.recv()
            if message == "stop":
                return
            records = lab.request_log
            if message == "mark":
                mark = len(records)
                conn.send(mark)
            elif message == "since-mark":
                chosen = records[mark:]
                conn.send((len(chosen), sum(r.seconds for r in chosen)))


def _spec(target: dict[str, Any], observed: Any, folder: Path) -> Path:
    password = folder / "password"
    password.write_text(target["password"])
    password.chmod(0o600)
    clusters = sorted({h.cluster for h in observed.hosts})
    vms = []
    for vm in observed.vms:
        entry: dict[str, Any] = {"name": vm.name, "restart": "allowed"}
        devices = [d.name for d in vm.host_devices if not d.placeholder]
        if vm.mediated_devices:
            entry["vgpu"] = {"type": vm.mediated_devices[0].mdev_type,
                             "instances": len(vm.mediated_devices), "secondaryDisplay": "none"}
        elif devices and len(vm.pinned_hosts) == 1:
            entry["passthrough"] = {"host": vm.pinned_hosts[0], "devices": devices}
        else:
            continue          # no GPU: not ours to manage (it migrates during maintenance)
        vms.append(entry)
    body = {
        "apiVersion": "gpu-reconciler/v1",
        "engine": {"url": target["url"], "username": target["username"],
                   "passwordFrom": {"file": str(password)}, "caFile": target["ca_file"]},
        "hostProfiles": [{"name": f"all-{c}", "selector": {"cluster": c},
                          "kernel": {"iommu": True, "blacklistNouveau": True,
                                     "extraArgs": ["pci=realloc"]},
                          "rollout": {"maxUnavailable": 5, "reboot": "allowed"}}
                         for c in clusters],
        "vms": vms,
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--gpus-per-host", type=int, default=2)
    args = parser.parse_args()

    from reconciler import log as rlog
    from reconciler.apply.executor import Executor, FleetAccess, Timeouts
    from reconciler.apply.ops import SdkEngineOps
    from reconciler.apply.progress import LogProgress
    from reconciler.apply.rollout import Budget, max_unavailable_by_host
    from reconciler.apply.verify import ObjectReader
    from reconciler.access.endpoint import RealEndpoint
    from reconciler.engine.retry import Backoff, Timing
    from reconciler.observe.session import open_fleet
    from reconciler.plan import plan
    from reconciler.spec import load_desired
    from reconciler.store import Store

    rlog.configure("error", "json")
    # Polls that never sleep: the wall time is then work, not waiting.
    zero = Backoff(initial=0.0, cap=0.0, factor=1.0, jitter=0.0)
    timing = Timing(retry=Backoff(initial=0.01, cap=0.1), attempts=6, poll=zero,
                    verify_timeout=30.0)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_serve, args=(args.hosts, args.gpus_per_host, args.vms,
                                                  str(folder / "lab"), child))
        server.start()
        try:
            target = parent.recv()
            from reconciler.engine.client import connect
            from reconciler.observe.engine import read_engine
            from reconciler.spec.model import EngineSpec
            probe_conn = connect(EngineSpec(url=target["url"], username=target["username"],
                                            ca_file=Path(target["ca_file"])),
                                 password=target["password"])
            engine = read_engine(probe_conn, None)
            probe_conn.close()
            from reconciler.model.facts import Observed
            spec = _spec(target, Observed(engine.clusters, engine.hosts, engine.vms), folder)
            desired = load_desired([str(spec)])
            endpoint = RealEndpoint(desired.engine, desired.host_access, timing=timing)
            with open_fleet(desired, endpoint) as fleet, Store(folder / "state.db") as store:
                started = time.perf_counter()
                observed = fleet.observe()
                the_plan = plan(desired, observed)
                plan_seconds = time.perf_counter() - started
                kinds: dict[str, int] = {}
                for a in the_plan.actions:
                    kinds[a.kind] = kinds.get(a.kind, 0) + 1
                print(f"fleet: {args.hosts} hosts, {args.vms} VMs; plan: "
                      f"{the_plan.summary.changes} actions in {len(the_plan.waves)} waves, "
                      f"{len(the_plan.blockers)} blockers (observe + plan {plan_seconds:.1f}s)")
                print("actions: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
                reader = ObjectReader(fleet.connection, observed, {})
                run_id = store.start_run("apply", target["url"])
                # No worker factory: cycles run one after another, so the figure is per step.
                access = FleetAccess(SdkEngineOps(fleet.connection, reader, timing, run_id))
                executor = Executor(
                    access, store, run_id,
                    Budget(max_unavailable_by_host(desired, observed.hosts)),
                    progress=LogProgress(io.StringIO()),
                    timeouts=Timeouts.for_hosts(120.0, 120.0))
                before = fleet.request_count
                parent.send("mark")
                parent.recv()
                started = time.perf_counter()
                result = executor.run(the_plan)
                wall = time.perf_counter() - started
                parent.send("since-mark")
                served, engine_seconds = parent.recv()
                requests = fleet.request_count - before
                store.finish_run(run_id, "ok" if result.ok else "failed")
            steps = len(result.steps)
            overhead = wall - engine_seconds
            print(f"steps: {steps} ({len(result.failed)} failed, "
                  f"{len(result.by_outcome('not-started'))} not started)")
            print(f"wall {wall:.2f}s = engine {engine_seconds:.2f}s + overhead {overhead:.2f}s")
            print(f"requests: {requests} sent ({served} served), {requests / max(steps, 1):.1f} "
                  "per step")
            print(f"overhead per step: {overhead / max(steps, 1) * 1000:.1f} ms; per request: "
                  f"{overhead / max(requests, 1) * 1000:.2f} ms")
            if result.failed:
                first = result.failed[0]
                print(f"first failure: {first.target} {first.action}: {first.message}")
        finally:
            parent.send("stop")
            server.join(timeout=30)


if __name__ == "__main__":
    main()
