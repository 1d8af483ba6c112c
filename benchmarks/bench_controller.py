"""Controller latency: engine change -> drift visible in /status, and spec edit -> new plan.

Starts the demo fleet on the lab engine (real HTTPS) in this process and `reconcile controller`
(observe mode, default --events-interval 1s, resync 10m so only real triggers count) in a
subprocess, then:
- 20 times: an out-of-band edit of m60-01's kernel args through the SDK, timed until /status lists
  host:m60-01, then the edit undone, timed until it is gone again;
- 20 times: a spec edit (vdi-01 wants 2 vGPUs, then 1 again), timed until /status shows the plan of
  the new spec (the pending item appears / disappears after a pass triggered by the spec).
/status is polled every 10 ms; changes are spaced 0.2-1.2 s apart at random. Targets: drift visible within 2 s p95; spec edit -> plan within 1 s.

    python -m benchmarks.bench_controller [--changes 20] [--events-interval 1s] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import yaml

from benchmarks.common import add_json_option, machine, percentile, write_json
from reconciler_lab.server import LabServer

POLL = 0.01
IN_SYNC_ARGS = "intel_iommu=on rdblacklist=nouveau"


def demo_spec(lab: LabServer, folder: Path, instances: int) -> str:
    """The demo fleet's m60 profile and vdi-01 with `instances` vGPUs, for the lab at `lab`."""
    password = folder / "engine-password"
    password.write_text(lab.password + "\n")
    password.chmod(0o600)
    return yaml.safe_dump({
        "apiVersion": "gpu-reconciler/v1",
        "engine": {"url": lab.url, "username": lab.username,
                   "passwordFrom": {"file": str(password)}, "caFile": str(lab.ca_file)},
        "hostProfiles": [{"name": "m60", "selector": {"names": ["m60-01"]},
                          "kernel": {"iommu": True, "blacklistNouveau": True}}],
        "vms": [{"name": "vdi-01", "vgpu": {"type": "nvidia-18", "instances": instances,
                                            "secondaryDisplay": "vnc"}}],
    }, sort_keys=False)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/status", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def _until(check: Callable[[], bool], timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if check():
            return time.perf_counter() - start
        time.sleep(POLL)
    raise SystemExit(f"timed out after {timeout}s")


def _keys(url: str) -> set[str]:
    return {i["key"] for i in _status(url)["drift"]["items"]
            if i["class"] in ("pending", "drift", "blocked")}


def _line(name: str, values: list[float], target: float) -> str:
    med, p95 = statistics.median(values), percentile(values, 95)
    verdict = "meets" if p95 <= target else "MISSES"
    return (f"{name:<34} n={len(values):<3} median {med * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms"
            f"   max {max(values) * 1000:7.0f} ms   ({verdict} the {target:g} s p95 target)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--events-interval", default="1s")
    add_json_option(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, \
            LabServer("demo", Path(tmp) / "lab", time_scale=0.01) as lab:
        specs = Path(tmp) / "specs"
        specs.mkdir()
        spec = specs / "fleet.yaml"
        _write(spec, demo_spec(lab, specs, 1))
        log = open(Path(tmp) / "controller.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--log-format", "json", "controller",
             str(specs), "--state", str(Path(tmp) / "state.db"), "--listen", "127.0.0.1:0",
             "--resync", "10m", "--events-interval", args.events_interval],
            stdout=log, stderr=subprocess.STDOUT)
        conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                              ca_file=str(lab.ca_file))
        try:
            found: list[str] = []

            def url_known() -> bool:
                found[:] = re.findall(r'"url": "(http://127\.0\.0\.1:\d+)"',
                                      (Path(tmp) / "controller.log").read_text())
                return bool(found)
            _until(url_known)
            url = found[0]
            # /status names no pass until the engine's loop has started one.
            _until(lambda: (_status(url).get("last_pass") or {}).get("result") == "ok")
            hosts = conn.system_service().hosts_service()
            host = hosts.host_service(hosts.list(search="name=m60-01")[0].id)

            # Random pauses between changes, so changes land at every phase of the 1 s poll.
            rng = random.Random(7)
            appear: list[float] = []
            clear: list[float] = []
            for _ in range(args.changes):
                time.sleep(rng.uniform(0.2, 1.2))
                host.update(types.Host(os=types.OperatingSystem(
                    custom_kernel_cmdline="rdblacklist=nouveau")))
                appear.append(_until(lambda: "host:m60-01" in _keys(url)))
                time.sleep(rng.uniform(0.2, 1.2))
                host.update(types.Host(os=types.OperatingSystem(
                    custom_kernel_cmdline=IN_SYNC_ARGS)))
                clear.append(_until(lambda: "host:m60-01" not in _keys(url)))

            edits: list[float] = []
            for i in range(args.changes):
                time.sleep(rng.uniform(0.2, 1.2))
                wanted = 2 if i % 2 == 0 else 1
                _write(spec, demo_spec(lab, specs, wanted))
                edits.append(_until(lambda: ("vm:vdi-01" in _keys(url)) == (wanted == 2)))

            print(f"controller latency, demo fleet, events every {args.events_interval} "
                  f"({os.cpu_count()} CPUs)")
            print(_line("engine change -> drift in /status", appear, 2.0))
            print(_line("engine undo -> drift cleared", clear, 2.0))
            print(_line("spec edit -> new plan in /status", edits, 1.0))

            def figures(values: list[float], target: float) -> dict[str, float | bool]:
                return {"median_seconds": statistics.median(values),
                        "p95_seconds": percentile(values, 95), "max_seconds": max(values),
                        "target_p95_seconds": target, "meets_target":
                        percentile(values, 95) <= target}
            write_json(args.json, {
                "changes": args.changes, "events_interval": args.events_interval,
                "machine": machine(),
                "engine_change_to_drift": figures(appear, 2.0),
                "engine_undo_to_cleared": figures(clear, 2.0),
                "spec_edit_to_plan": figures(edits, 1.0)})
        finally:
            conn.close()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            log.close()
            if code != 0:
                print(f"controller exited {code}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
