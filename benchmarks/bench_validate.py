"""Validate a large generated spec: 1,000 VMs and 100 host profiles over a few files.

Times the full path (YAML load + JSON Schema + semantic checks + DesiredState build) several times
and prints the median and the peak RSS.

    python -m benchmarks.bench_validate [--vms 1000] [--profiles 100] [--runs 7]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import add_json_option, write_json
from reconciler.spec.build import check_and_build

ENGINE = """apiVersion: gpu-reconciler/v1
engine:
  url: https://engine.example.com/ovirt-engine/api
  username: admin@internal
  passwordFrom: {env: OVIRT_PASSWORD}
  caFile: /etc/pki/ovirt-engine/ca.pem
hostAccess:
  ssh: {user: root, knownHostsFile: ~/.ssh/known_hosts, concurrency: 16}
"""


def _profiles(count: int) -> str:
    out = ["apiVersion: gpu-reconciler/v1", "hostProfiles:"]
    for i in range(count):
        out += [f"  - name: profile-{i:03d}",
                f"    selector: {{cluster: gpu-{i % 10}, names: [\"gpu-{i:03d}-*\"]}}",
                "    kernel:",
                "      iommu: true",
                "      iommuPassthrough: true",
                "      blacklistNouveau: true",
                f"      pciStub: [\"10de:{i:04x}\", \"10de:0e0a\"]",
                "      extraArgs: [pci=realloc]",
                "    modprobe:",
                "      blacklist: [nouveau]",
                "      options: {nouveau: [\"modeset=0\"]}",
                "    vgpu: {manager: required, placement: consolidated}",
                "    rollout: {maxUnavailable: 2, reboot: allowed}"]
    return "\n".join(out) + "\n"


def _vms(start: int, count: int) -> str:
    out = ["apiVersion: gpu-reconciler/v1", "vms:"]
    for i in range(start, start + count):
        out.append(f"  - name: vm-{i:04d}")
        if i % 3 == 0:
            out += ["    passthrough:",
                    f"      host: gpu-{i // 3 // 8:03d}",
                    f"      devices: [\"0000:{i % 24:02x}:00.0\", pci_0000_{i % 24:02x}_00_1]"]
        else:
            out += ["    vgpu:", "      type: nvidia-22", f"      instances: {1 + i % 4}",
                    "      secondaryDisplay: vnc"]
        out.append("    restart: whenDown")
    return "\n".join(out) + "\n"


def generate(folder: Path, vms: int, profiles: int, files: int = 4) -> None:
    (folder / "00-engine.yaml").write_text(ENGINE)
    (folder / "10-profiles.yaml").write_text(_profiles(profiles))
    per_file = -(-vms // files)
    for n, start in enumerate(range(0, vms, per_file)):
        (folder / f"20-vms-{n}.yaml").write_text(_vms(start, min(per_file, vms - start)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--profiles", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder, args.vms, args.profiles)
        lines = sum(len(p.read_text().splitlines()) for p in folder.glob("*.yaml"))
        times = []
        state = None
        for _ in range(args.runs):
            start = time.perf_counter()
            state, issues = check_and_build([str(folder)])
            times.append(time.perf_counter() - start)
            if issues:
                raise SystemExit("generated spec is invalid:\n" + "\n".join(i.format() for i in issues))
    assert state is not None
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"validate: {len(state.vms)} VMs, {len(state.host_profiles)} host profiles, "
          f"{lines} lines in {len(state.sources)} files")
    print(f"  median {statistics.median(times):.3f} s  min {min(times):.3f} s  "
          f"max {max(times):.3f} s  ({args.runs} runs, full load + schema + semantics + build)")
    print(f"  peak RSS {rss_mib:.1f} MiB")
    write_json(args.json, {"vms": len(state.vms), "host_profiles": len(state.host_profiles),
                           "lines": lines, "files": len(state.sources), "runs": args.runs,
                           "median_seconds": statistics.median(times),
                           "min_seconds": min(times), "max_seconds": max(times),
                           "peak_rss_mib": rss_mib})


if __name__ == "__main__":
    main()
