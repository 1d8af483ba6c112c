"""The engine watchers between full passes: the device poll (event-less vGPU drift) against the
lab engine, its pacing, the host sweep's spread and comparison, and leases kept by replicas."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.controller.devicepoll import DevicePoller, PollCost, PollPacer, poll_search
from reconciler.controller.hostsweep import HostSweep
from reconciler.controller.leadership import LeaseKeeper
from reconciler.controller.triggers import WorkQueue
from reconciler.model.facts import ProbeFacts
from reconciler.spec.engines import load_engines
from reconciler.store import Store
from reconciler_lab.server import LabServer
from tests.controller.conftest import remove_vgpus, sdk_connection, write_spec


def test_the_pacer_keeps_cpu_and_engine_shares() -> None:
    assert PollPacer().cpu_share <= 0.08       # the 10 % promise, with room for the rest
    pacer = PollPacer(minimum=1.0, cpu_share=0.05, engine_share=0.25, maximum=60.0)
    assert pacer.interval(PollCost(wall=0.02, cpu=0.01, vms=3)) == 1.0
    # 10,000 VMs: 0.8 s of CPU and 1.5 s on the wire -> 16 s keeps the CPU share at 5 %.
    assert pacer.interval(PollCost(wall=1.5, cpu=0.8, vms=10_000)) == pytest.approx(16.0)
    assert pacer.interval(PollCost(wall=4.0, cpu=0.1, vms=10_000)) == pytest.approx(16.0)
    assert pacer.interval(PollCost(wall=100.0, cpu=10.0, vms=10_000)) == 60.0


@pytest.mark.lab
def test_the_device_poll_sees_a_vgpu_removed_without_an_event(tmp_path: Path) -> None:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as lab:
        spec = write_spec(lab, tmp_path / "specs")
        (desired,) = load_engines([str(spec)]).engines.values()
        assert poll_search(desired) == "name=vdi-01"
        queue = WorkQueue()
        poller = DevicePoller(queue, lambda: None, lambda: desired)
        conn = sdk_connection(lab)
        try:
            assert poller.poll_once(conn) == []           # the baseline
            assert poller.poll_once(conn) == []           # nothing moved
            before = len(lab.request_log)
            assert remove_vgpus(conn, "vdi-01") == 1
            assert poller.poll_once(conn) == ["vdi-01"]
            assert queue.get(timeout=0) == {"device-poll"}
            assert poller.last_cost is not None and poller.last_cost.vms == 1
            # One request per poll, narrowed to the spec's VMs.
            polls = [r for r in lab.request_log[before:] if r.path.endswith("/vms")]
            assert polls and all(r.method == "GET" for r in polls)
        finally:
            conn.close()


def _probe(host: str, cmdline: str) -> ProbeFacts:
    return ProbeFacts(host=host, proc_cmdline=cmdline)


def test_the_host_sweep_probes_one_host_per_step_and_flags_a_change() -> None:
    queue = WorkQueue()
    said: dict[str, str] = {"a": "quiet", "b": "quiet", "c": "quiet"}
    probed: list[str] = []

    def probe(_transport: Any, host: str) -> ProbeFacts:
        probed.append(host)
        return _probe(host, said[host])

    sweep = HostSweep(queue, probe, interval=30.0)
    sweep.update({h: object() for h in said}, [_probe(h, "quiet") for h in said])  # type: ignore[misc]
    gaps = [sweep.step() for _ in range(3)]
    assert probed == ["a", "b", "c"] and gaps == [10.0, 10.0, 10.0]
    assert queue.get(timeout=0) == frozenset()
    said["b"] = "quiet intel_iommu=on"                    # edited by hand on the host
    sweep.step()
    sweep.step()
    assert probed[-1] == "b"
    assert queue.get(timeout=0) == {"host-sweep"}
    # A failed probe says nothing: no trigger, and the known state stays.
    sweep.update({"a": object()}, [ProbeFacts(host="a", status="unknown", reason="ssh")])  # type: ignore[dict-item]
    assert sweep.step() == 30.0


def test_replicas_share_engines_and_take_over_an_expired_lease(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    gained: dict[str, list[str]] = {"r1": [], "r2": []}
    stores = [Store(path), Store(path)]
    keepers = [LeaseKeeper(stores[i], f"r{i + 1}", ttl=1.0, tick=0.1,
                           on_gain=lambda e, _l, r=f"r{i + 1}": gained[r].append(e))
               for i in range(2)]
    try:
        for k in keepers:
            k.set_engines(["e1", "e2"])
        for _ in range(3):
            for k in keepers:
                k.tick()
        # Both replicas count each other; the engines are spread one each.
        led = [sorted(k.led()) for k in keepers]
        assert sorted(led) == [["e1"], ["e2"]], led
        # r1 dies (stops renewing): r2 takes its engine once the lease expired.
        dead, alive = keepers
        lost = dead.led()[0]
        deadline = time.monotonic() + 10
        while lost not in alive.led():
            assert time.monotonic() < deadline, "no take-over"
            alive.tick()
            time.sleep(0.1)
        assert sorted(alive.led()) == ["e1", "e2"]
        assert alive.view()[lost].mine
    finally:
        for s in stores:
            s.close()
