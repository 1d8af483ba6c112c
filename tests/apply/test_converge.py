"""The demo fleet converges through the real SDK, within the rollout budget, leaving what we do
not own exactly as it was; and keeps converging when one request in ten fails."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reconciler_lab.faults import FaultConfig
from reconciler.store import Store

from .conftest import unavailable_peaks

pytestmark = pytest.mark.lab

OUR_FILE = "etc/modprobe.d/gpu-reconciler.conf"
MANAGED_KEYS = {"intel_iommu", "amd_iommu", "iommu", "rdblacklist", "pci-stub.ids"}


def _files(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _cmdlines(root: Path) -> dict[str, list[str]]:
    """Every kernel command line a host keeps: booted, /etc/kernel/cmdline, each BLS entry."""
    lines = {"proc/cmdline": (root / "proc/cmdline").read_text().split(),
             "etc/kernel/cmdline": (root / "etc/kernel/cmdline").read_text().split()}
    for entry in sorted((root / "boot/loader/entries").glob("*.conf")):
        for line in entry.read_text().splitlines():
            if line.startswith("options "):
                lines[str(entry.relative_to(root))] = line.split()[1:]
    return lines


def _foreign(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t.split("=", 1)[0] not in MANAGED_KEYS]


# Files a host cycle rewrites by design: the booted state, the initramfs and the boot entries
# (whose foreign tokens are compared separately), our own file and its backups, and the
# simulator's own bookkeeping (.lab/).
def _expected_change(rel: str) -> bool:
    return (rel.startswith(("proc/", "sys/", "boot/", "run/", "var/", ".lab/"))
            or rel == OUR_FILE or rel.endswith(".reconciler-backup")
            or rel in ("etc/kernel/cmdline", "etc/default/grub"))


def test_demo_converges_within_budget_and_leaves_foreign_state(served_lab) -> None:
    lab = served_lab()
    roots = {h: lab.state / "hosts" / h for h in ("amd-01", "m60-01", "m60-02", "t4-01")}
    files_before = {h: _files(r) for h, r in roots.items()}
    lines_before = {h: _cmdlines(r) for h, r in roots.items()}

    outcome = lab.apply()

    assert outcome.exit_code == 0, lab.output
    assert outcome.result is not None and outcome.result.ok
    assert not outcome.after.has_changes, lab.output
    second = lab.plan()
    assert second.actions == (), [a.description for a in second.actions]
    assert not second.blockers

    # at most maxUnavailable (1 in every profile) hosts of a cluster out of up at any instant
    engine = lab.server.engine
    names = {h.id: h.name for h in engine.hosts.values()}
    clusters = {h.name: engine.clusters[h.cluster_id].name for h in engine.hosts.values()}
    peaks = unavailable_peaks(list(engine.events), clusters, names)
    assert peaks.get("gpu-intel") == 1 and peaks.get("gpu-amd") == 1, peaks

    for host, root in roots.items():
        after = _files(root)
        for rel, digest in files_before[host].items():
            if not _expected_change(rel):
                assert after.get(rel) == digest, f"{host}: {rel} changed"
        foreign_modprobe = [r for r in after if r.startswith("etc/modprobe.d/")
                            and r != OUR_FILE and not r.endswith(".reconciler-backup")]
        assert foreign_modprobe == [r for r in files_before[host]
                                    if r.startswith("etc/modprobe.d/") and r != OUR_FILE]
        lines_after = _cmdlines(root)
        for where, tokens in lines_before[host].items():
            assert _foreign(lines_after[where]) == _foreign(tokens), f"{host}: {where}"
        # the profiles with a modprobe section got our file; t4-01's profile has none
        assert (root / OUR_FILE).exists() == (host != "t4-01")

    # journal: every step begun was ended; run recorded; converged objects recorded as applied
    with Store(lab.store) as store:
        journal = store.journal(outcome.run_id)
        assert journal and all(e.outcome == "ok" for e in journal)
        assert store.run(outcome.run_id).outcome == "ok"
        applied = store.applied(lab.server.url)
    assert set(outcome.plan.desired_fingerprints) <= set(applied) | {
        d.key for d in second.drift if d.status != "unmanaged"}
    assert {"host:amd-01", "vm:vdi-02", "vm:cad-01"} <= set(applied)


def test_converges_with_one_request_in_ten_failing(served_lab) -> None:
    lab = served_lab(faults=FaultConfig(error_rate=0.1, seed=7))
    outcome = lab.apply()
    assert outcome.exit_code == 0, lab.output
    failed = [r for r in lab.server.request_log if r.status == 503]
    assert failed, "the fault injection did not fire"
    assert not outcome.after.has_changes      # re-observed and planned after the apply
