"""Observe cost against the lab engine: bulk reads (`follow`) versus the N+1 way.

For generated fleets of 10 / 100 / 1,000 hosts x 8 GPUs and 10 VMs per host, prints wall seconds,
engine requests, bytes received and the observer's peak RSS, for the bulk reader
(`reconciler.observe.engine.read_engine`) and for the naive walk (list hosts, then each host's
devices, then each VM's host devices and mediated devices), and the ratio between them.

The lab runs in this process; each observation runs in a fresh child process so that its peak RSS
is the observer's own.

    python -m benchmarks.bench_observe [--hosts 10 100 1000] [--naive-max 1000]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import add_json_option, write_json

GPUS_PER_HOST = 8
VMS_PER_HOST = 10


def _connect(target: dict[str, Any]) -> Any:
    from reconciler.engine.client import connect
    from reconciler.spec.model import EngineSpec
    spec = EngineSpec(url=target["url"], username=target["username"],
                      ca_file=Path(target["ca_file"]), timeout_seconds=600)
    return connect(spec, password=target["password"])


def _bulk(target: dict[str, Any]) -> tuple[int, int, int]:
    from reconciler.observe.engine import read_engine
    conn = _connect(target)
    read = read_engine(conn, None)
    conn.close(logout=False)
    return conn.request_count, conn.bytes_received, len(read.hosts) + len(read.vms)


def _naive(target: dict[str, Any]) -> tuple[int, int, int]:
    conn = _connect(target)
    system = conn.system_service()
    system.clusters_service().list()
    hosts_service = system.hosts_service()
    hosts = hosts_service.list()
    for h in hosts:
        hosts_service.host_service(h.id).devices_service().list()
    vms_service = system.vms_service()
    vms = vms_service.list()
    for v in vms:
        vm = vms_service.vm_service(v.id)
        vm.host_devices_service().list()
        vm.mediated_devices_service().list()
        vm.graphics_consoles_service().list()
    conn.close(logout=False)
    return conn.request_count, conn.bytes_received, len(hosts) + len(vms)


def _child(kind: str, target: dict[str, Any], queue: Any) -> None:
    started = time.perf_counter()
    requests, received, entities = (_bulk if kind == "bulk" else _naive)(target)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds, requests, received, peak_kib, entities))


def measure(kind: str, target: dict[str, Any]) -> tuple[float, int, int, int, int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, target, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--naive-max", type=int, default=100,
                        help="skip the N+1 walk for fleets larger than this many hosts")
    add_json_option(parser)
    args = parser.parse_args()

    from reconciler_lab.fleet import generate_fleet
    from reconciler_lab.server import LabServer

    print(f"{'hosts':>6} {'vms':>6} {'way':>6} {'seconds':>9} {'requests':>9} "
          f"{'MiB recv':>9} {'peak MiB':>9}")
    figures: list[dict[str, Any]] = []
    for hosts in args.hosts:
        fleet = generate_fleet(hosts, GPUS_PER_HOST, hosts * VMS_PER_HOST)
        with tempfile.TemporaryDirectory() as state, LabServer(fleet, Path(state)) as lab:
            target = {"url": lab.url, "ca_file": str(lab.ca_file), "username": lab.username,
                      "password": lab.password}
            rows = {}
            ways = ["bulk"] + (["naive"] if hosts <= args.naive_max else [])
            for way in ways:
                seconds, requests, received, peak_kib, _ = measure(way, target)
                rows[way] = (seconds, requests)
                figures.append({"hosts": hosts, "vms": hosts * VMS_PER_HOST, "way": way,
                                "seconds": seconds, "requests": requests,
                                "bytes_received": received, "peak_rss_mib": peak_kib / 1024})
                print(f"{hosts:>6} {hosts * VMS_PER_HOST:>6} {way:>6} {seconds:>9.2f} "
                      f"{requests:>9} {received / 2**20:>9.1f} {peak_kib / 1024:>9.1f}",
                      flush=True)
            if "naive" in rows:
                (bs, br), (ns, nr) = rows["bulk"], rows["naive"]
                print(f"{'':>6} {'':>6} {'ratio':>6} {ns / bs:>8.1f}x {nr / br:>8.0f}x"
                      "   (naive / bulk)", flush=True)
    write_json(args.json, {"rows": figures})


if __name__ == "__main__":
    main()
