"""vGPU capacity as the engine counts it, checked against the lab engine's start-time behaviour:
a seat is taken when a VM starts (all its vGPUs on the one host the scheduler picks) and freed
when it stops, never when vGPUs are only configured on a VM that is down.

The demo fleet plus eight down VMs. GRID M60-8Q (nvidia-22) fits once per M60 GPU: m60-01 runs
vdi-01's GRID M60-2Q on one of its four GPUs, so 3 + 4 (m60-02) = 7 GPUs can take one each.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
import yaml

from reconciler.cli import main
from reconciler_lab.fleet import LabVm, load_fleet
from reconciler_lab.server import LabServer
from tests.support.secrets import write_secret
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab
BIG = [f"big-{i}" for i in range(1, 9)]


@pytest.fixture
def lab(tmp_path: Path):
    demo = load_fleet("demo")
    fleet = dataclasses.replace(demo, vms=demo.vms + tuple(LabVm(n, "gpu-intel") for n in BIG))
    with LabServer(fleet, tmp_path / "lab", time_scale=0.005) as server:
        yield server


def _spec(lab: LabServer, folder: Path, vms: list[dict]) -> Path:
    password = write_secret(folder / "pw", lab.password + "\n")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "gpu-reconciler/v1",
        "engine": {"url": lab.url, "username": lab.username, "caFile": str(lab.ca_file),
                   "passwordFrom": {"file": str(password)}},
        "vms": vms}, sort_keys=False))
    return path


def _plan(spec: Path, capsys) -> dict:
    capsys.readouterr()
    main(["--log-level", "error", "plan", str(spec), "-o", "json", "--no-probe"])
    return json.loads(capsys.readouterr().out)


def _start(conn: sdk.Connection, name: str) -> str | None:
    """Start a VM as a user would; None when it runs, else the engine's refusal."""
    vms = conn.system_service().vms_service()
    vm = vms.list(search=f"name={name}")[0]
    try:
        vms.vm_service(vm.id).start()
    except sdk.Error as err:
        return str(err)
    wait_for(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.UP,
             what=f"{name} up")
    return None


def test_down_vms_take_no_seat_and_the_warning_counts_what_starts(lab, tmp_path, capsys):
    spec = _spec(lab, tmp_path, [{"name": n, "vgpu": {"type": "nvidia-22"}} for n in BIG])
    plan = _plan(spec, capsys)
    # Configuring vGPUs on VMs that stay down blocks nothing: one add each, and a warning.
    assert [a["kind"] for a in plan["actions"]] == ["add-mediated-device"] * 8
    assert plan["summary"]["blockers"] == 0
    (warning,) = plan["warnings"]
    assert warning["key"] == "cluster:gpu-intel"
    assert warning["message"].startswith(
        "8 x nvidia-22 configured on VM(s) that are down would exceed capacity by 1 if all "
        "started: 7 seat(s) free after this plan (m60-01: 3, m60-02: 4)")
    # seats in use: none of them runs, so nothing more is in use
    assert {s["type"]: (s["before"], s["after"], s.get("configured"))
            for s in plan["summary"]["seats"]} == {"nvidia-18": (1, 1, 1),
                                                   "nvidia-22": (0, 0, 8)}
    capsys.readouterr()
    assert main(["--log-level", "error", "apply", str(spec), "--yes",
                 "--state", str(tmp_path / "state.db")]) == 0
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    try:
        # The engine agrees: configured, they took no seat; started in turn, 7 run, the 8th is
        # refused for lack of one, exactly the "by 1" of the warning.
        refusals = {n: _start(conn, n) for n in BIG}
    finally:
        conn.close()
    assert [n for n, r in refusals.items() if r is None] == BIG[:7]
    assert "MDevice" in (refusals["big-8"] or "") and "nvidia-22" in refusals["big-8"]


def test_a_plan_that_starts_a_vm_checks_the_seats_it_needs_then(lab, tmp_path, capsys):
    # vdi-01 runs one nvidia-18 on m60-01. Restarted with 2 x nvidia-22, it needs two idle GPUs
    # on one host at its start: m60-02 has four.
    spec = _spec(lab, tmp_path, [{"name": "vdi-01", "restart": "allowed",
                                  "vgpu": {"type": "nvidia-22", "instances": 2}}])
    plan = _plan(spec, capsys)
    assert [a["kind"] for a in plan["actions"]] == [
        "stop-vm", "remove-mediated-device", "add-mediated-device", "add-mediated-device",
        "start-vm"]
    assert plan["summary"]["blockers"] == 0
    assert {s["type"]: (s["before"], s["after"]) for s in plan["summary"]["seats"]} == {
        "nvidia-18": (1, 0), "nvidia-22": (0, 2)}

    # Start six other VMs with one nvidia-22 each (by hand): the engine puts three on m60-01's
    # idle GPUs and three on m60-02's. Now no host has two idle GPUs, even counting the one
    # vdi-01 frees when it stops, and the same plan is blocked.
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    try:
        vms = conn.system_service().vms_service()
        for name in BIG[:6]:
            vm = vms.list(search=f"name={name}")[0]
            vms.vm_service(vm.id).mediated_devices_service().add(types.VmMediatedDevice(
                spec_params=[types.Property(name="mdevType", value="nvidia-22")]))
            assert _start(conn, name) is None
    finally:
        conn.close()
    blocked = _plan(spec, capsys)
    assert blocked["actions"] == []
    (item,) = [d for d in blocked["drift"] if d["status"] == "blocked"]
    assert item["key"] == "vm:vdi-01"
    assert item["message"].startswith(
        "starting VM vdi-01 needs 2 x nvidia-22 on one host (the engine creates a VM's vGPUs when "
        "it starts, all on the host it starts on), and no host of cluster gpu-intel has them free "
        "then (m60-01: 1 nvidia-22; m60-02: 1 nvidia-22; t4-01: 0 nvidia-22)")
    # ...and the engine agrees: stopped and given 2 x nvidia-22, vdi-01 does not start.
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    try:
        vms = conn.system_service().vms_service()
        vm = vms.list(search="name=vdi-01")[0]
        service = vms.vm_service(vm.id)
        service.stop()
        wait_for(lambda: service.get().status == types.VmStatus.DOWN, what="vdi-01 down")
        mdevs = service.mediated_devices_service()
        for m in mdevs.list():
            mdevs.device_service(m.id).remove()
        for _ in range(2):
            mdevs.add(types.VmMediatedDevice(
                spec_params=[types.Property(name="mdevType", value="nvidia-22")]))
        assert "MDevice" in (_start(conn, "vdi-01") or "")
    finally:
        conn.close()
