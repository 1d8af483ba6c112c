"""Validate a large generated spec: 1,000 VMs and 100 host profiles over a few files.

Times the full path (YAML load + JSON Schema + semantic checks + DesiredState build):

- **cold**: once in a fresh process, as `reconcile validate` always runs -- the import of the
  validator and the first validation (compiling the schema included) timed apart, and the whole
  process (interpreter start too);
- **warm**: then `--runs` more times in this process after a first, untimed one; the median,
  minimum and maximum of those.

    python -m benchmarks.bench_validate [--vms 1000] [--profiles 100] [--runs 7]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import add_json_option, read_json, run_module, write_json

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


def cold_child(folder: Path, out: Path | None) -> None:
    """In a fresh process: import the validator, then validate once; both timed."""
    started = time.perf_counter()
    from reconciler.spec.build import check_and_build
    imported = time.perf_counter()
    _, issues = check_and_build([str(folder)])
    done = time.perf_counter()
    write_json(out, {"import_seconds": imported - started, "first_seconds": done - imported,
                     "issues": len(issues)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--profiles", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7, help="warm runs, after one untimed")
    parser.add_argument("--cold-child", type=Path, metavar="FOLDER", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.cold_child is not None:
        cold_child(args.cold_child, args.json)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "spec"
        folder.mkdir()
        generate(folder, args.vms, args.profiles)
        lines = sum(len(p.read_text().splitlines()) for p in folder.glob("*.yaml"))
        report = Path(tmp) / "cold.json"
        child = run_module("benchmarks.bench_validate",
                           ["--cold-child", str(folder), "--json", str(report)], timeout=600)
        cold = read_json(report)
        if child.returncode != 0 or cold is None:
            raise SystemExit("the cold run failed:\n" + child.stderr[-2000:])
        if cold["issues"]:
            raise SystemExit("generated spec is invalid (cold run)")

        from reconciler.spec.build import check_and_build
        state, issues = check_and_build([str(folder)])          # first in-process: untimed
        if issues:
            raise SystemExit("generated spec is invalid:\n" + "\n".join(i.format() for i in issues))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            state, issues = check_and_build([str(folder)])
            times.append(time.perf_counter() - start)
    assert state is not None
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"validate: {len(state.vms)} VMs, {len(state.host_profiles)} host profiles, "
          f"{lines} lines in {len(state.sources)} files")
    print(f"  cold  {cold['first_seconds']:.3f} s first validation in a fresh process "
          f"(+ {cold['import_seconds']:.3f} s importing the validator; whole process "
          f"{child.seconds:.3f} s, peak RSS {child.peak_rss_mib:.1f} MiB)")
    print(f"  warm  median {statistics.median(times):.3f} s  min {min(times):.3f} s  "
          f"max {max(times):.3f} s  ({args.runs} runs in one process after a first, "
          "full load + schema + semantics + build)")
    print(f"  peak RSS {rss_mib:.1f} MiB (this process)")
    write_json(args.json, {"vms": len(state.vms), "host_profiles": len(state.host_profiles),
                           "lines": lines, "files": len(state.sources), "runs": args.runs,
                           "cold_seconds": cold["first_seconds"],
                           "cold_import_seconds": cold["import_seconds"],
                           "cold_process_seconds": child.seconds,
                           "cold_peak_rss_mib": child.peak_rss_mib,
                           "median_seconds": statistics.median(times),
                           "min_seconds": min(times), "max_seconds": max(times),
                           "peak_rss_mib": rss_mib})


if __name__ == "__main__":
    main()
