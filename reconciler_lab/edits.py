"""Strict `PUT /hosts/{id}` and `PUT /vms/{id}`, and the host actions beyond the install cycle.

The engine applies every member it maps or refuses the update; it never answers 200 and drops a
change. The lab models a subset, so an update is compared member by member with what the lab
returns for the entity:
- a member sent with the value the lab already returns is no change (clients send back what they
  read: the `ovirt.ovirt` modules send `name`, an empty `<ssh/>` ...);
- a member the engine treats as read-only is ignored, as the engine ignores it;
- `id` may not change (409 `Broken immutability constraint`, as MutabilityAssertor answers);
- a member the lab models is applied and returned;
- any other change is refused with 400 and names the member, before anything is applied.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from enum import Enum
from typing import Any

from ovirtsdk4 import List as SdkList
from ovirtsdk4 import Struct, types

from reconciler_lab import legacy
from reconciler_lab.engine import Host, LabEngine, Vm
from reconciler_lab.errors import EngineFault

# Members the engine's mappers never read from a request (or that an update cannot set).
HOST_READ_ONLY = frozenset({
    "href", "status", "status_detail", "os.reported_kernel_cmdline", "os.version", "os.type",
    "device_passthrough", "cpu", "hardware_information", "summary", "version", "libvirt_version",
    "memory", "max_scheduling_memory", "update_available", "reinstallation_required",
    "external_status", "certificate", "kdump_status", "numa_supported",
    "network_operation_in_progress", "auto_numa_status", "ksm", "se_linux", "transparent_huge_pages",
    "ssh.fingerprint", "type", "protocol", "spm.status", "root_password", "power_management.pm_proxies",
})
VM_READ_ONLY = frozenset({
    "href", "status", "status_detail", "host", "start_time", "stop_time", "stop_reason",
    "creation_time", "next_run_configuration_exists", "has_illegal_images", "run_once", "fqdn",
    "guest_operating_system", "guest_time_zone", "original_template", "template",
    "use_latest_template_version", "cpu.architecture",
})


def _members(obj: Struct) -> Iterator[tuple[str, Any]]:
    for key, value in vars(obj).items():
        if value is not None:
            yield key.lstrip("_"), value


def _same(new: Any, old: Any) -> bool:
    if isinstance(new, Enum):
        new = new.value
    if isinstance(old, Enum):
        old = old.value
    if isinstance(new, dt.datetime) or isinstance(old, dt.datetime):
        return bool(new == old)
    return bool(new == old) if not isinstance(new, (Struct, list, SdkList)) else False


def changed_members(new: Struct, old: Struct | None, prefix: str = "") -> list[str]:
    """Dotted paths of the members set in `new` whose value differs from `old`'s. Lists compare
    as wholes (their path is the list's), structs member by member."""
    out: list[str] = []
    for key, value in _members(new):
        path = f"{prefix}{key}"
        current = getattr(old, key, None) if old is not None else None
        if isinstance(value, Struct):
            if current is not None and not isinstance(current, Struct):
                out.append(path)
            else:
                out.extend(changed_members(value, current, path + "."))
        elif isinstance(value, (list, SdkList)):
            if list(value) or current:
                if not _lists_equal(list(value), list(current or [])):
                    out.append(path)
        elif not _same(value, current):
            out.append(path)
    return out


def _lists_equal(new: list[Any], old: list[Any]) -> bool:
    if len(new) != len(old):
        return False
    for a, b in zip(new, old):
        if isinstance(a, Struct):
            if changed_members(a, b if isinstance(b, Struct) else None):
                return False
        elif not _same(a, b):
            return False
    return True


def _covered(path: str, names: frozenset[str]) -> bool:
    return any(path == n or path.startswith(n + ".") for n in names)


def _refuse_unmodelled(kind: str, changes: list[str], modelled: frozenset[str],
                       read_only: frozenset[str]) -> list[str]:
    if "id" in changes:
        raise EngineFault(409, "Attempt to set immutable field: id",
                          reason="Broken immutability constraint")
    applied = [c for c in changes if _covered(c, modelled)]
    refused = [c for c in changes if c not in applied and not _covered(c, read_only)]
    if refused:
        raise EngineFault(400, f"[Cannot edit {kind}. The lab engine does not model "
                               f"{', '.join(sorted(refused))}; nothing was changed.]")
    return applied


# ---------------------------------------------------------------------------------------- hosts

HOST_MODELLED = frozenset({"os.custom_kernel_cmdline", "vgpu_placement", "comment", "cluster"})
# ChangeVDSClusterCommand: VdsStatic.clusterId is editable only in these statuses.
_CLUSTER_EDITABLE = ("maintenance", "pending_approval")


def update_host(engine: LabEngine, host: Host, upd: types.Host, current: types.Host,
                cid: str | None = None) -> None:
    if upd.cluster is not None and upd.cluster.id is None and upd.cluster.name is not None:
        # A cluster given by name is the same cluster when the names match.
        name_match = engine.clusters[host.cluster_id].name == upd.cluster.name
        upd.cluster = None if name_match else upd.cluster
    applied = _refuse_unmodelled("Host", changed_members(upd, current), HOST_MODELLED,
                                 HOST_READ_ONLY)
    with engine.lock:
        if "cluster" in applied or any(a.startswith("cluster.") for a in applied):
            assert upd.cluster is not None
            _change_cluster(engine, host, upd.cluster, cid)
        if "comment" in applied:
            host.comment = upd.comment or ""
        engine.update_host(
            host.id,
            custom_kernel_cmdline=upd.os.custom_kernel_cmdline if upd.os else None,
            vgpu_placement=upd.vgpu_placement.value if upd.vgpu_placement else None, cid=cid)


def _change_cluster(engine: LabEngine, host: Host, ref: types.Cluster, cid: str | None) -> None:
    target = None
    if ref.id is not None:
        target = engine.clusters.get(ref.id)
    elif ref.name is not None:
        target = next((c for c in engine.clusters.values() if c.name == ref.name), None)
    if target is None:
        raise EngineFault(400, "[Cannot edit Host. Cluster ID is not valid.]")
    if target.id == host.cluster_id:
        return
    if host.status not in _CLUSTER_EDITABLE:
        raise EngineFault(409, "[Cannot edit Host. Host parameters cannot be modified while Host "
                               "is operational.\nPlease switch Host to Maintenance mode first.]")
    source = engine.clusters[host.cluster_id]
    if target.architecture != source.architecture:
        raise EngineFault(409, "[Cannot edit Host. The host and destination cluster "
                               "architectures do not match.]")
    host.cluster_id = target.id
    engine.touch(host)


def refresh_host(engine: LabEngine, host: Host, cid: str | None = None) -> None:
    """RefreshHost: re-read capabilities and devices (HOST_REFRESHED_CAPABILITIES 606)."""
    with engine.lock:
        if host.status in ("non_responsive", "installing", "reboot", "install_failed"):
            raise EngineFault(409, "[Cannot refresh Host. Operation can be performed only when "
                                   "Host status is Maintenance, Up, NonOperational.]")
        engine.refresh_host_devices(host.id)
        engine.log_event(606, "normal", f"Successfully refreshed the capabilities of host "
                                        f"{host.name}.", host=host, cid=cid)


def upgrade_host(engine: LabEngine, host: Host) -> None:
    """UpgradeHost on a host that reports no updates (update_available is always false here)."""
    if host.status not in ("up", "maintenance", "non_operational"):
        raise EngineFault(409, "[Cannot upgrade Host. Valid Host statuses for upgrade are Up, "
                               "Maintenance, and Non-Operational.]")
    raise EngineFault(409, "[Cannot upgrade Host. There are no available updates for the host.]")


def upgrade_check(engine: LabEngine, host: Host, cid: str | None = None) -> None:
    """HostUpgradeCheck: the check runs and finds nothing (events 884, then 885 or 887)."""
    with engine.lock:
        engine.log_event(884, "normal", f"Started to check for available updates on host "
                                        f"{host.name}.", host=host, cid=cid)
        if host.status not in ("up", "maintenance", "non_operational"):
            engine.log_event(887, "warning", f"Failed to check for available updates on host "
                                             f"{host.name}: Unsupported host status.", host=host,
                             cid=cid)
            return
        engine.log_event(885, "normal", f"Check for available updates on host {host.name} was "
                                        "completed successfully with message 'no updates "
                                        "found.'.", host=host, cid=cid)


def fence_host(action: types.Action) -> None:
    """Fence: every lab host has power management disabled."""
    if action.fence_type is None:
        raise EngineFault(400, "Action [fenceType] required for fence",
                          reason="Incomplete parameters")
    if action.fence_type not in ("manual", "restart", "start", "stop", "status"):
        raise EngineFault(400, f"Invalid value '{action.fence_type}' for fence type.")
    raise EngineFault(409, "[Cannot fence Host, Host fence is disabled.]")


# ------------------------------------------------------------------------------------------ VMs

VM_MODELLED = frozenset({"placement_policy.hosts", "placement_policy.affinity", "display.type",
                         "description", "comment", "custom_properties"})


def update_vm(engine: LabEngine, vm: Vm, upd: types.Vm, current: types.Vm,
              cid: str | None = None) -> None:
    pp = upd.placement_policy
    if pp is not None and pp.hosts is not None:
        # Hosts by name or id: the same set as now is no change.
        wanted = {engine.host_ref_id(h.id, h.name) for h in pp.hosts}
        if wanted == set(vm.pinned_host_ids) and len(pp.hosts) == len(vm.pinned_host_ids):
            pp.hosts = None
    if upd.cluster is not None and upd.cluster.id is None \
            and upd.cluster.name == engine.clusters[vm.cluster_id].name:
        upd.cluster = None
    applied = _refuse_unmodelled("VM", changed_members(upd, current), VM_MODELLED, VM_READ_ONLY)
    with engine.lock:
        cluster_version = engine.clusters[vm.cluster_id].version
        props: dict[str, str] | None = None
        if "custom_properties" in applied:
            props = {}
            for p in upd.custom_properties or []:
                if p.name in props:
                    raise EngineFault(400, "[Cannot edit VM if some of the specified custom "
                                           "properties appear more than once. The keys are: "
                                           f"{p.name}]")
                props[p.name or ""] = p.value or ""
        mdevs = None
        if props is not None and legacy.PROPERTY in props \
                and legacy.converts(engine.fleet.engine_version):
            mdevs = legacy.to_mdevs(props.pop(legacy.PROPERTY))
        if props is not None:
            legacy.validate(props, engine.fleet.engine_version, cluster_version)
        pinned = affinity = display = None
        if pp is not None:
            if pp.hosts is not None and "placement_policy.hosts" in applied:
                pinned = [h.id or h.name for h in pp.hosts if h.id or h.name]
            if pp.affinity is not None:
                affinity = pp.affinity.value
        if upd.display is not None and upd.display.type is not None:
            display = upd.display.type.value
        engine.update_vm(vm.id, pinned_hosts=pinned, affinity=affinity, display_type=display,
                         cid=cid)
        if "description" in applied:
            vm.description = upd.description or ""
        if "comment" in applied:
            vm.comment = upd.comment or ""
        if props is not None:
            vm.custom_properties = props
        if mdevs is not None:
            engine.replace_mdevs(vm.id, mdevs)
        engine.touch(vm)


__all__ = ["changed_members", "fence_host", "refresh_host", "update_host", "update_vm",
           "upgrade_check", "upgrade_host"]
