"""The host-cycle state machine and recovery, case by case, against a recording fake engine.

Each case in cases/host_cycle.yaml and cases/recovery.yaml is data: a plan (or a dead run's
journal), the fleet and what the fake engine is scripted to do, and what must follow: the exact
operations called, the journal rows, the step outcomes, degraded hosts, why the rollout halted,
and the statuses left behind. The lab tests (test_failures.py, test_stop.py, ...) show the same
machine against the lab engine over HTTPS; these show every path of it, each in milliseconds.

A plan action is written `{KIND: TARGET, field: value, ...}`; its disruption is the kind's own
(host-reboot for host changes and the cycle, vm-restart for VM changes) unless given, and a
host-cycle verifies `status eq up` unless it names its own `verify: [[field, op, value]]`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.apply.executor import ApplyPolicy, Executor, FleetAccess, Timeouts
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.recovery import left_down
from reconciler.apply.rollout import Budget
from reconciler.plan.actions import (ACTION_TYPES, HOST_KINDS, Action, Disruption, Reason,
                                     Verification)
from reconciler.plan.result import Plan
from tests.support.fake_engine import FakeEngine, MemoryJournal

CASES = Path(__file__).parent / "cases"
RUN = "r-test"
DEAD = "r-dead"
# No real waiting: the fake's changes are visible at once, so one re-read settles a check.
QUICK = Timeouts(deactivate=1, install=1, activate=1, vm_shutdown=1, vm_stop=1, vm_start=1,
                 verify=0, probe=1)


def _cases(name: str) -> list[Any]:
    cases = yaml.safe_load((CASES / name).read_text())
    return [pytest.param(c, id=c["name"]) for c in cases]


def _action(data: dict[str, Any]) -> Action:
    fields = dict(data)
    kind = next(k for k in fields if k in ACTION_TYPES)
    target = fields.pop(kind)
    cls = ACTION_TYPES[kind]
    default = Disruption.HOST_REBOOT if kind in HOST_KINDS else Disruption.VM_RESTART
    fields["disruption"] = Disruption(fields.get("disruption", default))
    checks = fields.pop("verify", [["status", "eq", "up"]] if kind == "host-cycle" else [])
    fields["verify"] = tuple(Verification(target, f, op, v) for f, op, v in checks)
    fields.setdefault("before", None)
    fields.setdefault("after", None)
    return cls(target=target, reason=Reason.SPEC_CHANGE, description=kind, **fields)


def _executor(case: dict[str, Any], engine: FakeEngine, journal: MemoryJournal,
              stop: threading.Event) -> Executor:
    policy = case.get("policy", {})
    restart = policy.get("restart", {})
    access = FleetAccess(engine, open_ops=engine.open_ops if case.get("parallel") else None)
    return Executor(access, journal, RUN, Budget(case.get("max_unavailable", {})),
                    policy=ApplyPolicy(Disruption(policy.get("max_disruption", "host-reboot")),
                                       restart_policy=restart.get),
                    timeouts=QUICK, stop=stop)


def _engine(case: dict[str, Any], stop: threading.Event) -> FakeEngine:
    fleet = case["engine"]
    stop_at = fleet.get("stop_at")
    return FakeEngine(fleet.get("hosts", {}), fleet.get("vms", {}),
                      script=fleet.get("script", {}),
                      on_call={stop_at: stop.set} if stop_at else None)


def _check(case: dict[str, Any], engine: FakeEngine, journal: MemoryJournal,
           result: Any) -> None:
    expect = case["expect"]
    assert engine.calls == expect["calls"]
    if "reads" in expect:
        assert engine.reads == expect["reads"]
    assert journal.rows(RUN) == expect["journal"]
    for outcome in (StepOutcome.FAILED, StepOutcome.NOT_STARTED, StepOutcome.PENDING):
        wanted = expect.get(outcome.value, [])
        assert [s.step_id for s in result.by_outcome(outcome)] == [str(s) for s in wanted], \
            outcome.value
    degraded = expect.get("degraded", {})
    assert set(result.degraded) == set(degraded)
    for host, why in degraded.items():
        assert why in result.degraded[host]
    halted = expect.get("halted")
    if halted is None:
        assert result.halted is None
    else:
        assert result.halted is not None and halted in result.halted
    for step_id, text in expect.get("messages", {}).items():
        messages = [s.message or "" for s in result.steps if s.step_id == str(step_id)]
        assert any(text in m for m in messages), (step_id, messages)
    hosts, vms = engine.statuses()
    after = expect.get("after", {})
    assert {h: hosts[h] for h in after.get("hosts", {})} == after.get("hosts", {})
    assert {v: vms[v] for v in after.get("vms", {})} == after.get("vms", {})


@pytest.mark.parametrize("case", _cases("host_cycle.yaml"))
def test_host_cycle(case: dict[str, Any]) -> None:
    stop = threading.Event()
    engine = _engine(case, stop)
    journal = MemoryJournal()
    plan = Plan(actions=tuple(_action(a) for a in case["plan"]))

    result = _executor(case, engine, journal, stop).run(plan)

    _check(case, engine, journal, result)


@pytest.mark.parametrize("case", _cases("recovery.yaml"))
def test_recovery(case: dict[str, Any]) -> None:
    stop = threading.Event()
    engine = _engine(case, stop)
    journal = MemoryJournal()
    for row in case["dead_run"]:             # [step, target, action, outcome or null]
        step_id, target, action, outcome = row
        entry = journal.journal_begin(DEAD, str(step_id), target, action, "host-reboot")
        if outcome is not None:
            journal.journal_end(entry, outcome)
    hosts, vms = left_down(journal.journal(DEAD))
    assert [hosts, vms] == case["left_down"]
    executor = _executor(case, engine, journal, stop)

    executor.recover(hosts, vms)

    _check(case, engine, journal, executor.result())
