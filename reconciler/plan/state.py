"""State and helpers of the VM phase (see planner.py for the order of the phases)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.model.facts import Cluster, Host, Observed, ProbeFacts, Vm
from reconciler.plan.actions import Action, Reason, StartVm
from reconciler.plan.capacity import Pool, build_pool
from reconciler.plan.expand import HostDesired
from reconciler.plan.fingerprint import canonical_json, sha256_text
from reconciler.plan.inputs import Inputs, is_down
from reconciler.plan.power import start_vm
from reconciler.plan.result import DriftItem, Note
from reconciler.spec.model import DesiredState, VmSpec


@dataclass
class IdleVgpus:
    """vGPUs of one type configured on the VMs of one cluster that are down."""

    by_vm: dict[str, int] = field(default_factory=dict)
    total: int = 0


class PlanState:
    """Indexes built once per run, the results collected so far, and helpers all phases use."""

    def __init__(self, desired: DesiredState, observed: Observed,
                 applied: Mapping[str, str]) -> None:
        self.desired = desired
        self.observed = observed
        self.applied = applied
        self.inputs = Inputs(desired, observed, applied)
        self.hosts = {h.name: h for h in observed.hosts}
        self.vms = {v.name: v for v in observed.vms}
        self.probes = {p.host: p for p in observed.probes}
        self.clusters: dict[str, Cluster] = {c.name: c for c in observed.clusters}
        self.hosts_by_cluster: dict[str, list[Host]] = {}
        for h in sorted(observed.hosts, key=lambda h: h.name):
            self.hosts_by_cluster.setdefault(h.cluster, []).append(h)
        self.pools: dict[str, Pool] = {}
        self.capacity_clusters: set[str] = set()
        self.cluster_types: dict[str, frozenset[str]] = {}
        self.drift: list[DriftItem] = []
        self.notes: list[Note] = []
        self.depends: set[str] = set()
        self.desired_fps: dict[str, str] = {}
        self.host_desired: Mapping[str, HostDesired] = {}   # set from the host phase
        self.stopped_for_cycle: Mapping[str, str] = {}   # vm -> host, set from the host phase
        self.vm_actions: list[Action] = []
        self.started: set[str] = set()
        self.seat_delta: Counter[str] = Counter()
        self.desired_vms: dict[str, VmSpec] = {v.name: v for v in desired.vms}
        self.device_holders: dict[tuple[str, str], list[str]] | None = None   # see VmPlanning
        self.idle_mdevs: dict[tuple[str, str], IdleVgpus] | None = None   # see VmPlanning
        self.seat_adds: dict[tuple[str, str], str] = {}   # (cluster, type) -> first VM adding
        self.vms_on_host: dict[str, list[Vm]] = {}
        for vm in observed.vms:
            if vm.host:
                self.vms_on_host.setdefault(vm.host, []).append(vm)

    # ---- helpers --------------------------------------------------------------------------------

    def _classify(self, key: str, settings: object) -> tuple[Reason, str]:
        fp = sha256_text(canonical_json(settings))
        self.desired_fps[key] = fp
        if self.applied.get(key) == fp:
            return Reason.DRIFT, "drift"
        return Reason.SPEC_CHANGE, "pending"

    def _block(self, key: str, message: str, location: str | None) -> None:
        self.drift.append(DriftItem(key, "blocked", message, location))

    def _pool(self, cluster: str) -> Pool:
        pool = self.pools.get(cluster)
        if pool is None:
            pool = build_pool((h.name, h.devices) for h in self.hosts_by_cluster.get(cluster, ()))
            self.pools[cluster] = pool
        return pool

    def _cluster_types(self, cluster: str) -> frozenset[str]:
        """vGPU types any GPU of the cluster offers (cheaper than a capacity pool)."""
        types = self.cluster_types.get(cluster)
        if types is None:
            types = frozenset(t.name for h in self.hosts_by_cluster.get(cluster, ())
                              for d in h.devices for t in d.mdev_types)
            self.cluster_types[cluster] = types
        return types

    def _probe(self, host: str) -> ProbeFacts | None:
        return self.probes.get(host)

    def _start(self, vm: Vm, spec: VmSpec, reason: Reason, why: str) -> StartVm:
        self.started.add(vm.name)
        return start_vm(vm, spec, reason, why)
