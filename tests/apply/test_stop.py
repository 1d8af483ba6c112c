"""The stop event (SIGTERM in the controller): the run ends at a safe point, nothing left down."""
from __future__ import annotations

import io
import threading
from typing import Any

import pytest
import yaml

from reconciler.apply.executor import STOPPED
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.progress import LogProgress, StepEvent
from reconciler.apply.runner import ApplyOptions, execute
from reconciler.store import Store

from .conftest import LAB_SPEC, TEST_TIMEOUTS

pytestmark = pytest.mark.lab


class StopWhen(LogProgress):
    """Sets the stop event when a step of the given action starts (from any cycle's thread)."""

    def __init__(self, stop: threading.Event, action: str) -> None:
        super().__init__()
        self.stop = stop
        self.action = action
        self.started: list[StepEvent] = []

    def step_started(self, event: StepEvent) -> None:
        self.started.append(event)
        if event.action == self.action:
            self.stop.set()


def _statuses(lab: Any) -> tuple[dict[str, str], dict[str, str]]:
    engine = lab.server.engine
    return ({h.name: h.status for h in engine.hosts.values()},
            {v.name: v.status for v in engine.vms.values()})


@pytest.mark.parametrize("action", ["deactivate", "attach-host-device", "stop-vm"])
def test_stop_ends_the_run_at_a_safe_point(served_lab, action: str) -> None:
    """Stop while a wave's host cycles run side by side, before a VM unit, and while a VM is
    being stopped for its changes (the demo plan's last unit: it runs to the VM's start)."""
    body = yaml.safe_load(LAB_SPEC.read_text())
    for profile in body["hostProfiles"]:
        # Two hosts of a cluster per wave: cycles run side by side when the stop comes.
        profile["rollout"] = {"maxUnavailable": 2, "reboot": "allowed"}
    lab = served_lab(hostProfiles=body["hostProfiles"])
    _, vms_before = _statuses(lab)
    stop = threading.Event()
    progress = StopWhen(stop, action)

    options = ApplyOptions(yes=True, state=lab.store, timeouts=TEST_TIMEOUTS, stop=stop)
    outcome = execute(lab.desired(), options, lab.endpoint(), out=io.StringIO(),
                      progress=progress)

    assert stop.is_set(), f"the plan has no {action} step"
    result = outcome.result
    assert result is not None and not result.failed and not result.degraded
    not_started = [s for s in result.steps if s.outcome == StepOutcome.NOT_STARTED]
    if action == "stop-vm":
        # Nothing follows that VM's unit: it ran to its end, the VM started again.
        assert result.halted is None and not not_started
        assert [s.action for s in result.steps if s.target == "vm:vdi-03"] == \
            ["stop-vm", "add-mediated-device", "set-console-vnc", "start-vm"]
    else:
        assert result.halted == STOPPED and result.stopped
        assert not_started, "the stop came too late to leave anything not started"
        assert not [s for s in result.steps if s.target == "vm:vdi-03" and s.outcome == "ok"]
    assert all(s.message == f"not started: {STOPPED}" for s in not_started)
    hosts, vms = _statuses(lab)
    assert set(hosts.values()) == {"up"}, hosts
    # No VM is left down by us (VMs stopped for a host cycle are started again).
    assert {n for n, st in vms.items() if st == "down"} <= \
        {n for n, st in vms_before.items() if st == "down"}, vms
    with Store(lab.store) as store:
        run = store.run(outcome.run_id)
        assert run is not None and run.outcome == (STOPPED if result.stopped else "ok"), run
        journal = store.journal(outcome.run_id)
        assert store.lock_info(str(lab.desired().engine.url)) is None
    begun = {e.step_id for e in journal}
    assert not begun & {s.step_id for s in not_started}
    # A wait for maintenance the stop cut short is journaled as not finished (failed); every
    # other step ended ok.
    stopped = {s.step_id for s in result.by_outcome(StepOutcome.STOPPED)}
    assert all(s.action == "deactivate" for s in result.by_outcome(StepOutcome.STOPPED))
    assert all(e.outcome == "ok" or e.step_id in stopped for e in journal), \
        [(e.step_id, e.outcome) for e in journal]
    # Every host that went into maintenance was activated and verified again, or, when the stop
    # came while it was still moving there, put back (activated) at once.
    for entry in journal:
        if entry.action == "deactivate":
            cycle = entry.step_id.split(".")[0]
            if entry.step_id in stopped:
                assert f"{cycle}.restore" in begun
            else:
                assert {f"{cycle}.activate", cycle} <= begun

    # A run after the stop converges.
    again = lab.apply()
    assert again.exit_code == 0, lab.output
    assert not again.after.has_changes
