"""Safety under failure: a host that never returns halts the rollout and nothing else is touched;
the budget holds on the next run; disruption caps leave the rest pending."""
from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler_lab.faults import FaultConfig
from reconciler.plan.actions import Disruption
from reconciler.store import Store

from .conftest import (TEST_TIMEOUTS, api_mutations, mutating_targets, spec_body,
                       unavailable_peaks)

pytestmark = pytest.mark.lab


def test_host_that_never_returns_halts_the_rollout(served_lab) -> None:
    lab = served_lab(faults=FaultConfig(never_returns=("m60-02",)))
    ids = lab.host_ids()
    quick = replace(TEST_TIMEOUTS, install=3.0)

    outcome = lab.apply(timeouts=quick)

    assert outcome.exit_code == 1
    result = outcome.result
    assert result is not None and set(result.degraded) == {"m60-02"}
    assert "m60-02" in (result.halted or "")
    assert "degraded: host m60-02" in lab.output
    # amd-01 (earlier in wave 1) is done; t4-01 (wave 2) and every VM change never started
    assert [s.outcome for s in result.steps if s.target == "host:amd-01"] == ["ok"] * 7
    not_started = {s.target for s in result.steps if s.outcome == "not-started"}
    assert {"host:t4-01", "vm:vdi-02", "vm:vdi-03", "vm:cad-01"} <= not_started

    log = lab.server.request_log
    touched = mutating_targets(log, ids)
    assert "t4-01" not in touched
    # After m60-02's install only amd-01, whose cycle runs beside it in wave 1 (another
    # cluster), may still be finishing; no other host and no VM is touched.
    install_at = max(i for i, r in enumerate(log) if r.method == "POST"
                     and r.path.endswith(f"/hosts/{ids['m60-02']}/install"))
    after = api_mutations(log[install_at + 1:])
    assert set(mutating_targets(after, ids)) <= {"amd-01"}, [(r.method, r.path) for r in after]
    assert not [r for r in after if "/vms/" in r.path]

    with Store(lab.store) as store:
        assert store.run(outcome.run_id).outcome == "failed"
        install = [e for e in store.journal(outcome.run_id) if e.step_id.endswith(".install")
                   and e.target == "host:m60-02"]
        assert install and install[0].outcome == "failed"

    # The next run must not take t4-01 down while m60-02 (same cluster, maxUnavailable 1) is
    # out: the plan holds it, and nothing is sent to it.
    lab.server.clear_request_log()
    again = lab.apply(timeouts=quick)
    assert again.exit_code == 1
    assert "t4-01" not in mutating_targets(lab.server.request_log, ids)
    assert any(d.key == "host:t4-01" and d.status == "blocked" for d in again.plan.drift)


def test_max_disruption_leaves_host_reboots_pending(served_lab) -> None:
    lab = served_lab()
    roots = lab.state / "hosts"
    before = {h: (roots / h / "proc/cmdline").read_text() for h in ("amd-01", "m60-02")}

    outcome = lab.apply(max_disruption=Disruption.VM_RESTART)

    assert outcome.exit_code == 0, lab.output
    result = outcome.result
    pending = {(s.target, s.action) for s in result.pending}
    assert ("host:amd-01", "host-cycle") in pending
    # host-reboot actions, and the VM stops that only served those host cycles
    # (and the file steps of a host whose cycle waits: they belong to that cycle)
    cycling = {s.target for s in result.pending if s.action == "host-cycle"}
    assert all(s.disruption == "host-reboot" or s.action == "stop-vm" or s.target in cycling
               for s in result.pending)
    ran = {(s.target, s.action) for s in result.steps if s.outcome == "ok"}
    assert ("vm:cad-01", "attach-host-device") in ran and ("vm:vdi-03", "start-vm") in ran
    # nouveau is not loaded on m60-01: its modprobe file needs no reboot, so it runs under the cap
    assert ("host:m60-01", "write-modprobe-file") in ran
    assert not [r for r in api_mutations(lab.server.request_log) if "/hosts/" in r.path]
    assert (roots / "m60-01/etc/modprobe.d/gpu-reconciler.conf").exists()
    assert {h: (roots / h / "proc/cmdline").read_text() for h in before} == before
    # what is left: the host work, and stop/start of VMs that now hold a host's cycle
    left = outcome.after.actions
    assert {a.target for a in left if a.disruption == Disruption.HOST_REBOOT} == {
        "host:amd-01", "host:m60-02", "host:t4-01"}
    assert {a.kind for a in left if a.disruption != Disruption.HOST_REBOOT} <= {
        "stop-vm", "start-vm", "write-modprobe-file", "regenerate-initramfs"}
    assert all(a.target in cycling for a in left if a.kind in ("write-modprobe-file",
                                                                "regenerate-initramfs"))
    assert "pending: host:amd-01 host-cycle" in lab.output


def test_blockers_are_reported_and_the_rest_is_applied(served_lab) -> None:
    import yaml

    from .conftest import REPO
    blocked = yaml.safe_load((REPO / "specs/examples/lab-blocked.yaml").read_text())
    lab = served_lab(hostProfiles=blocked["hostProfiles"], vms=blocked["vms"])

    outcome = lab.apply()

    assert outcome.exit_code == 1                      # blockers make the run fail ...
    assert {d.key for d in outcome.plan.blockers} == {"host:amd-01", "vm:vdi-02"}
    assert "blocked: host:amd-01" in lab.output and "blocked: vm:vdi-02" in lab.output
    # Nothing left that this apply could do, but the spec is not met: never "matches".
    assert "matches the spec" not in lab.output
    assert "does not match the spec yet (2 blocked)" in lab.output, lab.output
    assert outcome.result is not None and not outcome.result.failed
    # ... but what does not depend on them was applied and verified
    assert ("host:m60-02", "host-cycle") in {(s.target, s.action) for s in outcome.result.steps
                                             if s.outcome == "ok"}
    assert not outcome.after.actions
    ids = lab.host_ids()
    assert "amd-01" not in mutating_targets(lab.server.request_log, ids)
    with Store(lab.store) as store:
        run = store.run(outcome.run_id)
        assert run.outcome == "failed" and "blocker" in run.message


def test_hosts_of_a_wave_cycle_side_by_side_within_the_budget(served_lab) -> None:
    import yaml

    from .conftest import LAB_SPEC
    body = yaml.safe_load(LAB_SPEC.read_text())
    for profile in body["hostProfiles"]:
        profile["rollout"] = {"maxUnavailable": 2, "reboot": "allowed"}
    lab = served_lab(hostProfiles=body["hostProfiles"])

    outcome = lab.apply()

    assert outcome.exit_code == 0, lab.output
    assert not outcome.after.has_changes
    engine = lab.server.engine
    names = {h.id: h.name for h in engine.hosts.values()}
    clusters = {h.name: engine.clusters[h.cluster_id].name for h in engine.hosts.values()}
    peaks = unavailable_peaks(list(engine.events), clusters, names)
    # two gpu-intel hosts were out of up at once (side by side), never more than the budget
    assert peaks["gpu-intel"] == 2, peaks


def test_a_vm_stopped_for_a_finished_cycle_is_started_again_when_a_later_host_fails(
        served_lab) -> None:
    body = spec_body()
    for profile in body["hostProfiles"]:
        if profile["name"] == "m60":       # a new argument: m60-01 needs a cycle too
            profile["kernel"]["extraArgs"] = ["pci=realloc"]
    for vm in body["vms"]:
        if vm["name"] == "vdi-01":         # runs a vGPU on m60-01: stopped for its cycle
            vm["restart"] = "allowed"
    lab = served_lab(faults=FaultConfig(never_returns=("t4-01",)),
                     hostProfiles=body["hostProfiles"], vms=body["vms"])
    quick = replace(TEST_TIMEOUTS, install=3.0)

    outcome = lab.apply(timeouts=quick)

    assert outcome.exit_code == 1
    result = outcome.result
    assert result is not None and set(result.degraded) == {"t4-01"}
    ran = [(s.target, s.action) for s in result.steps if s.outcome == "ok"]
    assert ("vm:vdi-01", "stop-vm") in ran and ("vm:vdi-01", "start-vm") in ran
    with lab.server.engine.lock:
        assert lab.server.engine.vm_by_name("vdi-01").status == "up"
