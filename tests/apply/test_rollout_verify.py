"""Pure parts of the executor: grouping a plan into units, the availability budget, evaluating
verifications on facts, and reading what a dead run left down from its journal."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reconciler.apply.recovery import left_down
from reconciler.apply.rollout import Budget, units_of
from reconciler.apply.verify import ObjectView, holds
from reconciler.model.facts import (Host, MediatedDevice, ModprobeFile, ProbeFacts, Vm,
                                      VmHostDevice)
from reconciler.plan.actions import (AddMediatedDevice, Disruption, HostCycle, Reason,
                                     RegenerateInitramfs, SetKernelCmdline, StartVm, StopVm,
                                     Verification, WriteModprobeFile)
from reconciler.store import JournalEntry

R = Reason.SPEC_CHANGE


def _host(name: str, status: str = "up", cluster: str = "c1") -> Host:
    return Host(id=name, name=name, cluster=cluster, status=status)


def test_units_keep_plan_order_and_put_cycle_stops_with_their_host() -> None:
    actions = (
        WriteModprobeFile(target="host:a", before=None, after="x",
                          disruption=Disruption.HOST_REBOOT, reason=R, description="w"),
        StopVm(target="vm:v1", before="up", after="down", reason=R, description="stop", wave=1),
        SetKernelCmdline(target="host:b", before="", after="k", reason=R, description="k",
                         wave=1),
        HostCycle(target="host:b", before="up", after="up", reason=R, description="cycle",
                  wave=1),
        HostCycle(target="host:c", before="up", after="up", reason=R, description="cycle",
                  wave=2),
        StartVm(target="vm:v1", before="down", after="up", reason=R, description="start"),
        AddMediatedDevice(target="vm:v2", before=None, after="t", reason=R, description="add"),
    )
    units = units_of(actions)
    assert [(u.kind, u.target, u.wave) for u in units] == [
        ("host-config", "host:a", None), ("host-cycle", "host:b", 1),
        ("host-cycle", "host:c", 2), ("vm", "vm:v1", None), ("vm", "vm:v2", None)]
    assert [i for i, _ in units[1].actions] == [1, 2, 3]
    assert units[1].cycle == (3, actions[3])


def test_budget_counts_hosts_already_not_up() -> None:
    cluster = [_host("a"), _host("b", "non_responsive"), _host("c"), _host("d")]
    budget = Budget({"a": 1, "c": 2, "b": 1, "d": 2})
    refused = budget.check(_host("a"), cluster)
    assert not refused.allowed and refused.unavailable == ("b",)
    assert "maxUnavailable 1" in refused.message and "b" in refused.message
    assert budget.check(_host("c"), cluster).allowed               # limit 2: b + c
    assert budget.check(_host("b", "maintenance"), cluster).allowed  # already out: no new budget
    # a cycle this run started, not yet visible as down, counts too
    busy = budget.check(_host("d"), cluster, in_flight={"c"})
    assert not busy.allowed and busy.unavailable == ("b", "c")
    assert budget.check(_host("d"), cluster, in_flight={"x-elsewhere"}).allowed


def test_verifications_on_facts() -> None:
    host = Host(id="h", name="h", cluster="c", status="up", custom_kernel_cmdline="a=1 b",
                reported_kernel_cmdline="ro quiet")
    probe = ProbeFacts(host="h", proc_cmdline="ro intel_iommu=on",
                       loaded_modules=("vfio", "nvidia_vgpu_vfio"),
                       modprobe_files=(ModprobeFile("/etc/modprobe.d/x.conf", sha256="abc"),))
    view = ObjectView("host:h", host=host, probe=probe)
    check = lambda field, op, value: holds(Verification("host:h", field, op, value), view)  # noqa: E731
    assert check("booted_cmdline", "contains", "intel_iommu=on") is True
    assert check("booted_cmdline", "not-contains", "rdblacklist=nouveau") is True
    assert check("custom_kernel_cmdline", "eq", "a=1 b") is True
    assert check("probe.loaded_modules", "not-contains", "nouveau") is True
    assert check("probe.loaded_modules", "not-contains", "vfio") is False
    assert check("probe.modprobe_files[/etc/modprobe.d/x.conf].sha256", "eq", "abc") is True
    assert check("probe.modprobe_files[/etc/modprobe.d/y.conf].sha256", "eq", "abc") is None
    unprobed = ObjectView("host:h", host=host)
    assert holds(Verification("host:h", "booted_cmdline", "contains", "intel_iommu=on"),
                 unprobed) is False                    # falls back to the engine's report
    assert holds(Verification("host:h", "probe.loaded_modules", "not-contains", "x"),
                 unprobed) is None                     # not observable: never counted as ok

    vm = Vm(id="v", name="v", cluster="c", status="down", pinned_hosts=("h",),
            host_devices=(VmHostDevice("pci_1"), VmHostDevice("pci_2", placeholder=True)),
            mediated_devices=(MediatedDevice("m1", "nvidia-18"),
                              MediatedDevice("m2", "nvidia-18", nodisplay=True)))
    vview = ObjectView("vm:v", vm=vm)
    vcheck = lambda field, op, value: holds(Verification("vm:v", field, op, value), vview)  # noqa: E731
    assert vcheck("pinned_hosts", "eq", "h") is True
    assert vcheck("host_devices", "contains", "pci_1") is True
    assert vcheck("host_devices", "contains", "pci_2") is False    # a placeholder is not ours
    assert vcheck("mediated_devices[mdev_type=nvidia-18]", "count", 2) is True
    assert vcheck("mediated_devices[mdev_type=nvidia-22]", "count", 0) is True
    assert vcheck("mediated_devices[m2].nodisplay", "eq", True) is True
    assert vcheck("mediated_devices", "not-contains", "m3") is True
    assert vcheck("status", "eq", "up") is False


def _entry(n: int, action: str, target: str, outcome: str | None) -> JournalEntry:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return JournalEntry(n, "r", str(n), target, action, "host-reboot", {}, at, None, outcome,
                        None, None)


def test_left_down_follows_the_journal() -> None:
    entries = [_entry(1, "deactivate", "host:a", "ok"), _entry(2, "install", "host:a", None),
               _entry(3, "deactivate", "host:b", "ok"), _entry(4, "activate", "host:b", "ok"),
               _entry(5, "stop-vm", "vm:v", "ok"), _entry(6, "deactivate", "host:c", "failed"),
               _entry(7, "stop-vm", "vm:w", "ok"), _entry(8, "start-vm", "vm:w", "ok")]
    # c: the deactivation failed, but may have gone through later; recovery checks its status
    assert left_down(entries) == (["a", "c"], ["v"])


def test_a_stop_the_spec_does_not_allow_is_refused() -> None:
    from reconciler.apply.dispatch import ActionContext, perform
    from reconciler.apply.executor import Timeouts
    from reconciler.errors import ApplyError
    import pytest

    context = ActionContext(ops=None, transports={}, timeouts=Timeouts(),  # type: ignore[arg-type]
                            restart_policy={"vdi-01": "whenDown"}.get)
    stop = StopVm(target="vm:vdi-01", before="up", after="down", reason=R, description="stop")
    with pytest.raises(ApplyError, match="restart: whenDown"):
        perform(stop, context)


def test_a_stop_of_a_vm_no_spec_names_says_so() -> None:
    from reconciler.apply.dispatch import ActionContext, perform
    from reconciler.apply.executor import Timeouts
    from reconciler.apply.runner import _restart_policy
    from reconciler.errors import ApplyError
    from reconciler.spec.model import DesiredState, EngineSpec
    import pytest

    # before: "refusing to stop the VM: its spec says restart: never" for web-01, which no
    # spec names
    context = ActionContext(ops=None, transports={}, timeouts=Timeouts(),  # type: ignore[arg-type]
                            restart_policy=_restart_policy(DesiredState(EngineSpec())))
    stop = StopVm(target="vm:web-01", before="up", after="down", reason=R, description="stop")
    with pytest.raises(ApplyError, match="no spec names it") as err:
        perform(stop, context)
    assert "its spec says" not in str(err.value)


def test_only_our_own_modprobe_file_is_ever_written() -> None:
    from reconciler.apply.dispatch import ActionContext, perform
    from reconciler.apply.executor import Timeouts
    from reconciler.errors import ApplyError
    import pytest

    context = ActionContext(ops=None, transports={}, timeouts=Timeouts(),  # type: ignore[arg-type]
                            restart_policy=lambda _vm: None)
    foreign = WriteModprobeFile(target="host:h", before=None, after="x",
                                disruption=Disruption.HOST_REBOOT, reason=R, description="w",
                                path="/etc/modprobe.d/blacklist-nouveau.conf", content="")
    with pytest.raises(ApplyError, match="only our own /etc/modprobe.d/gpu-reconciler.conf"):
        perform(foreign, context)
    from reconciler.plan.actions import RemoveModprobeFile
    theirs = RemoveModprobeFile(target="host:h", before="x", after=None, reason=R,
                                description="r", path="/etc/modprobe.d/blacklist-nouveau.conf")
    with pytest.raises(ApplyError, match="only our\n? ?own /etc/modprobe.d/gpu-reconciler.conf"
                       " is ever removed"):
        perform(theirs, context)


@pytest.mark.lab
def test_each_added_vgpu_instance_is_verified_by_its_own_count(served_lab) -> None:
    lab = served_lab()
    adds = [a for a in lab.plan().actions if isinstance(a, AddMediatedDevice)]
    assert any(a.instance > 1 for a in adds), "the demo plan adds no second instance"
    for add in adds:
        counts = [v.value for v in add.verify if v.op == "count"]
        # Verified right after it is added: the instances before it and itself, not the final N.
        assert counts == [add.instance], (add.description, counts)
