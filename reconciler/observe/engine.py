"""Engine facts: clusters, hosts with their devices, VMs with theirs, read in bulk via ovirtsdk4.

The whole fleet is read in a constant number of requests, whatever its size:
  1. GET /clusters
  2. GET /hosts?follow=devices              (narrowed to the spec's clusters with `search`)
  3. GET /vms?follow=host_devices,mediated_devices,graphics_consoles   (narrowed likewise)
plus, only when a reference points outside the narrowed set, one shallow GET /hosts or GET /vms to
name it, and, only when a spec VM lives in a cluster no profile selects or is pinned to a host
outside those clusters, one more GET /hosts?follow=devices for those clusters and hosts (a VM's
candidate hosts decide vGPU capacity; its passthrough host must be known). The host and VM lists
are sent through the SDK's connection and parsed as they are read (`reconciler.observe.bulk_read`:
the SDK's readers took most of a 1,000-host read); SDK objects of the other calls are converted
into the frozen facts of `reconciler.model.facts` here and go no further.

Parsing is what a large read costs (the client, not the engine, is busy), so when the process may
fork (`reconciler.observe.forked`: one thread only, as in `reconcile plan`) the VM list is read
and parsed by a forked child on its own connection, sharing the SSO token, while this process
reads the host list: the same requests, on two cores. Should the child fail in any way, this
process reads the VM list itself, with the usual retries.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, cast
from xml.etree.ElementTree import Element

import ovirtsdk4
from ovirtsdk4 import types

from reconciler.engine.client import CountingConnection, SiblingConnection
from reconciler.engine.retry import DEFAULT_TIMING, Timing, read
from reconciler.log import get_logger
from reconciler.observe.bulk_read import PendingList, collector_paused
from reconciler.observe.forked import ForkedCall, ForkedCallFailed, can_fork
from reconciler.model.facts import (Cluster, GraphicsConsole, Host, HostDevice, MdevType,
                                      MediatedDevice, Vm, VmHostDevice)
from reconciler.observe.vendor import derive_vendor
from reconciler.spec.model import DesiredState

_log = get_logger(__name__)

HOST_FOLLOW = "devices"
VM_FOLLOW = "host_devices,mediated_devices,graphics_consoles"
LEGACY_MDEV_PROPERTY = "mdev_type"

# Values we put into a search string unquoted; anything else disables narrowing (read everything)
# rather than risk a query the engine parses differently.
_SEARCH_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Above this many terms a search string is longer than reading everything is expensive.
_MAX_SEARCH_TERMS = 64


@dataclass(frozen=True)
class EngineRead:
    """What one engine read returns. Unpacks as `clusters, hosts, vms`."""

    clusters: tuple[Cluster, ...]
    hosts: tuple[Host, ...]
    vms: tuple[Vm, ...]
    addresses: Mapping[str, str] = field(default_factory=dict)   # host name -> engine `address`
    requests: int = 0                                            # API requests this read sent

    def __iter__(self) -> Iterator[Any]:
        return iter((self.clusters, self.hosts, self.vms))


# ---- narrowing ----------------------------------------------------------------------------------

def _or_search(key: str, values: Iterable[str]) -> str | None:
    values = sorted(set(values))
    if not values or len(values) > _MAX_SEARCH_TERMS:
        return None
    if not all(_SEARCH_SAFE.match(v) for v in values):
        return None
    return " or ".join(f"{key}={v}" for v in values)


def host_search(desired: DesiredState | None) -> str | None:
    """Search for the hosts the spec can manage: every host of the profiles' clusters.

    None (read every host) when there is no spec, no profile, or a profile selects hosts in every
    cluster. Name globs are applied by the planner; reading a cluster's other hosts costs nothing
    extra in requests and shows who else holds GPUs there.
    """
    if desired is None or not desired.host_profiles:
        return None
    clusters = [p.selector.cluster for p in desired.host_profiles]
    if any(c is None for c in clusters):
        return None
    return _or_search("cluster", [c for c in clusters if c])


def vm_search(desired: DesiredState | None) -> str | None:
    """Search for the VMs worth reading in depth: those of the managed clusters and named ones."""
    cluster_search = host_search(desired)
    if desired is None or cluster_search is None:
        return None
    names = [v.name for v in desired.vms]
    name_search = _or_search("name", names) if names else ""
    if name_search is None:
        return None
    return " or ".join(s for s in (cluster_search, name_search) if s)


# ---- conversion ---------------------------------------------------------------------------------

def _enum(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _hex_id(value: str | None) -> str | None:
    """PCI ids come as "0x10de"; facts keep "10de"."""
    if not value:
        return None
    value = value.lower()
    return value[2:] if value.startswith("0x") else value


def device_name(ref: types.HostDevice | None) -> str | None:
    """Name of a device reference; its id is the hex of its name when only the id is given."""
    if ref is None:
        return None
    if ref.name:
        return ref.name
    if ref.id:
        try:
            return bytes.fromhex(ref.id).decode("utf-8")
        except ValueError:
            return ref.id
    return None


def parse_description(description: str | None) -> dict[str, str]:
    """`num_heads=2, framebuffer=512M, max_instance=16` -> {'num_heads': '2', ...}."""
    result: dict[str, str] = {}
    for part in (description or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def mdev_type_fact(m: types.MDevType) -> MdevType:
    max_instance = parse_description(m.description).get("max_instance")
    return MdevType(
        name=m.name or "",
        available_instances=int(m.available_instances or 0),
        human_readable_name=m.human_readable_name,
        description=m.description,
        max_instances=int(max_instance) if max_instance and max_instance.isdigit() else None)


def host_device_fact(d: types.HostDevice, vm_names: Callable[[str], str | None]) -> HostDevice:
    vendor, product = d.vendor, d.product
    return HostDevice(
        name=device_name(d) or "",
        capability=d.capability or "pci",
        iommu_group=d.iommu_group,
        driver=d.driver,
        vendor_id=_hex_id(vendor.id) if vendor else None,
        vendor_name=vendor.name if vendor else None,
        product_id=_hex_id(product.id) if product else None,
        product_name=product.name if product else None,
        parent=device_name(d.parent_device),
        physical_function=device_name(d.physical_function),
        virtual_functions=d.virtual_functions,
        mdev_types=tuple(sorted((mdev_type_fact(m) for m in d.m_dev_types or ()),
                                key=lambda m: m.name)),
        vm=vm_names(d.vm.id) if d.vm is not None and d.vm.id else None)


def cluster_fact(c: types.Cluster) -> Cluster:
    cpu = c.cpu
    return Cluster(id=c.id, name=c.name, cpu_type=cpu.type if cpu else None,
                   architecture=_enum(cpu.architecture) if cpu else None)


def host_fact(h: types.Host, clusters_by_id: Mapping[str, Cluster],
              vm_names: Callable[[str], str | None]) -> Host:
    cluster = clusters_by_id.get(h.cluster.id) if h.cluster is not None else None
    cpu_type = h.cpu.type if h.cpu else None
    cpu_name = h.cpu.name if h.cpu else None
    verdict = derive_vendor(cluster.cpu_type if cluster else None,
                            cluster.architecture if cluster else None, cpu_type, cpu_name)
    os_ = h.os
    devices = h.devices if isinstance(h.devices, list) else []
    return Host(
        id=h.id, name=h.name, cluster=cluster.name if cluster else (h.cluster.id if h.cluster
                                                                    else ""),
        status=_enum(h.status) or "unknown",
        cpu_vendor=verdict.vendor, cpu_vendor_note=verdict.note,
        cpu_type=cpu_type, cpu_name=cpu_name,
        custom_kernel_cmdline=(os_.custom_kernel_cmdline or "") if os_ else "",
        reported_kernel_cmdline=os_.reported_kernel_cmdline if os_ else None,
        reinstallation_required=bool(h.reinstallation_required),
        device_passthrough=bool(h.device_passthrough and h.device_passthrough.enabled),
        vgpu_placement=_enum(h.vgpu_placement),
        devices=tuple(sorted((host_device_fact(d, vm_names) for d in devices),
                             key=lambda d: d.name)),
        comment=h.comment or "")


_HOST_IN_HREF = re.compile(r"/hosts/([^/]+)/devices/")


def _vm_host_device_fact(d: types.HostDevice, host_names: Callable[[str], str | None]) -> \
        VmHostDevice:
    host_id = d.host.id if d.host is not None else None
    if host_id is None and d.href:
        match = _HOST_IN_HREF.search(d.href)
        host_id = match.group(1) if match else None
    return VmHostDevice(name=device_name(d) or "",
                        host=host_names(host_id) if host_id else None,
                        placeholder=bool(d.placeholder))


def _spec_params(m: types.VmMediatedDevice) -> dict[str, str]:
    return {p.name: p.value for p in m.spec_params or () if p.name is not None}


def mediated_device_fact(m: types.VmMediatedDevice) -> MediatedDevice:
    params = _spec_params(m)
    return MediatedDevice(id=m.id or "", mdev_type=params.get("mdevType", ""),
                          nodisplay=str(params.get("nodisplay", "false")).lower() == "true",
                          driver_params=params.get("driverParams") or None)


def vm_fact(v: types.Vm, clusters_by_id: Mapping[str, Cluster],
            host_names: Callable[[str], str | None]) -> Vm:
    cluster = clusters_by_id.get(v.cluster.id) if v.cluster is not None else None
    policy = v.placement_policy
    pinned = tuple(n for n in (host_names(h.id) for h in (policy.hosts or ()) if h.id)
                   if n) if policy else ()
    legacy = next((p.value for p in v.custom_properties or ()
                   if p.name == LEGACY_MDEV_PROPERTY and p.value), None)
    return Vm(
        id=v.id, name=v.name,
        cluster=cluster.name if cluster else (v.cluster.id if v.cluster else ""),
        status=_enum(v.status) or "unknown",
        host=host_names(v.host.id) if v.host is not None and v.host.id else None,
        pinned_hosts=pinned,
        affinity=_enum(policy.affinity) if policy else None,
        graphics=tuple(sorted((GraphicsConsole(id=g.id or "", protocol=_enum(g.protocol) or "")
                               for g in _listed(v.graphics_consoles)), key=lambda g: g.protocol)),
        host_devices=tuple(sorted((_vm_host_device_fact(d, host_names)
                                   for d in _listed(v.host_devices)),
                                  key=lambda d: (d.placeholder, d.name))),
        mediated_devices=tuple(sorted((mediated_device_fact(m)
                                       for m in _listed(v.mediated_devices)),
                                      key=lambda m: (m.mdev_type, m.id))),
        legacy_mdev_property=legacy)


# ---- conversion from the bulk lists' XML (reconciler.observe.bulk_read) --------------------------
# The same facts host_fact / host_device_fact / mdev_type_fact make from SDK objects, made straight
# from the parsed elements of `GET /hosts?follow=devices`: that list is most of what reading a
# fleet costs, and building records first doubled its conversion time. The observe tests compare
# both ways on lab fleets. Identical vGPU types (same GPU model and availability) share one fact.

def _text_int(value: str | None) -> int | None:
    return int(value) if value else None


def _text_bool(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1")


def _element_device_name(ref: Element | None) -> str | None:
    if ref is None:
        return None
    name = ref.findtext("name")
    if name:
        return name
    ident = ref.get("id")
    if ident:
        try:
            return bytes.fromhex(ident).decode("utf-8")
        except ValueError:
            return ident
    return None


def _element_mdev_types(device: Element,
                        shared: dict[tuple[str | None, ...], MdevType]) -> tuple[MdevType, ...]:
    listed = device.find("m_dev_types")
    if listed is None:
        return ()
    out = []
    for m in listed:
        key = (m.findtext("name"), m.findtext("available_instances"),
               m.findtext("human_readable_name"), m.findtext("description"))
        fact = shared.get(key)
        if fact is None:
            max_instance = parse_description(key[3]).get("max_instance")
            fact = shared[key] = MdevType(
                name=key[0] or "", available_instances=int(key[1] or 0),
                human_readable_name=key[2], description=key[3],
                max_instances=int(max_instance) if max_instance and max_instance.isdigit()
                else None)
        out.append(fact)
    return tuple(sorted(out, key=lambda m: m.name))


def _element_device_fact(d: Element, vm_names: Callable[[str], str | None],
                         shared: dict[tuple[str | None, ...], MdevType]) -> HostDevice:
    vendor, product, vm = d.find("vendor"), d.find("product"), d.find("vm")
    vm_id = vm.get("id") if vm is not None else None
    return HostDevice(
        name=_element_device_name(d) or "",
        capability=d.findtext("capability") or "pci",
        iommu_group=_text_int(d.findtext("iommu_group")),
        driver=d.findtext("driver"),
        vendor_id=_hex_id(vendor.get("id")) if vendor is not None else None,
        vendor_name=vendor.findtext("name") if vendor is not None else None,
        product_id=_hex_id(product.get("id")) if product is not None else None,
        product_name=product.findtext("name") if product is not None else None,
        parent=_element_device_name(d.find("parent_device")),
        physical_function=_element_device_name(d.find("physical_function")),
        virtual_functions=_text_int(d.findtext("virtual_functions")),
        mdev_types=_element_mdev_types(d, shared),
        vm=vm_names(vm_id) if vm_id else None)


def host_fact_from_element(h: Element, clusters_by_id: Mapping[str, Cluster],
                           vm_names: Callable[[str], str | None],
                           shared: dict[tuple[str | None, ...], MdevType]) -> Host:
    """`host_fact` for one `<host>` element of the bulk host list."""
    cluster_ref = h.find("cluster")
    cluster_id = cluster_ref.get("id") if cluster_ref is not None else None
    cluster = clusters_by_id.get(cluster_id) if cluster_id is not None else None
    cpu = h.find("cpu")
    cpu_type = cpu.findtext("type") if cpu is not None else None
    cpu_name = cpu.findtext("name") if cpu is not None else None
    verdict = derive_vendor(cluster.cpu_type if cluster else None,
                            cluster.architecture if cluster else None, cpu_type, cpu_name)
    os_ = h.find("os")
    passthrough = h.find("device_passthrough")
    listed = h.find("devices")
    # Typed as the SDK path gives them (an engine host always has an id, a name and a cluster).
    return Host(
        id=cast(str, h.get("id")), name=cast(str, h.findtext("name")),
        cluster=cluster.name if cluster else cast(str, cluster_id if cluster_ref is not None
                                                  else ""),
        status=h.findtext("status") or "unknown",
        cpu_vendor=verdict.vendor, cpu_vendor_note=verdict.note,
        cpu_type=cpu_type, cpu_name=cpu_name,
        custom_kernel_cmdline=(os_.findtext("custom_kernel_cmdline") or "")
        if os_ is not None else "",
        reported_kernel_cmdline=os_.findtext("reported_kernel_cmdline")
        if os_ is not None else None,
        reinstallation_required=_text_bool(h.findtext("reinstallation_required")),
        device_passthrough=passthrough is not None
        and _text_bool(passthrough.findtext("enabled")),
        vgpu_placement=h.findtext("vgpu_placement"),
        devices=tuple(sorted((_element_device_fact(d, vm_names, shared)
                              for d in (listed if listed is not None else ())),
                             key=lambda d: d.name)),
        comment=h.findtext("comment") or "")


class VmRead(NamedTuple):
    """One `<vm>` of the bulk VM list, made into what `vm_fact` makes of it, except the names of the
    hosts it refers to: the host list may still be arriving (both are read at once). `vm_from_read`
    finishes it once every host is known."""

    id: str
    name: str
    cluster_id: str | None
    cluster: str | None                     # as vm_fact names it: the cluster's name, else its id
    status: str
    host_id: str | None
    pinned_ids: tuple[str, ...]
    affinity: str | None
    graphics: tuple[GraphicsConsole, ...]
    host_devices: tuple[tuple[str, str | None, bool], ...]     # (name, host id, placeholder)
    mediated_devices: tuple[MediatedDevice, ...]
    legacy_mdev_property: str | None


def _children(parent: Element, name: str) -> Iterable[Element]:
    """The members of a list given inline; none when only a link (or nothing) stands for it."""
    listed = parent.find(name)
    return listed if listed is not None else ()


def _element_vm_host_device(d: Element) -> tuple[str, str | None, bool]:
    host = d.find("host")
    host_id = host.get("id") if host is not None else None
    href = d.get("href")
    if host_id is None and href:
        match = _HOST_IN_HREF.search(href)
        host_id = match.group(1) if match else None
    return (_element_device_name(d) or "", host_id, _text_bool(d.findtext("placeholder")))


def _element_mediated_device(m: Element) -> MediatedDevice:
    params = {p.findtext("name"): p.findtext("value") for p in _children(m, "spec_params")}
    params.pop(None, None)                  # a property without a name (as _spec_params)
    return MediatedDevice(id=m.get("id") or "", mdev_type=params.get("mdevType", ""),
                          nodisplay=str(params.get("nodisplay", "false")).lower() == "true",
                          driver_params=params.get("driverParams") or None)


def _element_legacy_property(v: Element) -> str | None:
    for p in _children(v, "custom_properties"):
        value = p.findtext("value")
        if p.findtext("name") == LEGACY_MDEV_PROPERTY and value:
            return value
    return None


def vm_read_from_element(v: Element, clusters_by_id: Mapping[str, Cluster]) -> VmRead:
    """What `vm_fact` reads of a VM, straight from one `<vm>` element of the bulk VM list."""
    cluster_ref = v.find("cluster")
    cluster_id = cluster_ref.get("id") if cluster_ref is not None else None
    cluster = clusters_by_id.get(cluster_id) if cluster_id is not None else None
    host = v.find("host")
    policy = v.find("placement_policy")
    pinned = (tuple(i for i in (h.get("id") for h in _children(policy, "hosts")) if i)
              if policy is not None else ())
    consoles = (GraphicsConsole(id=g.get("id") or "", protocol=g.findtext("protocol") or "")
                for g in _children(v, "graphics_consoles"))
    return VmRead(
        id=cast(str, v.get("id")), name=cast(str, v.findtext("name")), cluster_id=cluster_id,
        cluster=cluster.name if cluster else (cluster_id if cluster_ref is not None else ""),
        status=v.findtext("status") or "unknown",
        host_id=host.get("id") if host is not None else None, pinned_ids=pinned,
        affinity=policy.findtext("affinity") if policy is not None else None,
        graphics=tuple(sorted(consoles, key=lambda g: g.protocol)),
        host_devices=tuple(_element_vm_host_device(d) for d in _children(v, "host_devices")),
        mediated_devices=tuple(sorted((_element_mediated_device(m)
                                       for m in _children(v, "mediated_devices")),
                                      key=lambda m: (m.mdev_type, m.id))),
        legacy_mdev_property=_element_legacy_property(v))


def vm_from_read(v: VmRead, host_names: Callable[[str], str | None]) -> Vm:
    """The VM's fact, its host references named."""
    devices = (VmHostDevice(name=name, host=host_names(host) if host else None,
                            placeholder=placeholder)
               for name, host, placeholder in v.host_devices)
    return Vm(
        id=v.id, name=v.name, cluster=cast(str, v.cluster), status=v.status,
        host=host_names(v.host_id) if v.host_id else None,
        pinned_hosts=tuple(n for n in (host_names(i) for i in v.pinned_ids) if n),
        affinity=v.affinity, graphics=v.graphics,
        host_devices=tuple(sorted(devices, key=lambda d: (d.placeholder, d.name))),
        mediated_devices=v.mediated_devices, legacy_mdev_property=v.legacy_mdev_property)


def outside_search(desired: DesiredState | None, read_host_names: Iterable[str],
                   vm_clusters: Mapping[str, str]) -> str | None:
    """Search for the hosts a narrowed host read missed but the spec's VMs need, or None.

    `vm_clusters` maps each read spec VM to its cluster name. Returns "" when nothing is missing
    and None when the missing set cannot be named safely (then every host is read).
    """
    if desired is None or host_search(desired) is None:
        return ""
    covered = {p.selector.cluster for p in desired.host_profiles}
    clusters = {c for c in vm_clusters.values() if c and c not in covered}
    known = set(read_host_names)
    pinned = {v.passthrough.host for v in desired.vms
              if v.passthrough is not None and v.passthrough.host not in known}
    if not clusters and not pinned:
        return ""
    parts = [_or_search("cluster", clusters) if clusters else "",
             _or_search("name", pinned) if pinned else ""]
    if any(part is None for part in parts):
        return None
    return " or ".join(part for part in parts if part)


def _listed(value: Any) -> Sequence[Any]:
    """A followed link is a list; an unfollowed one is an `ovirtsdk4.List` with only an href."""
    return value if isinstance(value, list) else ()


# ---- reading ------------------------------------------------------------------------------------

class _Names:
    """id -> name, filled from the bulk reads, with at most one shallow listing to complete it."""

    def __init__(self, known: Mapping[str, str], complete: Callable[[], Iterable[Any]]) -> None:
        self._names = dict(known)
        self._complete = complete
        self._completed = False

    def __call__(self, ident: str) -> str | None:
        if ident not in self._names and not self._completed:
            self._completed = True
            self._names.update({o.id: o.name for o in self._complete()})
        return self._names.get(ident)


def _name_device_users(host: Host, vm_names: Callable[[str], str | None]) -> Host:
    """Replace the VM ids left on devices by `read_engine` with the VMs' names."""
    if not any(d.vm for d in host.devices):
        return host
    return replace(host, devices=tuple(replace(d, vm=vm_names(d.vm)) if d.vm else d
                                       for d in host.devices))


def _keep_id(vm_id: str) -> str:
    """Device users are named once the VMs are read (see _name_device_users)."""
    return vm_id


class _ListRead(NamedTuple):
    """What the child reading a list sends back: the items (None when it failed, with the
    reason) and what its connection sent and received, counted on the parent's connection."""

    items: list[Any] | None
    error: str | None
    requests: int
    received: int
    failed: int


def _read_list_elsewhere(sibling: SiblingConnection, path: str,
                         query: Mapping[str, str | None],
                         take: Callable[[Element], Any]) -> _ListRead:
    """In the forked child: one bulk list, read once (no retries: the parent retries)."""
    connection = sibling.open()
    service = connection.system_service().service(path.strip("/"))
    items: list[Any] | None = None
    error = None
    try:
        items = PendingList(connection, service, path, query, take).collect()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which reads again
        error = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close(logout=False)   # the token is the parent's
    return _ListRead(items, error, connection.request_count, connection.bytes_received,
                     connection.failed_count)


def _collect_elsewhere(call: ForkedCall[_ListRead], connection: CountingConnection,
                       what: str) -> list[Any] | None:
    """The child's items, or None (logged) when it brought none."""
    try:
        outcome = call.result(timeout=connection.wait_limit + 10.0)
    except ForkedCallFailed as exc:
        error: str | None = str(exc)
    else:
        connection.add_counts(outcome.requests, outcome.received, outcome.failed)
        if outcome.items is not None:
            return outcome.items
        error = outcome.error
    _log.info("engine.read_elsewhere_failed", list=what, error=error,
              then="the list is read in this process")
    return None


def read_engine(connection: ovirtsdk4.Connection, desired: DesiredState | None = None, *,
                timing: Timing = DEFAULT_TIMING) -> EngineRead:
    """Read the fleet's engine facts in a constant number of requests (see the module doc)."""
    # One pause of the cyclic collector for the whole read: the facts made here outlive it.
    with collector_paused(freeze=True):
        return _read_engine(connection, desired, timing)


def _read_engine(connection: ovirtsdk4.Connection, desired: DesiredState | None,
                 timing: Timing) -> EngineRead:
    system = connection.system_service()
    url = getattr(connection, "url", None)
    counted = getattr(connection, "request_count", None)

    def call(what: str, fn: Callable[[], Any]) -> Any:
        return read(fn, what, timing=timing, url=url)

    raw_clusters = call("list clusters", lambda: system.clusters_service().list())
    clusters = tuple(sorted((cluster_fact(c) for c in raw_clusters), key=lambda c: c.name))
    by_id = {c.id: c for c in clusters}
    hsearch, vsearch = host_search(desired), vm_search(desired)

    hosts_service, vms_service = system.hosts_service(), system.vms_service()

    # The two large lists are parsed as they are received (bulk_read): hosts become facts element
    # by element (devices keep their VM's id for now), VMs small records. A forked child reads
    # the VMs when this process may fork (module doc); otherwise both are asked for at once,
    # so the engine prepares the VM list while the hosts are being read.
    shared_types: dict[tuple[str | None, ...], MdevType] = {}

    def host_item(element: Element) -> tuple[Host, str | None]:
        return (host_fact_from_element(element, by_id, _keep_id, shared_types),
                element.findtext("address"))

    def vm_item(element: Element) -> VmRead:
        return vm_read_from_element(element, by_id)

    host_query = {"follow": HOST_FOLLOW, "search": hsearch}

    def list_hosts() -> PendingList:
        return PendingList(connection, hosts_service, "/hosts", host_query, host_item)

    vm_query = {"follow": VM_FOLLOW, "search": vsearch}

    def list_vms() -> PendingList:
        return PendingList(connection, vms_service, "/vms", vm_query, vm_item)

    raw_vms: list[VmRead] | None
    if can_fork() and isinstance(connection, CountingConnection):
        # The VM list in the child: its records cost a third of what host facts cost to send.
        elsewhere = ForkedCall(_read_list_elsewhere, connection.sibling(), "/vms", vm_query,
                               vm_item)
        try:
            host_items = call("list hosts", list_hosts().collect)
        except BaseException:
            elsewhere.cancel()
            raise
        raw_vms = _collect_elsewhere(elsewhere, connection, "vms")
        if raw_vms is None:
            raw_vms = call("list vms", list_vms().collect)
    else:
        pending_hosts, pending_vms = list_hosts(), list_vms()
        host_items = call("list hosts", pending_hosts.collect)
        raw_vms = call("list vms", pending_vms.collect)

    host_ids: dict[str, str] = {}
    addresses: dict[str, str] = {}
    unnamed: list[Host] = []

    def take_hosts(items: list[tuple[Host, str | None]]) -> None:
        for host, address in items:
            if host.id in host_ids:
                continue
            host_ids[host.id] = host.name
            if address:
                addresses[host.name] = address
            unnamed.append(host)

    take_hosts(host_items)
    spec_vms = {v.name for v in desired.vms} if desired is not None else set()
    extra = outside_search(desired, host_ids.values(), {
        v.name: by_id[v.cluster_id].name for v in raw_vms
        if v.name in spec_vms and v.cluster_id in by_id})
    if extra != "":
        more = PendingList(connection, hosts_service, "/hosts",
                           {"follow": HOST_FOLLOW, "search": extra}, host_item)
        take_hosts(call("list more hosts", more.collect))
    host_names = _Names(host_ids,
                        lambda: call("name hosts", lambda: system.hosts_service().list()))
    vms = tuple(sorted((vm_from_read(v, host_names) for v in raw_vms), key=lambda v: v.name))
    vm_names = _Names({v.id: v.name for v in raw_vms},
                      lambda: call("name vms", lambda: system.vms_service().list()))
    del raw_vms
    hosts = tuple(sorted((_name_device_users(h, vm_names) for h in unnamed),
                         key=lambda h: h.name))
    sent = (getattr(connection, "request_count", 0) - counted) if counted is not None else 0
    return EngineRead(clusters, hosts, vms, addresses, sent)
