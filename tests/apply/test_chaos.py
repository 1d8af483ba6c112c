"""Applies under injected faults and a lost engine keep their promises: maxUnavailable is never
exceeded, and nothing an apply took down is left down once the engine answers again."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from reconciler.errors import EngineError
from reconciler_lab.faults import FaultConfig
from reconciler_lab.server import LabServer

from .conftest import TEST_TIMEOUTS, TIME_SCALE, unavailable_peaks

pytestmark = pytest.mark.lab

NEVER_RETURNS = "m60-02"
# Every fifth run has a host that never comes back from its reboot.
SEEDS = range(30)


def _snapshot(lab: Any) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, ...]]]:
    engine = lab.server.engine
    hosts = {h.name: h.status for h in engine.hosts.values()}
    names = {h.id: h.name for h in engine.hosts.values()}
    vms = {v.name: v.status for v in engine.vms.values()}
    pinned = {v.name: tuple(names.get(h, h) for h in v.pinned_host_ids)
              for v in engine.vms.values()}
    return hosts, vms, pinned


def _peaks(lab: Any) -> dict[str, int]:
    engine = lab.server.engine
    names = {h.id: h.name for h in engine.hosts.values()}
    clusters = {h.name: engine.clusters[h.cluster_id].name for h in engine.hosts.values()}
    return unavailable_peaks(list(engine.events), clusters, names)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_a_fault_injected_apply_keeps_the_budget_and_leaves_nothing_down(served_lab,
                                                                          seed: int) -> None:
    never = (NEVER_RETURNS,) if seed % 5 == 0 else ()
    faults = FaultConfig(error_rate=0.1, drop_rate=0.03, token_ttl=1.0, never_returns=never,
                         seed=seed)
    lab = served_lab(faults=faults)
    _, vms_before, pinned = _snapshot(lab)

    outcome = lab.apply(timeouts=replace(TEST_TIMEOUTS, install=3.0))

    context = f"seed {seed} (replay: FaultConfig(..., seed={seed}))\n{lab.output}"
    peaks = _peaks(lab)
    assert all(n <= 1 for n in peaks.values()), (peaks, context)   # maxUnavailable 1 everywhere
    hosts, vms, _ = _snapshot(lab)
    assert {h for h, s in hosts.items() if s != "up"} <= set(never), (hosts, context)
    left_down = {v for v, s in vms.items() if s == "down" and vms_before[v] != "down"
                 and not set(pinned[v]) & set(never)}
    assert not left_down, (left_down, context)
    if not never:
        assert outcome.exit_code == 0, context
    else:
        assert outcome.exit_code == 1 and NEVER_RETURNS in (outcome.result.degraded or {}), context


def test_the_engine_lost_mid_apply_and_back_then_a_rerun_brings_everything_back(
        served_lab) -> None:
    """The lab stops while VMs the apply stopped are down and a host is in maintenance; the run
    fails. Once the engine answers again, the next apply brings back what the first left down
    before it does anything else, and only then says the fleet matches."""
    lab = served_lab()
    _, vms_before, _ = _snapshot(lab)
    port, state = lab.server.port, lab.state

    class LoseEngine:
        """Stops the lab right after the first host of the rollout went into maintenance."""
        def __init__(self) -> None:
            self.done = False

        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

        def step_finished(self, event: Any, outcome: str, seconds: float,
                          message: str | None = None) -> None:
            if event.action == "deactivate" and outcome == "ok" and not self.done:
                self.done = True
                lab.server.stop()

    from reconciler.apply.runner import ApplyOptions, execute
    desired = lab.desired()
    with pytest.raises(EngineError):
        # The run ends failed: a step, or the observation after the steps, finds no engine.
        first = execute(desired, ApplyOptions(yes=True, state=lab.store, timeouts=TEST_TIMEOUTS),
                        lab.endpoint(desired), progress=LoseEngine())  # type: ignore[arg-type]
        assert first.exit_code == 1
        raise EngineError("the run ended failed")

    with LabServer("demo", state, port=port, time_scale=TIME_SCALE,
                   password=lab.server.password) as back:
        lab.server = back
        hosts_between = {h.name: h.status for h in back.engine.hosts.values()}
        assert set(hosts_between.values()) != {"up"}, "the loss came after the host was back"
        again = lab.apply()
        # Hosts left in maintenance whose cycle is still planned resume it; the rest are
        # brought back first.
        assert ("bringing back what an earlier run left down" in lab.output
                or "resuming the host cycle of" in lab.output), lab.output
        hosts, vms, _ = _snapshot(lab)
        assert set(hosts.values()) == {"up"}, (hosts, lab.output)
        assert {v for v, s in vms.items() if s == "down"} <= \
            {v for v, s in vms_before.items() if s == "down"}, (vms, lab.output)
        assert again.exit_code == 0, lab.output
        assert "The fleet now matches the spec" in lab.output
