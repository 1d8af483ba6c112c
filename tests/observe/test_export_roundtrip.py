"""Adopting a running fleet: a spec exported from it plans no changes.

Property: for fleets of every shape the lab's generator makes (vGPU hosts of three GPU models,
passthrough hosts, hosts configured but not booted, RHEL 8, Intel and AMD clusters, VMs with vGPUs,
passthrough or nothing, consoles VNC, SPICE or both), export -> plan gives no action and no blocker.
And on a fleet a spec was already applied to (our modprobe files written, the args we set recorded),
the export carries those settings too, read from the hosts.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.engine.client import connect
from reconciler.export import ExportNotes, dump_spec, export_spec
from reconciler.model.facts import Observed
from reconciler.observe.engine import read_engine
from reconciler.plan import plan
from reconciler.spec import load_desired
from reconciler.spec.model import EngineSpec

from .conftest import lab_modules

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def _observe(fleet, folder: Path) -> Observed:
    server, _ = lab_modules()
    with server.LabServer(fleet, folder / "lab", time_scale=0.0, warm=False) as lab:
        engine = EngineSpec(url=lab.url, username=lab.username, ca_file=Path(str(lab.ca_file)))
        conn = connect(engine, password=lab.password)
        try:
            read = read_engine(conn, None)
        finally:
            conn.close()
    return Observed(clusters=read.clusters, hosts=read.hosts, vms=read.vms)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(hosts=st.integers(1, 60), gpus=st.integers(1, 8), vms=st.integers(0, 300),
       seed=st.integers(0, 2**31))
def test_export_then_plan_changes_nothing_on_generated_fleets(hosts, gpus, vms, seed):
    _, fleets = lab_modules()
    fleet = fleets.generate_fleet(hosts, gpus, vms, seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        observed = _observe(fleet, folder)
        spec = export_spec(observed, {"lab": {"fleet": "demo"}}, None, ExportNotes())
        path = folder / "exported.yaml"
        path.write_text(dump_spec(spec))
        result = plan(load_desired([str(path)]), observed)
    assert result.actions == (), [a.description for a in result.actions][:5]
    assert result.blockers == (), result.blockers[:3]
    assert not [d for d in result.drift if d.status.value == "drift"]
    # What is pending is only hosts waiting for a reboot that the export will not start.
    assert all("rollout.reboot is never" in d.message for d in result.drift
               if d.status.value == "pending")


def test_spice_only_vgpu_vms_keep_their_console(tmp_path):
    _, fleets = lab_modules()
    # A generated fleet with SPICE-only vGPU VMs (the shape that used to plan set-console-vnc).
    fleet = fleets.generate_fleet(50, 4, 300, 0)
    observed = _observe(fleet, tmp_path)
    spice_only = [v for v in observed.vms if v.mediated_devices
                  and {g.protocol for g in v.graphics} == {"spice"}
                  and not v.mediated_devices[0].nodisplay]
    assert spice_only
    spec = export_spec(observed, {"lab": {"fleet": "demo"}}, None, ExportNotes())
    exported = {v["name"]: v for v in spec["vms"]}
    assert all(exported[v.name]["vgpu"]["console"] == "keep" for v in spice_only)
    path = tmp_path / "exported.yaml"
    path.write_text(dump_spec(spec))
    assert not [a for a in plan(load_desired([str(path)]), observed).actions
                if a.kind == "set-console-vnc"]


def test_export_of_a_converged_fleet_carries_what_is_on_the_hosts(tmp_path, capsys):
    """After `apply` of the example spec: our modprobe files, the kernel args we set (and their
    record) and the vGPU manager are exported from the hosts, and planning the export is empty."""
    lab_modules()
    example = yaml.safe_load((ROOT / "specs/examples/lab.yaml").read_text())
    example["engine"] = {"lab": {"fleet": "demo", "state": "lab-state"}}
    spec = tmp_path / "lab.yaml"
    spec.write_text(yaml.safe_dump(example, sort_keys=False))
    state = tmp_path / "state.db"
    assert main(["--log-level", "error", "apply", str(spec), "--yes", "--state",
                 str(state)]) == 0
    out = tmp_path / "exported.yaml"
    assert main(["--log-level", "error", "export", str(spec), "-o", str(out)]) == 0
    exported = yaml.safe_load(out.read_text())
    profiles = {tuple(p["selector"]["names"]): p for p in exported["hostProfiles"]}
    m60 = profiles[("m60-01", "m60-02")]
    assert m60["modprobe"] == {"blacklist": ["nouveau"], "options": {"nouveau": ["modeset=0"]}}
    assert m60["vgpu"] == {"manager": "required", "placement": "consolidated"}
    amd = profiles[("amd-01",)]
    assert amd["kernel"] == {"iommu": True, "blacklistNouveau": True,
                             "pciStub": ["10de:11b4", "10de:0e0a"]}
    assert amd["modprobe"] == {"blacklist": ["nouveau"]}
    capsys.readouterr()
    assert main(["--log-level", "error", "plan", str(out), "--detailed-exitcode",
                 "--state", str(state)]) == 0, capsys.readouterr().out
    assert "No changes. The fleet matches the spec." in capsys.readouterr().out
