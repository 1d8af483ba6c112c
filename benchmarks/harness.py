"""Fleet-scale workers of `python -m benchmarks`: one lab fleet, our plan against the N+1 walk.

    python -m benchmarks.harness fleet --hosts 1000 [--latency-ms 5] --json FILE
    python -m benchmarks.harness nplus1 --target FILE --json FILE      (started by `fleet`)

`fleet` generates N hosts x 8 GPUs with 10 VMs per host and starts the lab engine on it (TLS, in
this process) without its background serialisation. Then, each in a fresh process:

1. `reconcile plan --no-probe -o json SPEC` -- the real CLI, against that lab, with a spec that
   manages every cluster and every GPU VM of the fleet: observe (bulk `follow` reads) + plan +
   render. Host probes are left out here (`--no-probe`); they are measured on their own
   (`benchmarks.bench_probe`). It runs twice: **cold**, first against the fresh lab, whose answers
   then include serialising the whole fleet (as a real engine's answers include its own work), and
   **warm**, again, with every object the lab serves cached.
2. The same engine facts read the N+1 way, as per-resource tools do: list clusters, hosts, each
   host's devices, VMs, then each VM's host devices and mediated devices (3 + H + 2 x V requests),
   one synchronous request at a time on one keep-alive connection. It runs on the warm lab, so
   the N+1 / plan ratios compare warm with warm.

Engine requests, bytes sent by the lab (on the wire, gzip where the client accepts it) and the lab's
own handling time come from the lab's request log; wall time and peak RSS from the child's own
rusage. With `--latency-ms` the lab adds that delay to every API request (its latency fault).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import add_json_option, peak_rss_mib, read_json, run_module, write_json

GPUS_PER_HOST = 8
VMS_PER_HOST = 10
API_PREFIX = "/ovirt-engine/api"


# ---- the spec for a generated fleet --------------------------------------------------------------

def fleet_spec(fleet: Any, *, url: str, ca_file: Path, username: str,
               password_file: Path) -> dict[str, Any]:
    """A spec that manages the whole generated fleet as it is meant to be.

    One profile per cluster (IOMMU on, nouveau blacklisted on the kernel line: what the generated
    hosts are configured with; the ~10 % that have not booted it yet get a pending host cycle),
    every vGPU VM with its type and count, every passthrough VM with its host and device.
    """
    profiles = [{"name": f"profile-{c.name}", "selector": {"cluster": c.name},
                 "kernel": {"iommu": True, "blacklistNouveau": True},
                 "rollout": {"maxUnavailable": 2, "reboot": "allowed"}}
                for c in fleet.clusters]
    vms: list[dict[str, Any]] = []
    for vm in fleet.vms:
        if vm.mediated_devices:
            vms.append({"name": vm.name,
                        "vgpu": {"type": vm.mediated_devices[0].mdev_type,
                                 "instances": len(vm.mediated_devices)},
                        "restart": "whenDown"})
        elif vm.host_devices and vm.pinned_hosts:
            vms.append({"name": vm.name,
                        "passthrough": {"host": vm.pinned_hosts[0],
                                        "devices": list(vm.host_devices)},
                        "restart": "whenDown"})
    return {"apiVersion": "gpu-reconciler/v1",
            "engine": {"url": url, "username": username,
                       "passwordFrom": {"file": str(password_file)}, "caFile": str(ca_file)},
            "hostProfiles": profiles, "vms": vms}


# ---- the N+1 walk (runs in its own process) ------------------------------------------------------

def nplus1_walk(target: dict[str, Any], budget: float) -> dict[str, Any]:
    """Read hosts, devices, VMs and VM devices one resource at a time.

    `budget` bounds the wall time: a phase that would overrun its share stops early and its
    remaining requests are extrapolated at the rate measured in that phase (reported as such).
    """
    from reconciler.engine.client import check_connection, connect
    from reconciler.spec.model import EngineSpec

    spec = EngineSpec(url=target["url"], username=target["username"],
                      ca_file=Path(target["ca_file"]), timeout_seconds=600)
    password = Path(target["password_file"]).read_text().strip()
    conn = connect(spec, password=password, connections=1)
    check_connection(conn)
    started = time.perf_counter()
    system = conn.system_service()
    system.clusters_service().list()
    hosts_service = system.hosts_service()
    vms_service = system.vms_service()
    hosts = hosts_service.list()
    vms = vms_service.list()
    host_requests, vm_requests = len(hosts), 2 * len(vms)
    total_requests = 3 + host_requests + vm_requests
    # The host phase may use half the budget at most, so the VM phase always gets measured.
    host_budget = budget / 2
    phases: dict[str, dict[str, Any]] = {}

    def phase(name: str, items: list[Any], per_item: int, fetch: Any, share: float) -> None:
        t0 = time.perf_counter()
        done = 0
        for item in items:
            fetch(item)
            done += 1
            if time.perf_counter() - t0 > share and done < len(items):
                break
        spent = time.perf_counter() - t0
        phases[name] = {"items": len(items), "done": done, "seconds": spent,
                        "requests": done * per_item,
                        "estimated_seconds": spent * len(items) / max(1, done)}

    phase("host devices", hosts, 1,
          lambda h: hosts_service.host_service(h.id).devices_service().list(), host_budget)

    def vm_devices(v: Any) -> None:
        vm = vms_service.vm_service(v.id)
        vm.host_devices_service().list()
        vm.mediated_devices_service().list()

    left = max(budget - (time.perf_counter() - started), budget * 0.1)
    phase("vm devices", vms, 2, vm_devices, left)
    measured = time.perf_counter() - started
    extrapolated = any(p["done"] < p["items"] for p in phases.values())
    estimate = measured + sum(p["estimated_seconds"] - p["seconds"] for p in phases.values())
    sent = conn.request_count
    conn.close(logout=False)
    return {"seconds": estimate, "measured_seconds": measured, "extrapolated": extrapolated,
            "requests": total_requests, "requests_sent": sent, "xml_bytes": conn.bytes_received,
            "phases": phases, "hosts": len(hosts), "vms": len(vms),
            "peak_rss_mib": peak_rss_mib()}


# ---- one fleet configuration ---------------------------------------------------------------------

def _observed_event(stderr: str) -> dict[str, Any]:
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "observe.finished":
            return event
    return {}


def _lab_figures(records: list[Any]) -> dict[str, Any]:
    api = [r for r in records if r.path == API_PREFIX or r.path.startswith(API_PREFIX + "/")]
    return {"requests": len(api), "wire_bytes": sum(r.bytes_sent for r in api),
            "lab_seconds": sum(r.seconds for r in api),
            "errors": sum(1 for r in api if r.status >= 400 or r.status == 0)}


def _plan_run(lab: Any, spec_file: Path, timeout: float) -> dict[str, Any]:
    """`reconcile plan --no-probe -o json SPEC` in a fresh process against `lab`."""
    lab.clear_request_log()
    run = run_module("reconciler", ["--log-format", "json", "--log-level", "info",
                                    "plan", "--no-probe", "-o", "json", str(spec_file)],
                     timeout=timeout)
    figures: dict[str, Any] = {"seconds": run.seconds, "peak_rss_mib": run.peak_rss_mib,
                               "exit_code": run.returncode, "timed_out": run.timed_out,
                               **_lab_figures(lab.request_log)}
    figures["observe_seconds"] = _observed_event(run.stderr).get("seconds")
    try:
        doc = json.loads(run.stdout)
        figures["actions"] = len(doc.get("actions", []))
        figures["blockers"] = len(doc.get("blockers", []))
    except ValueError:
        figures["error"] = (run.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return figures


def run_fleet(hosts: int, latency_ms: float, budget: float, timeout: float) -> dict[str, Any]:
    from reconciler_lab.faults import FaultConfig
    from reconciler_lab.fleet import generate_fleet
    from reconciler_lab.server import LabServer

    result: dict[str, Any] = {"hosts": hosts, "gpus_per_host": GPUS_PER_HOST,
                              "vms": hosts * VMS_PER_HOST, "latency_ms": latency_ms,
                              "probes": False}
    t0 = time.perf_counter()
    fleet = generate_fleet(hosts, GPUS_PER_HOST, hosts * VMS_PER_HOST)
    result["devices"] = sum(len(h.devices) for h in fleet.hosts)
    result["generate_seconds"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        # No background serialisation: the cold plan's first reads pay for it.
        lab = LabServer(fleet, work / "state", faults=FaultConfig(latency_ms=latency_ms),
                        warm=False)
        lab.start()
        result["lab_start_seconds"] = time.perf_counter() - t0
        try:
            assert lab.ca_file is not None
            password_file = work / "password"
            password_file.touch(mode=0o600)
            password_file.write_text(lab.password + "\n")
            password_file.chmod(0o600)
            spec = fleet_spec(fleet, url=lab.url, ca_file=lab.ca_file, username=lab.username,
                              password_file=password_file)
            spec_file = work / "spec.yaml"
            spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
            result["spec_vms"] = len(spec["vms"])

            result["plan_cold"] = _plan_run(lab, spec_file, timeout)
            result["plan_warm"] = warm = _plan_run(lab, spec_file, timeout)

            target = work / "target.json"
            write_json(target, {"url": lab.url, "ca_file": str(lab.ca_file),
                                "username": lab.username, "password_file": str(password_file)})
            out = work / "nplus1.json"
            lab.clear_request_log()
            run = run_module("benchmarks.harness", ["nplus1", "--target", str(target),
                                                    "--budget", str(budget), "--json", str(out)],
                             timeout=timeout)
            naive = read_json(out) or {"error": (run.stderr.strip().splitlines()
                                                 or ["no output"])[-1][:300]}
            naive.update({"peak_rss_mib": run.peak_rss_mib, "exit_code": run.returncode,
                          "timed_out": run.timed_out, "lab": "warm"})
            if "seconds" in naive:
                # Compare like with like: the whole process, as for `reconcile plan`; the walk
                # alone (after login) is compared with the plan's observe step.
                naive["walk_seconds"] = naive["seconds"]
                naive["seconds"] = run.seconds + naive["seconds"] - naive["measured_seconds"]
            lab_side = _lab_figures(lab.request_log)
            naive["wire_bytes"] = lab_side["wire_bytes"]
            naive["lab_seconds"] = lab_side["lab_seconds"]
            naive["errors"] = lab_side["errors"]
            seconds = [r.seconds for r in lab.request_log]
            if seconds:
                naive["lab_median_ms"] = statistics.median(seconds) * 1000
            result["nplus1"] = naive
            if warm.get("seconds") and naive.get("seconds"):
                # Both against the warm lab.
                result["ratio"] = naive["seconds"] / warm["seconds"]
                if warm.get("observe_seconds"):
                    result["ratio_observe"] = naive["walk_seconds"] / warm["observe_seconds"]
        finally:
            lab.stop()
    result["lab_peak_rss_mib"] = peak_rss_mib()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fleet = sub.add_parser("fleet", help="one fleet size: our plan and the N+1 walk")
    fleet.add_argument("--hosts", type=int, required=True)
    fleet.add_argument("--latency-ms", type=float, default=0.0)
    fleet.add_argument("--budget", type=float, default=240.0,
                       help="seconds the N+1 walk may take before the rest is extrapolated")
    fleet.add_argument("--timeout", type=float, default=600.0, help="per child process")
    add_json_option(fleet)
    walk = sub.add_parser("nplus1", help="the N+1 walk against a running lab")
    walk.add_argument("--target", type=Path, required=True)
    walk.add_argument("--budget", type=float, default=240.0)
    add_json_option(walk)
    args = parser.parse_args(argv)
    if args.what == "nplus1":
        target = read_json(args.target)
        if target is None:
            parser.error(f"cannot read {args.target}")
        data = nplus1_walk(target, args.budget)
    else:
        data = run_fleet(args.hosts, args.latency_ms, args.budget, args.timeout)
    write_json(args.json, data)
    print(json.dumps(data, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
