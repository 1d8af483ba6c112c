"""The fleet map page at scale: 1,000 hosts x 8 GPUs (10 VMs per host) built from facts in memory.

Prints the time to build the map from Observed + Plan, the HTML's size (and gzipped), the time to
render it, and its load in headless Chromium (Debian's /usr/bin/chromium through Playwright):
time until the grid is ready, and the time a VM search takes to highlight its GPU.

    python -m benchmarks.bench_fleetmap [--hosts 1000] [--gpus 8] [--runs 3] [--no-browser]
"""
from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import add_json_option, peak_rss_mib, write_json
from reconciler.fleetmap import build_fleet_map
from reconciler.fleetmap.model import FleetMap
from reconciler.fleetmap.render_html import render_html
from reconciler.model.facts import (ActiveMdev, Cluster, Host, HostDevice, MdevType,
                                    MediatedDevice, NvidiaGpu, NvidiaSmiSummary, NvidiaVgpu,
                                    Observed, ProbeFacts, Vm, VmHostDevice)
from reconciler.plan.result import DriftItem, Plan

CLUSTERS = 10
PT_EVERY = 5                       # every fifth host is a passthrough host
M60 = (("nvidia-11", "GRID M60-0B", 16), ("nvidia-12", "GRID M60-0Q", 16),
       ("nvidia-15", "GRID M60-1Q", 8), ("nvidia-18", "GRID M60-2Q", 4),
       ("nvidia-20", "GRID M60-4Q", 2), ("nvidia-22", "GRID M60-8Q", 1))
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def _mdev_id(host: int, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{host}/{n}"))


def build_observed(n_hosts: int, gpus: int = 8, vms_per_host: int = 10) -> tuple[Observed, Plan]:
    """A fleet where vGPU hosts run `vms_per_host` M60-2Q VMs (consolidated: 4 per GPU) and
    passthrough hosts lend most H100s to VMs; a few hosts carry problems to flag."""
    clusters = tuple(Cluster(f"c{i}", f"cl{i:02d}", "Intel Cascadelake Server Family", "x86_64")
                     for i in range(CLUSTERS))
    hosts, vms, probes, drift = [], [], [], []
    for i in range(n_hosts):
        name, cluster = f"host-{i:04d}", f"cl{i % CLUSTERS:02d}"
        passthrough = i % PT_EVERY == PT_EVERY - 1
        devices, mdevs, smi_gpus, smi_vgpus = [], [], [], []
        per_gpu = [min(4, max(vms_per_host - 4 * g, 0)) for g in range(gpus)]
        for g in range(gpus):
            address = f"0000:{0x10 + g:02x}:00.0"
            dev = f"pci_0000_{0x10 + g:02x}_00_0"
            if passthrough:
                devices.append(HostDevice(dev, iommu_group=40 + g, driver="vfio-pci",
                                          vendor_id="10de", product_id="2331",
                                          product_name="GH100 [H100 PCIe]"))
                if g < 6:
                    vm = f"ml-{i:04d}-{g}"
                    vms.append(Vm(id=vm, name=vm, cluster=cluster, status="up" if g % 2 else "down",
                                  host=name if g % 2 else None, pinned_hosts=(name,),
                                  host_devices=(VmHostDevice(dev, name),)))
                continue
            used = per_gpu[g]
            types = tuple(MdevType(t, (m - used if t == "nvidia-18" else 0) if used else m, h,
                                   max_instances=m) for t, h, m in M60)
            devices.append(HostDevice(dev, iommu_group=40 + g, driver="nvidia", vendor_id="10de",
                                      product_id="13f2", product_name="GM204GL [Tesla M60]",
                                      mdev_types=types))
            for k in range(used):
                n = 4 * g + k
                mdev = _mdev_id(i, n)
                vm = f"vdi-{i:04d}-{n}"
                mdevs.append(ActiveMdev(mdev, address, "nvidia-18"))
                smi_vgpus.append(NvidiaVgpu(address, vm, None, "GRID M60-2Q", 18, mdev))
                vms.append(Vm(id=vm, name=vm, cluster=cluster, status="up", host=name,
                              mediated_devices=(MediatedDevice(mdev, "nvidia-18"),)))
            smi_gpus.append(NvidiaGpu(f"0000{address}".upper(), "Tesla M60", 8192,
                                      14 + 2048 * used, 3 * used, used))
        if i % 97 == 3 and not passthrough:
            # an mdev nobody owns (made by hand, say) on the first idle GPU
            mdevs.append(ActiveMdev(str(uuid.uuid5(uuid.NAMESPACE_URL, f"stray/{i}")),
                                    f"0000:{0x10 + gpus - 1:02x}:00.0", "nvidia-11"))
        vendor = "amd" if i % 211 == 7 else "intel"
        hosts.append(Host(id=f"h{i}", name=name, cluster=cluster, status="up",
                          cpu_vendor="intel", device_passthrough=True,
                          vgpu_placement="separated" if i % 3 == 0 else "consolidated",
                          devices=tuple(devices)))
        probes.append(ProbeFacts(
            host=name, proc_cmdline="BOOT_IMAGE=/vmlinuz ro intel_iommu=on rdblacklist=nouveau",
            iommu_enabled=True, mdevs=tuple(mdevs), cpu_vendor=vendor,
            cpu_vendor_id="AuthenticAMD" if vendor == "amd" else "GenuineIntel",
            nvidia_smi=None if passthrough else NvidiaSmiSummary(
                "535.161.05", tuple(smi_gpus), sum(per_gpu), tuple(smi_vgpus)),
            nvidia_smi_note="nvidia-smi is not installed" if passthrough else None))
        if i % 50 == 0:
            drift.append(DriftItem(f"host:{name}", "pending",
                                   "engine kernel cmdline '' -> 'intel_iommu=on'"))
        if i % 333 == 5:
            drift.append(DriftItem(f"host:{name}", "blocked", "kernel.iommu: CPU vendor unknown"))
        if i % 40 == 1 and not passthrough:
            drift.append(DriftItem(f"vm:vdi-{i:04d}-0", "drift", "vGPU type changed outside"))
    observed = Observed(clusters=clusters, hosts=tuple(hosts), vms=tuple(vms), probes=tuple(probes))
    return observed, Plan(drift=tuple(drift))


def build_map(n_hosts: int, gpus: int = 8, vms_per_host: int = 10) -> FleetMap:
    observed, the_plan = build_observed(n_hosts, gpus, vms_per_host)
    return build_fleet_map(observed, the_plan, generated_at="2026-01-01T00:00:00Z")


def browser_load(path: Path, vm: str, runs: int) -> dict[str, float]:
    """Median seconds until the grid is ready, and for a VM search to highlight its GPU."""
    from playwright.sync_api import sync_playwright

    ready, search, errors = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.on("pageerror", lambda e: errors.append(str(e)))
                started = time.perf_counter()
                page.goto(path.as_uri())
                page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                ready.append(time.perf_counter() - started)
                t0 = time.perf_counter()
                page.fill("#f-vm", vm)
                page.wait_for_selector(".gpu.hit", timeout=60_000)
                search.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    if errors:
        raise SystemExit(f"the page raised: {errors[:3]}")
    return {"ready_seconds": statistics.median(ready), "search_seconds": statistics.median(search)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--vms-per-host", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    add_json_option(parser)
    args = parser.parse_args()
    t0 = time.perf_counter()
    observed, the_plan = build_observed(args.hosts, args.gpus, args.vms_per_host)
    facts = time.perf_counter() - t0
    t0 = time.perf_counter()
    fm = build_fleet_map(observed, the_plan, generated_at="2026-01-01T00:00:00Z")
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    html = render_html(fm)
    rendered = time.perf_counter() - t0
    data = html.encode()
    gz = len(gzip.compress(data, 6))
    gpus = len(fm.gpus())
    print(f"fleet: {args.hosts} hosts x {args.gpus} GPUs = {gpus} GPUs, {len(observed.vms)} VMs "
          f"(facts built in {facts:.2f} s)")
    print(f"map: built in {built:.2f} s; HTML rendered in {rendered:.2f} s: "
          f"{len(data) / 2**20:.2f} MiB ({gz / 2**20:.2f} MiB gzipped)")
    out = {"hosts": args.hosts, "gpus": gpus, "vms": len(observed.vms), "build_seconds": built,
           "render_seconds": rendered, "html_bytes": len(data), "html_gzip_bytes": gz}
    if not args.no_browser:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fleet.html"
            path.write_bytes(data)
            vm = next(v.name for v in observed.vms if v.mediated_devices)
            figures = browser_load(path, vm, args.runs)
        print(f"Chromium: grid ready in {figures['ready_seconds']:.2f} s, VM search "
              f"{figures['search_seconds'] * 1000:.0f} ms (median of {args.runs})")
        out.update(figures)
    out["peak_rss_mib"] = peak_rss_mib()
    print(f"peak RSS {out['peak_rss_mib']:.0f} MiB")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
