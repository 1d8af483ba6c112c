"""Probe 200 simulated host roots with concurrency 16; print total time, per-host median / p95 and
peak RSS.

Roots come from the lab's host simulation (reconciler_lab.hosts.ensure_host_root) over a generated
mix of GPU hosts; without it, from copies of the fixture roots in tests/fixtures/hosts.

    python -m benchmarks.bench_probe [--hosts 200] [--concurrency 16] [--keep DIR]
"""
from __future__ import annotations

import argparse
import importlib
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import add_json_option, write_json
from reconciler.observe.probe import probe_hosts
from reconciler.access.transport import LocalRootTransport, Transport

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hosts"
_MIXES = (("tesla-m60", "tesla-m60"), ("h100-pcie",), ("l40s",), ("tesla-t4", "tesla-t4"), ("a2",))


def lab_roots(base: Path, count: int) -> dict[str, Path] | None:
    try:
        hosts = importlib.import_module("reconciler_lab.hosts")
        fleet = importlib.import_module("reconciler_lab.fleet")
    except ModuleNotFoundError:
        return None
    if not hasattr(hosts, "ensure_host_root") or not hasattr(fleet, "LabGpu"):
        return None
    roots = {}
    for i in range(count):
        models = _MIXES[i % len(_MIXES)]
        gpus = tuple(fleet.LabGpu(m, f"0000:{0x41 + 0x40 * n:02x}:00.0", 40 + n)
                     for n, m in enumerate(models))
        host = fleet.LabHost(name=f"gpu-{i:03d}", cluster="gpu", cpu_type=None,
                             cpu_name="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                             custom_kernel_cmdline="intel_iommu=on",
                             booted_custom_args="intel_iommu=on",
                             services=(("nvidia-vgpu-mgr.service", "active"),)
                             if models[0] != "h100-pcie" else (),
                             modprobe_files=(("blacklist-nouveau.conf",
                                              "blacklist nouveau\noptions nouveau modeset=0\n"),),
                             gpus=gpus)
        roots[host.name] = Path(hosts.ensure_host_root(base / host.name, host))
    return roots


def fixture_roots(base: Path, count: int) -> dict[str, Path]:
    names = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    roots = {}
    for i in range(count):
        dest = base / f"host-{i:03d}"
        shutil.copytree(FIXTURES / names[i % len(names)], dest, symlinks=True)
        roots[dest.name] = dest
    return roots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--source", choices=("auto", "lab", "fixtures"), default="auto")
    ap.add_argument("--keep", type=Path, help="build the roots here and keep them")
    add_json_option(ap)
    args = ap.parse_args(argv)

    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-probe-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        build: Callable[[Path, int], dict[str, Path] | None] = (
            fixture_roots if args.source == "fixtures" else lab_roots)
        roots = build(base, args.hosts)
        source = "fixtures" if args.source == "fixtures" else "lab"
        if roots is None:
            if args.source == "lab":
                print("lab host simulation not available")
                return 1
            roots, source = fixture_roots(base, args.hosts), "fixtures"
        built = time.perf_counter() - t0
        targets: dict[str, Transport] = {n: LocalRootTransport(r) for n, r in roots.items()}
        t1 = time.perf_counter()
        facts = probe_hosts(targets, concurrency=args.concurrency, timeout=args.timeout)
        total = time.perf_counter() - t1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    seconds = sorted(f.seconds for f in facts)
    p95 = seconds[min(len(seconds) - 1, int(round(0.95 * (len(seconds) - 1))))]
    unknown = [f for f in facts if not f.ok]
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"roots:            {len(roots)} ({source}), built in {built:.2f} s")
    print(f"concurrency:      {args.concurrency}")
    print(f"probe total:      {total:.2f} s  ({len(facts) / total:.1f} hosts/s)")
    print(f"per host median:  {statistics.median(seconds):.3f} s")
    print(f"per host p95:     {p95:.3f} s")
    print(f"per host max:     {seconds[-1]:.3f} s")
    print(f"unknown hosts:    {len(unknown)}")
    print(f"pci functions:    {sum(len(f.pci_functions) for f in facts)}, "
          f"mdev types: {sum(len(f.mdev_types) for f in facts)}")
    print(f"peak RSS:         {self_rss:.1f} MiB (this process), "
          f"{child_rss:.1f} MiB (largest child)")
    write_json(args.json, {"hosts": len(roots), "source": source, "concurrency": args.concurrency,
                           "build_seconds": built, "total_seconds": total,
                           "hosts_per_second": len(facts) / total,
                           "median_seconds": statistics.median(seconds), "p95_seconds": p95,
                           "max_seconds": seconds[-1], "unknown_hosts": len(unknown),
                           "pci_functions": sum(len(f.pci_functions) for f in facts),
                           "mdev_types": sum(len(f.mdev_types) for f in facts),
                           "peak_rss_mib": self_rss, "largest_child_rss_mib": child_rss})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
