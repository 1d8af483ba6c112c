"""Fleet-scale workers of `python -m benchmarks`: one lab fleet, our plan against two baselines.

    python -m benchmarks.harness fleet --hosts 1000 [--latency-ms 5] [--repeat 3] --json FILE
    python -m benchmarks.harness sdk --target FILE --json FILE         (started by `fleet`)
    python -m benchmarks.harness nplus1 --target FILE --json FILE      (started by `fleet`)

`fleet` generates N hosts x 8 GPUs with 10 VMs per host and starts the lab engine on it (TLS, in
this process) without its background serialisation. Against it, each in a fresh process:

1. **plan**: `reconcile plan --no-probe -o json SPEC` -- the real CLI, with a spec that manages
   every cluster and every GPU VM of the fleet: observe (bulk `follow` reads) + plan + render.
   Host probes are left out here (`--no-probe`); they are measured on their own
   (`benchmarks.bench_probe`).
2. **SDK plain**: the same engine data read the SDK's own way -- `clusters.list()`,
   `hosts.list(follow="devices")`, `vms.list(follow="host_devices,mediated_devices,
   graphics_consoles")`, the three requests the plan sends -- parsed into SDK objects, on a
   connection set up as the plan's is (`reconciler.engine.client.connect`, TLS verified, gzip).
   Nothing more: no facts, no plan.
3. **N+1**: the engine data read as per-resource tools do: list clusters, hosts, each host's
   devices, VMs, then each VM's host devices and mediated devices (3 + H + 2 x V requests), one
   synchronous request at a time on one keep-alive connection. It only fetches.

**Cold and warm.** The plan runs first against the fresh lab, so its answers include serialising
the whole fleet (as a real engine's answers include its own work): **cold**. The lab then drops
what it serialised (`LabServer.drop_cache`) and the SDK plain read runs cold too. After that every
object the lab serves is cached: `--repeat` rounds of plan, SDK plain and N+1 (N+1 in the first
round only when the lab adds latency) run **warm**, interleaved so that each round sees the same
load on a shared machine; figures are medians over the rounds, with their min and max.

Engine requests, bytes sent by the lab (on the wire, gzip where the client accepts it) and the lab's
own handling time come from the lab's request log; wall time and peak RSS from the child's own
rusage. With `--latency-ms` the lab adds that delay to every API request (its latency fault).
"""
from __future__ import annotations

import argparse
import json
import resource
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


def _sdk_connection(target: dict[str, Any], password: str) -> Any:
    """The SDK's own `ovirtsdk4.Connection` (its own wait loop), counting what it sends and
    receives for the table; TLS verified against the lab's CA, gzip, as the plan connects."""
    import ovirtsdk4

    class Counting(ovirtsdk4.Connection):  # type: ignore[misc]
        request_count = 0
        bytes_received = 0

        def send(self, request: Any) -> Any:
            self.request_count += 1
            return super().send(request)

        def wait(self, context: Any, failed_auth: bool = False) -> Any:
            response = super().wait(context, failed_auth)
            self.bytes_received += len(getattr(response, "body", None) or b"")
            return response

    return Counting(url=target["url"], username=target["username"], password=password,
                    ca_file=target["ca_file"], timeout=600, compress=True)


def sdk_plain_read(target: dict[str, Any], connection: str = "sdk") -> dict[str, Any]:
    """The SDK's own bulk read of what the plan reads: three list calls into SDK objects, on the
    SDK's own connection (`connection="sdk"`) or on the plan's (`"plan"`: the same SDK calls,
    through `reconciler.engine.client`, whose wait does not sit out a second at the end of a
    large answer as the SDK's does)."""
    from reconciler.engine.client import connect
    from reconciler.spec.model import EngineSpec

    spec = EngineSpec(url=target["url"], username=target["username"],
                      ca_file=Path(target["ca_file"]), timeout_seconds=600)
    password = Path(target["password_file"]).read_text().strip()
    conn = (connect(spec, password=password) if connection == "plan"
            else _sdk_connection(target, password))
    conn.authenticate()
    started = time.perf_counter()
    system = conn.system_service()
    clusters = system.clusters_service().list()
    hosts = system.hosts_service().list(follow="devices")
    vms = system.vms_service().list(follow="host_devices,mediated_devices,graphics_consoles")
    seconds = time.perf_counter() - started
    sent = conn.request_count
    conn.close(logout=False)
    return {"seconds": seconds, "requests": sent, "xml_bytes": conn.bytes_received,
            "clusters": len(clusters), "hosts": len(hosts), "vms": len(vms),
            "devices": sum(len(h.devices or ()) for h in hosts), "peak_rss_mib": peak_rss_mib()}


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


def _cpu_seconds() -> float:
    """This process's own CPU time: the lab serving, while a child runs (the harness only waits)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _plan_run(lab: Any, spec_file: Path, timeout: float) -> dict[str, Any]:
    """`reconcile plan --no-probe -o json SPEC` in a fresh process against `lab`."""
    lab.clear_request_log()
    lab_cpu = _cpu_seconds()
    run = run_module("reconciler", ["--log-format", "json", "--log-level", "info",
                                    "plan", "--no-probe", "-o", "json", str(spec_file)],
                     timeout=timeout)
    figures: dict[str, Any] = {"seconds": run.seconds, "peak_rss_mib": run.peak_rss_mib,
                               "cpu_seconds": run.cpu_seconds,
                               "lab_cpu_seconds": _cpu_seconds() - lab_cpu,
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


def _worker_run(lab: Any, what: str, args: list[str], work: Path, timeout: float,
                read_key: str) -> dict[str, Any]:
    """`python -m benchmarks.harness WHAT ARGS --json FILE` in a fresh process against `lab`.

    Its wall time is the whole process, as for `reconcile plan`; `read_key` names the part after
    login (the N+1 walk, the SDK's list calls), compared with the plan's observe step.
    """
    out = work / f"{what}.json"
    out.unlink(missing_ok=True)
    lab.clear_request_log()
    lab_cpu = _cpu_seconds()
    run = run_module("benchmarks.harness", [what, *args, "--json", str(out)], timeout=timeout)
    lab_cpu = _cpu_seconds() - lab_cpu
    data = read_json(out) or {"error": (run.stderr.strip().splitlines()
                                        or ["no output"])[-1][:300]}
    data.update({"peak_rss_mib": run.peak_rss_mib, "exit_code": run.returncode,
                 "timed_out": run.timed_out, "cpu_seconds": run.cpu_seconds,
                 "lab_cpu_seconds": lab_cpu})
    if "seconds" in data:
        data[read_key] = data["seconds"]
        # An extrapolated walk adds what it did not wait for to the process's own wall time.
        data["seconds"] = run.seconds + data["seconds"] - data.get("measured_seconds",
                                                                  data["seconds"])
    records = lab.request_log
    data.update({k: v for k, v in _lab_figures(records).items() if k != "requests"})
    if records:
        data["lab_median_ms"] = statistics.median(r.seconds for r in records) * 1000
    return data


def _summary(runs: list[dict[str, Any]], lab: str) -> dict[str, Any]:
    """Several runs of one way: the median figures, with min, max and every run kept."""
    good = [r for r in runs if "seconds" in r]
    if not good:
        return {**(runs[0] if runs else {"error": "not run"}), "lab": lab}
    middle = sorted(good, key=lambda r: r["seconds"])[(len(good) - 1) // 2]
    seconds = [r["seconds"] for r in good]
    out = {**middle, "lab": lab, "runs": len(good), "seconds": statistics.median(seconds),
           "min_seconds": min(seconds), "max_seconds": max(seconds),
           "peak_rss_mib": max(r["peak_rss_mib"] for r in good), "all_seconds": seconds}
    for key in ("observe_seconds", "walk_seconds", "read_seconds", "cpu_seconds",
                "lab_cpu_seconds"):
        values = [r[key] for r in good if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def _ratios(result: dict[str, Any], rounds: list[dict[str, dict[str, Any]]]) -> None:
    """How many times longer the baselines take than the plan, warm against warm: the ratio of
    the medians, and the spread of the per-round ratios (each round ran under the same load)."""
    plan = result["plan_warm"]
    for way, key in (("nplus1", "ratio"), ("sdk_warm", "sdk_ratio"),
                     ("sdk_plan_connection", "sdk_plan_connection_ratio")):
        other = result.get(way) or {}
        if not plan.get("seconds") or not other.get("seconds"):
            continue
        result[key] = other["seconds"] / plan["seconds"]
        per_round = [r[way]["seconds"] / r["plan"]["seconds"] for r in rounds
                     if "seconds" in r.get(way, {}) and "seconds" in r.get("plan", {})]
        if per_round:
            result[key + "_rounds"] = per_round
    if plan.get("observe_seconds"):
        naive, sdk = result.get("nplus1") or {}, result.get("sdk_warm") or {}
        if naive.get("walk_seconds"):
            result["ratio_observe"] = naive["walk_seconds"] / plan["observe_seconds"]
        if sdk.get("read_seconds"):
            result["sdk_ratio_observe"] = sdk["read_seconds"] / plan["observe_seconds"]


def run_fleet(hosts: int, latency_ms: float, budget: float, timeout: float,
              repeat: int) -> dict[str, Any]:
    from reconciler_lab.faults import FaultConfig
    from reconciler_lab.fleet import generate_fleet
    from reconciler_lab.server import LabServer

    result: dict[str, Any] = {"hosts": hosts, "gpus_per_host": GPUS_PER_HOST,
                              "vms": hosts * VMS_PER_HOST, "latency_ms": latency_ms,
                              "probes": False, "repeat": repeat}
    t0 = time.perf_counter()
    fleet = generate_fleet(hosts, GPUS_PER_HOST, hosts * VMS_PER_HOST)
    result["devices"] = sum(len(h.devices) for h in fleet.hosts)
    result["generate_seconds"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        # No background serialisation: the cold reads pay for it.
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
            target = work / "target.json"
            write_json(target, {"url": lab.url, "ca_file": str(lab.ca_file),
                                "username": lab.username, "password_file": str(password_file)})

            def sdk(connection: str = "sdk") -> dict[str, Any]:
                return _worker_run(lab, "sdk", ["--target", str(target), "--connection",
                                                connection], work, timeout, "read_seconds")

            def nplus1() -> dict[str, Any]:
                return _worker_run(lab, "nplus1", ["--target", str(target), "--budget",
                                                   str(budget)], work, timeout, "walk_seconds")

            result["plan_cold"] = {**_plan_run(lab, spec_file, timeout), "lab": "cold"}
            lab.drop_cache()
            result["sdk_cold"] = {**sdk(), "lab": "cold"}
            # Warm from here on. The N+1 walk takes minutes when the lab adds latency: once.
            walks = repeat if latency_ms == 0 else 1
            rounds: list[dict[str, dict[str, Any]]] = []
            for n in range(repeat):
                rounds.append({"plan": _plan_run(lab, spec_file, timeout), "sdk_warm": sdk(),
                               "sdk_plan_connection": sdk("plan"),
                               **({"nplus1": nplus1()} if n < walks else {})})
            for way, key in (("plan", "plan_warm"), ("sdk_warm", "sdk_warm"),
                             ("sdk_plan_connection", "sdk_plan_connection"),
                             ("nplus1", "nplus1")):
                result[key] = _summary([r[way] for r in rounds if way in r], "warm")
            _ratios(result, rounds)
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
    fleet.add_argument("--repeat", type=int, default=3,
                       help="warm rounds (plan, SDK plain read, N+1); medians are reported")
    add_json_option(fleet)
    plain = sub.add_parser("sdk", help="the SDK's plain list calls against a running lab")
    plain.add_argument("--target", type=Path, required=True)
    plain.add_argument("--connection", choices=("sdk", "plan"), default="sdk",
                       help="the SDK's own connection, or the plan's (reconciler.engine.client)")
    add_json_option(plain)
    walk = sub.add_parser("nplus1", help="the N+1 walk against a running lab")
    walk.add_argument("--target", type=Path, required=True)
    walk.add_argument("--budget", type=float, default=240.0)
    add_json_option(walk)
    args = parser.parse_args(argv)
    if args.what in ("nplus1", "sdk"):
        target = read_json(args.target)
        if target is None:
            parser.error(f"cannot read {args.target}")
        data = (nplus1_walk(target, args.budget) if args.what == "nplus1"
                else sdk_plain_read(target, args.connection))
    else:
        data = run_fleet(args.hosts, args.latency_ms, args.budget, args.timeout,
                         max(1, args.repeat))
    write_json(args.json, data)
    print(json.dumps(data, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
