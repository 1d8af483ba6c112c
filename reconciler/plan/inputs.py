"""What one planning run reads: the desired state, the observed facts, the applied fingerprints and
the lookups built from them.

Every lookup is built at most once per run (on first use), so the planner stays linear in the size
of the fleet. Nothing here changes after it is built: the phases read `Inputs` and return their
results as values.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from reconciler.model.facts import Cluster, Host, Observed, ProbeFacts, Vm
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Reason
from reconciler.plan.fingerprint import canonical_json, sha256_text
from reconciler.spec.model import DesiredState, VmSpec


def is_down(vm: Vm) -> bool:
    return vm.status == "down"


@dataclass(frozen=True)
class Classified:
    """An object's desired settings, fingerprinted and compared with what was last applied."""

    fingerprint: str
    reason: Reason                          # of the actions that change the object
    status: DriftStatus                     # of its drift item: drift or pending


@dataclass(frozen=True)
class IdleVgpus:
    """vGPUs of one type configured on the VMs of one cluster that are down."""

    by_vm: Mapping[str, int]
    total: int


@dataclass(frozen=True)
class Inputs:
    desired: DesiredState
    observed: Observed
    applied: Mapping[str, str]        # "host:NAME" / "vm:NAME" -> desired fingerprint applied

    def classify(self, key: str, settings: object) -> Classified:
        """Settings applied before and still wanted: the fleet moved away (drift); otherwise the
        spec asks for something new (pending)."""
        fp = sha256_text(canonical_json(settings))
        if self.applied.get(key) == fp:
            return Classified(fp, Reason.DRIFT, DriftStatus.DRIFT)
        return Classified(fp, Reason.SPEC_CHANGE, DriftStatus.PENDING)

    @cached_property
    def hosts(self) -> Mapping[str, Host]:
        return {h.name: h for h in self.observed.hosts}

    @cached_property
    def vms(self) -> Mapping[str, Vm]:
        return {v.name: v for v in self.observed.vms}

    @cached_property
    def probes(self) -> Mapping[str, ProbeFacts]:
        return {p.host: p for p in self.observed.probes}

    @cached_property
    def clusters(self) -> Mapping[str, Cluster]:
        return {c.name: c for c in self.observed.clusters}

    @cached_property
    def desired_vms(self) -> Mapping[str, VmSpec]:
        return {v.name: v for v in self.desired.vms}

    @cached_property
    def hosts_by_cluster(self) -> Mapping[str, tuple[Host, ...]]:
        """Each cluster's hosts in name order."""
        out: dict[str, list[Host]] = {}
        for h in sorted(self.observed.hosts, key=lambda h: h.name):
            out.setdefault(h.cluster, []).append(h)
        return {cluster: tuple(hosts) for cluster, hosts in out.items()}

    @cached_property
    def vms_on_host(self) -> Mapping[str, tuple[Vm, ...]]:
        """The VMs the engine places on each host now."""
        out: dict[str, list[Vm]] = {}
        for vm in self.observed.vms:
            if vm.host:
                out.setdefault(vm.host, []).append(vm)
        return {host: tuple(vms) for host, vms in out.items()}

    @cached_property
    def offered_types(self) -> Mapping[str, frozenset[str]]:
        """cluster -> the vGPU types any of its GPUs offers (cheaper than a capacity pool)."""
        return {cluster: frozenset(t.name for h in hosts for d in h.devices for t in d.mdev_types)
                for cluster, hosts in self.hosts_by_cluster.items()}

    @cached_property
    def offered_on_host(self) -> Mapping[str, frozenset[str]]:
        """host -> the vGPU types its GPUs offer (where a pinned VM takes its vGPUs)."""
        return {h.name: frozenset(t.name for d in h.devices for t in d.mdev_types)
                for h in self.observed.hosts}

    @cached_property
    def device_holders(self) -> Mapping[tuple[str, str], tuple[str, ...]]:
        """(host, device) -> the VMs whose configuration holds it, in name order."""
        holders: dict[tuple[str, str], list[str]] = {}
        for vm in sorted(self.observed.vms, key=lambda v: v.name):
            for d in vm.host_devices:
                if d.host:
                    holders.setdefault((d.host, d.name), []).append(vm.name)
        return {k: tuple(v) for k, v in holders.items()}

    @cached_property
    def idle_vgpus(self) -> Mapping[tuple[str, str], IdleVgpus]:
        """(cluster, type) -> the vGPUs configured on VMs that are down."""
        by_vm: dict[tuple[str, str], dict[str, int]] = {}
        for vm in sorted(self.observed.vms, key=lambda v: v.name):
            if not vm.mediated_devices or not is_down(vm):
                continue
            for t, n in sorted(Counter(m.mdev_type for m in vm.mediated_devices).items()):
                by_vm.setdefault((vm.cluster, t), {})[vm.name] = n
        return {k: IdleVgpus(v, sum(v.values())) for k, v in by_vm.items()}
