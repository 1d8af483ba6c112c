"""Host cycles of one wave side by side, each worker on `EngineOps` of its own (fake engine)."""
from __future__ import annotations

import threading

from reconciler.apply.executor import Executor, FleetAccess, Timeouts
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.rollout import Budget
from reconciler.plan.actions import Action, HostCycle, Reason, SetKernelCmdline, Verification
from reconciler.plan.result import Plan
from tests.support.fake_engine import FakeEngine, MemoryJournal

QUICK = Timeouts(deactivate=1, install=1, activate=1, vm_shutdown=1, vm_stop=1, vm_start=1,
                 verify=0, probe=1)


def _wave(*hosts: str) -> Plan:
    actions: list[Action] = []
    for host in hosts:
        key = f"host:{host}"
        actions += [SetKernelCmdline(target=key, before="", after="iommu=pt",
                                     reason=Reason.SPEC_CHANGE, description="cmdline", wave=1,
                                     cmdline="iommu=pt"),
                    HostCycle(target=key, before="up", after="up", reason=Reason.SPEC_CHANGE,
                              description="cycle",
                              verify=(Verification(key, "status", "eq", "up"),), wave=1)]
    return Plan(actions=tuple(actions))


def test_cycles_of_a_wave_run_side_by_side_each_on_its_own_ops() -> None:
    # Both deactivations must be under way at once for either to go on: side by side, or stuck.
    both_down = threading.Barrier(2, timeout=5)
    engine = FakeEngine({"h1": "up", "h2": "up"},
                        on_call={"deactivate_host h1": both_down.wait,
                                 "deactivate_host h2": both_down.wait})
    executor = Executor(FleetAccess(engine, open_ops=engine.open_ops), MemoryJournal(), "r-1",
                        Budget({"h1": 2, "h2": 2}), timeouts=QUICK)

    result = executor.run(_wave("h1", "h2"))

    assert result.ok, result
    for host in ("h1", "h2"):
        assert [c for c in engine.calls if c.endswith(f" {host}")] == [
            f"deactivate_host {host}", f"set_kernel_cmdline {host}", f"install_host {host}",
            f"activate_host {host}"]
    assert engine.fleet.opened == engine.fleet.closed == 2
    assert engine.fleet.threads and all(t.startswith("host-cycle")
                                        for t in engine.fleet.threads)
    # The run's own ops served no cycle; every request was a worker's, and is counted.
    assert engine.request_counts() == (0, 0)
    assert executor.engine_counts() == (len(engine.calls) + len(engine.reads), 0)


def test_a_worker_that_cannot_reach_the_engine_fails_its_cycle_and_halts() -> None:
    engine = FakeEngine({"h1": "up", "h2": "up"})
    engine.fleet.open_failures = 1
    executor = Executor(FleetAccess(engine, open_ops=engine.open_ops), MemoryJournal(), "r-1",
                        Budget({"h1": 2, "h2": 2}), timeouts=QUICK)

    result = executor.run(_wave("h1", "h2"))

    assert result.halted is not None
    assert result.halted.startswith("cannot open an engine connection: cannot connect")
    failed = {s.target for s in result.failed}
    assert len(failed) == 1 and all(s.step_id in ("0", "1", "2", "3") for s in result.failed)
    # The other cycle either ran before the halt or never started: never half done.
    other = ({"host:h1", "host:h2"} - failed).pop()
    outcomes = {s.outcome for s in result.steps if s.target == other}
    assert outcomes in ({StepOutcome.OK}, {StepOutcome.NOT_STARTED})
    hosts, _ = engine.statuses()
    assert set(hosts.values()) == {"up"}
