"""A fleet upgraded from 4.3 whose VM still carries the `mdev_type` custom property: the
observer reads it, and the plan reports it instead of planning around it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.engine.client import connect
from reconciler.observe.engine import read_engine
from reconciler.model.facts import Observed
from reconciler.plan.planner import plan
from reconciler.spec.model import DesiredState, EngineSpec, VgpuSpec, VmSpec
from reconciler_lab.fleet import LabVm, load_fleet
from reconciler_lab.server import LabServer

pytestmark = pytest.mark.lab


def test_legacy_vgpu_property_is_observed_and_reported(tmp_path: Path) -> None:
    demo = load_fleet("demo")
    fleet = dataclasses.replace(demo, engine_version="4.4.10", vms=demo.vms + (
        LabVm("legacy-01", "gpu-intel", custom_properties=(("mdev_type", "nvidia-18"),)),))
    with LabServer(fleet, tmp_path / "lab", time_scale=0.01) as lab:
        engine = EngineSpec(url=lab.url, username=lab.username, ca_file=Path(str(lab.ca_file)))
        conn = connect(engine, password=lab.password)
        try:
            clusters, hosts, vms, *_ = read_engine(conn, None)
        finally:
            conn.close()
    vm = next(v for v in vms if v.name == "legacy-01")
    assert vm.legacy_mdev_property == "nvidia-18" and vm.mediated_devices == ()
    observed = Observed(clusters=clusters, hosts=hosts, vms=vms)

    unmanaged = plan(DesiredState(engine=engine), observed)
    items = [d for d in unmanaged.drift if d.key == "vm:legacy-01"]
    assert [(d.status, d.message) for d in items] == [
        ("unmanaged", "vGPU as the pre-4.5 custom property mdev_type=nvidia-18; no spec "
                      "mentions this VM")]

    managed = plan(DesiredState(engine=engine, vms=(
        VmSpec("legacy-01", vgpu=VgpuSpec("nvidia-18")),)), observed)
    items = [d for d in managed.drift if d.key == "vm:legacy-01"]
    assert [d.status for d in items] == ["blocked"]
    assert "mdev_type=nvidia-18" in items[0].message
    assert not [a for a in managed.actions if "legacy-01" in str(a)]
