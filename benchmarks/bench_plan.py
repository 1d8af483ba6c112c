"""Plan a large in-memory fleet: 1,000 hosts x 8 GPUs and 10,000 VMs, with a matching spec.

Builds the facts directly (no engine), times `plan()` several times and prints the median, the
spread, the CPU time (steadier than wall time on a busy machine) and the peak RSS. Most of the fleet is converged, as in daily use; a slice of hosts and VMs
has pending changes so that every planning path runs.

    python -m benchmarks.bench_plan [--hosts 1000] [--vms 10000] [--runs 7]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

from benchmarks.common import add_json_option, write_json
from reconciler.model.facts import (Cluster, GraphicsConsole, Host, HostDevice, MdevType,
                                      MediatedDevice, ModprobeFile, Observed, ProbeFacts, Vm,
                                      VmHostDevice)
from reconciler.plan import plan
from reconciler.plan.expand import MODPROBE_PATH, render_modprobe
from reconciler.plan.fingerprint import sha256_text
from reconciler.spec.model import (DesiredState, EngineSpec, HostProfile, HostSelector, KernelSpec,
                                   ModprobeSpec, PassthroughSpec, RolloutSpec, VgpuHostSpec,
                                   VgpuSpec, VmSpec)

CLUSTERS = 10
PT_CLUSTERS = 2            # the last clusters hold passthrough hosts, the others vGPU hosts
GPUS_PER_HOST = 8
M60 = (("nvidia-11", 16), ("nvidia-12", 16), ("nvidia-13", 8), ("nvidia-14", 8),
       ("nvidia-15", 8), ("nvidia-16", 4), ("nvidia-17", 4), ("nvidia-18", 4), ("nvidia-19", 2),
       ("nvidia-20", 2), ("nvidia-21", 1), ("nvidia-22", 1))
MODPROBE = ModprobeSpec(blacklist=("nouveau",), options=(("nouveau", ("modeset=0",)),))
BOOTED = "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14 root=/dev/mapper/rhel-root ro quiet"


def build(n_hosts: int, n_vms: int) -> tuple[DesiredState, Observed]:
    clusters = tuple(Cluster(id=f"c{i}", name=f"cl{i:02d}", cpu_type="Intel Cascadelake Server "
                             "Family", architecture="x86_64") for i in range(CLUSTERS))
    vgpu_clusters = CLUSTERS - PT_CLUSTERS
    modprobe_sha = sha256_text(render_modprobe(MODPROBE))
    hosts, probes = [], []
    vgpu_hosts, pt_devices = [], []
    for i in range(n_hosts):
        c = i % CLUSTERS
        name = f"host-{i:04d}"
        vgpu = c < vgpu_clusters
        pending = i % 50 == 0                      # 2 % of hosts need a kernel change
        devices = []
        for g in range(GPUS_PER_HOST):
            dev = f"pci_0000_{0x10 + g:02x}_00_0"
            if vgpu:
                types = tuple(MdevType(t, m, f"GRID M60-{t}", max_instances=m) for t, m in M60)
                devices.append(HostDevice(dev, iommu_group=40 + g, driver="nvidia",
                                          vendor_id="10de", product_id="13f2", mdev_types=types))
            else:
                devices.append(HostDevice(dev, iommu_group=40 + g, driver="vfio-pci",
                                          vendor_id="10de", product_id="2331"))
                pt_devices.append((name, dev))
        custom = "" if pending else "rdblacklist=nouveau intel_iommu=on"
        hosts.append(Host(id=f"h{i}", name=name, cluster=f"cl{c:02d}", status="up",
                          cpu_vendor="intel", custom_kernel_cmdline=custom,
                          reported_kernel_cmdline=f"{BOOTED} {custom}".strip(),
                          device_passthrough=True, vgpu_placement="consolidated",
                          devices=tuple(devices)))
        probes.append(ProbeFacts(
            host=name, proc_cmdline=f"{BOOTED} {custom}".strip(),
            modprobe_files=(ModprobeFile(MODPROBE_PATH, ("nouveau",), (("nouveau", "modeset=0"),),
                                         sha256=modprobe_sha),),
            initramfs_blacklist=("nouveau",),
            loaded_modules=("nvidia", "nvidia_vgpu_vfio") if vgpu else ("vfio_pci",),
            vgpu_manager_service="active" if vgpu else "not-found"))
        if vgpu:
            vgpu_hosts.append(name)
    vms, specs = [], []
    for j in range(n_vms):
        name = f"vm-{j:05d}"
        if j % 10 == 0 and pt_devices:             # passthrough VMs
            host, dev = pt_devices[(j // 10) % len(pt_devices)]
            cluster = f"cl{int(host[5:]) % CLUSTERS:02d}"
            attached = j % 30 != 0
            vms.append(Vm(id=f"v{j}", name=name, cluster=cluster, status="down",
                          pinned_hosts=(host,), affinity="pinned",
                          graphics=(GraphicsConsole(f"g{j}", "vnc"),),
                          host_devices=(VmHostDevice(dev, host),) if attached else ()))
            specs.append(VmSpec(name=name, passthrough=PassthroughSpec(host, (dev,)),
                                restart="whenDown"))
        else:                                      # vGPU VMs
            cluster = f"cl{j % vgpu_clusters:02d}"
            held = () if j % 7 == 0 else (MediatedDevice(f"m{j}", "nvidia-18"),)
            vms.append(Vm(id=f"v{j}", name=name, cluster=cluster,
                          status="up" if j % 2 else "down",
                          graphics=(GraphicsConsole(f"g{j}", "vnc"),), mediated_devices=held))
            specs.append(VmSpec(name=name, vgpu=VgpuSpec("nvidia-18"), restart="whenDown"))
    profiles = tuple(
        HostProfile(f"vgpu-{c:02d}", HostSelector(cluster=f"cl{c:02d}", names=("host-*",)),
                    kernel=KernelSpec(iommu=True, blacklist_nouveau=True), modprobe=MODPROBE,
                    vgpu=VgpuHostSpec(manager="required", placement="consolidated"),
                    rollout=RolloutSpec(max_unavailable=2))
        if c < vgpu_clusters else
        HostProfile(f"passthrough-{c:02d}", HostSelector(cluster=f"cl{c:02d}"),
                    kernel=KernelSpec(iommu=True, blacklist_nouveau=True), modprobe=MODPROBE,
                    rollout=RolloutSpec(max_unavailable=2))
        for c in range(CLUSTERS))
    desired = DesiredState(engine=EngineSpec(lab_fleet="bench"), host_profiles=profiles,
                           vms=tuple(specs), sources=("bench.yaml",))
    observed = Observed(clusters=clusters, hosts=tuple(hosts), vms=tuple(vms),
                        probes=tuple(probes))
    return desired, observed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    add_json_option(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    desired, observed = build(args.hosts, args.vms)
    built = time.perf_counter() - started
    times, cpu = [], []
    result = None
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        result = plan(desired, observed)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert result is not None
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fleet: {args.hosts} hosts x {GPUS_PER_HOST} GPUs, {args.vms} VMs "
          f"(built in {built:.2f} s)")
    print(f"plan: {len(result.actions)} actions, {len(result.drift)} drift items, "
          f"{len(result.blockers)} blockers, {len(result.waves)} waves, "
          f"{len(result.fingerprints)} fingerprints")
    print(f"plan() median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs); "
          f"CPU time median {statistics.median(cpu):.3f} s")
    print(f"peak RSS {peak_mib:.0f} MiB")
    write_json(args.json, {"hosts": args.hosts, "gpus_per_host": GPUS_PER_HOST, "vms": args.vms,
                           "build_seconds": built, "actions": len(result.actions),
                           "drift": len(result.drift), "blockers": len(result.blockers),
                           "waves": len(result.waves), "runs": args.runs,
                           "median_seconds": statistics.median(times),
                           "min_seconds": min(times), "max_seconds": max(times),
                           "cpu_median_seconds": statistics.median(cpu),
                           "peak_rss_mib": peak_mib})


if __name__ == "__main__":
    main()
