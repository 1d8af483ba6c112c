"""Lab engine at scale: 1,000 hosts x 8 GPUs and 10,000 VMs, listed through the real SDK.

Prints one line per step with seconds and bytes, then the peak RSS of this process (server and
client share it). Run: `python -m benchmarks.bench_lab [--hosts N --gpus-per-host G --vms M]
[--warm]`.

Each list is labelled by what the lab had cached: the first round is **cold** (the lab starts
without its background serialisation, so the request pays for serialising every object), later
rounds are **warm** (served from the lab's cache). With `--warm` the lab serialises the fleet in
the background first (timed as its own step) and every round is warm.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import ovirtsdk4 as sdk

from benchmarks.common import add_json_option, write_json
from reconciler_lab.fleet import generate_fleet
from reconciler_lab.server import LabServer


def _step(name: str, seconds: float, extra: str = "",
          steps: list[dict[str, object]] | None = None) -> None:
    if steps is not None:
        steps.append({"step": name, "seconds": seconds, "detail": extra})
    print(f"{name:<44} {seconds:8.3f} s  {extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="list rounds (the first is cold unless --warm, the rest warm)")
    parser.add_argument("--warm", action="store_true",
                        help="serialise the fleet in the background and wait for it before "
                             "listing: every round warm")
    add_json_option(parser)
    args = parser.parse_args()
    steps: list[dict[str, object]] = []

    def step(name: str, seconds: float, extra: str = "") -> None:
        _step(name, seconds, extra, steps)

    t = time.perf_counter()
    fleet = generate_fleet(args.hosts, args.gpus_per_host, args.vms)
    devices = sum(len(h.devices) for h in fleet.hosts)
    step("generate fleet", time.perf_counter() - t,
          f"{len(fleet.hosts)} hosts, {devices} devices, {len(fleet.vms)} VMs")

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        t = time.perf_counter()
        lab = LabServer(fleet, state, warm=args.warm).start()
        step("load engine + start server (TLS)", time.perf_counter() - t)
        try:
            conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                                  ca_file=str(lab.ca_file))
            conn.authenticate()
            if args.warm:
                t = time.perf_counter()
                lab.wait_warm()
                step("background cache warm-up", time.perf_counter() - t)
            for rnd in range(args.rounds):
                label = ("cold" if rnd == 0 and not args.warm
                         else f"warm, round {rnd + 1}")
                for what, call in (
                        ("hosts?follow=devices",
                         lambda: conn.system_service().hosts_service().list(follow="devices")),
                        ("vms?follow=host_devices,mediated_devices",
                         lambda: conn.system_service().vms_service().list(
                             follow="host_devices,mediated_devices"))):
                    lab.clear_request_log()
                    t = time.perf_counter()
                    items = call()
                    total = time.perf_counter() - t
                    rec = lab.request_log[-1]
                    step(f"{what} ({label})", total,
                          f"{len(items)} items, server {rec.seconds:.3f} s, "
                          f"{rec.bytes_sent / 1e6:.1f} MB sent (gzip)")
            conn.close()
            t = time.perf_counter()
            assert lab.engine is not None
            lab.engine._dirty = True
            lab.engine.save()
            size = (state / "engine.json").stat().st_size
            step("save state (JSON, atomic)", time.perf_counter() - t, f"{size / 1e6:.1f} MB")
        finally:
            t = time.perf_counter()
            lab.stop()
            step("stop", time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak RSS':<44} {peak:8.1f} MB", flush=True)
    write_json(args.json, {"steps": steps, "peak_rss_mib": peak})


if __name__ == "__main__":
    main()
