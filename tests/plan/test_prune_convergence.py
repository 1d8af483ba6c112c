"""Property: with `prune` on, a plan applied in the pure model leaves nothing more to prune, and
it never stops or restarts a VM that no spec mentions."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.plan import plan
from reconciler.plan.actions import HostCycle, Reason, RemoveMediatedDevice, StartVm, StopVm
from tests.support.model_apply import apply_to_facts
from tests.plan.factsload import desired_from, observed_from
from tests.plan.test_convergence import scenario

PRUNE = st.fixed_dictionaries({
    "unmanaged_vgpus": st.booleans(),
    "unmanaged_host_devices": st.booleans(),
    "vms": st.sampled_from([["*"], ["vm[01]"], ["vm2", "vm4"], ["none"]]),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), PRUNE, st.sampled_from(["vm0", "vm[13]", "vm*", ""]))
@pytest.mark.slow        # Hypothesis: 150 generated fleets
def test_pruning_plans_converge(data: tuple[dict[str, Any], dict[str, Any]],
                                prune: dict[str, Any], unnamed: str) -> None:
    desired_data, observed_data = data
    # leave some VMs out of the spec, so that there is unmanaged GPU use to prune
    specs = [v for v in desired_data["vms"] if not fnmatchcase(v["name"], unnamed)]
    desired = desired_from({**desired_data, "vms": specs, "prune": prune})
    observed = observed_from(observed_data)
    first = plan(desired, observed)
    named = {v.name for v in desired.vms}
    for a in first.actions:
        if a.object_name not in named and a.target.startswith("vm:"):
            assert a.reason is Reason.PRUNE and not isinstance(a, (StopVm, StartVm)), a
    after = apply_to_facts(first, observed)
    second = plan(desired, after)
    assert not [a for a in second.actions if a.reason is Reason.PRUNE
                and a.object_name not in named], "pruning left something to prune"
    # A running VM with vGPUs cannot migrate, so it holds its host's cycle back. Once its vGPUs
    # are removed from its configuration that hold is gone and the next plan may cycle the host:
    # one more round, and only where such a VM ran.
    unheld = {vm.host for vm in observed.vms if vm.name not in named and vm.status != "down"
              and vm.mediated_devices and vm.host and any(
                  isinstance(a, RemoveMediatedDevice) and a.object_name == vm.name
                  for a in first.actions)}
    if not {a.object_name for a in second.actions if isinstance(a, HostCycle)} & unheld:
        assert [f"{a.kind} {a.target}" for a in second.actions] == [], (
            [f"{a.kind} {a.target}: {a.description}" for a in first.actions])
    else:
        third = plan(desired, apply_to_facts(second, after))
        assert [f"{a.kind} {a.target}" for a in third.actions] == []
    # whatever was pruned is gone: no pending prune item is left for a VM no spec names
    assert not [d for d in second.drift if d.status == "pending" and d.key.startswith("vm:")
                and d.key.split(":", 1)[1] not in named]
