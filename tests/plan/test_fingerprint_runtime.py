"""Runtime host figures the planner never reads do not make a saved plan stale."""
from __future__ import annotations

from dataclasses import replace

from reconciler.model.facts import (ActiveMdev, Host, NvidiaGpu, NvidiaSmiSummary, ProbeFacts)
from reconciler.plan.fingerprint import fingerprint, host_snapshot

HOST = Host(id="h", name="gpu-01", cluster="c", status="up", cpu_vendor="intel")
PROBE = ProbeFacts(host="gpu-01", proc_cmdline="ro intel_iommu=on", cpu_vendor="intel")


def test_vgpu_churn_and_nvidia_smi_figures_keep_the_fingerprint() -> None:
    busy = replace(PROBE, seconds=3.2, mdevs=(ActiveMdev("3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11",
                                                          "0000:05:00.0", "nvidia-18"),),
                   nvidia_smi=NvidiaSmiSummary("535.161.05", (NvidiaGpu(
                       "00000000:05:00.0", "Tesla M60", 8192, 2062, 37, 1),), 1))
    assert fingerprint(host_snapshot(HOST, busy)) == fingerprint(host_snapshot(HOST, PROBE))


def test_the_hosts_own_cpu_vendor_counts() -> None:
    other = replace(PROBE, cpu_vendor="amd", cpu_vendor_id="AuthenticAMD")
    assert fingerprint(host_snapshot(HOST, other)) != fingerprint(host_snapshot(HOST, PROBE))
