"""Engine objects as the REST API's XML, written by the SDK's own writers.

The writers emit no `<link rel>` or `<actions>`, so those are spliced in before the closing tag.
Serialised fragments are cached per object and reused until the object's revision changes, which
keeps listing 10,000 VMs cheap. Callers hold the engine lock.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import quoteattr

from ovirtsdk4 import types, writer, writers  # noqa: F401 - importing writers registers them

from reconciler_lab import represent
from reconciler_lab.engine import Cluster, Event, Host, LabEngine, Vm, hex_id
from reconciler_lab.records import LabDevice
from reconciler_lab.links import (API_LINKS, CLUSTER_LINKS, DATA_CENTER_LINKS, HOST_ACTIONS,
                                  HOST_LINKS, TEMPLATE_LINKS, VM_ACTIONS, VM_LINKS, links_xml)
from reconciler_lab.represent import API
from reconciler_lab.xmlform import Piece, engine_dates, engine_order, split

_FIRST_CHILD = re.compile(r"^<[a-z_]+(?: [^>]*)?>")


def _href(obj: object, href: str) -> object:
    obj.href = href  # type: ignore[attr-defined]
    return obj


def _links(base: str, rels: Iterable[str], actions: tuple[str, ...] = ()) -> str:
    return links_xml(base, tuple(rels), actions)


def _entity(obj: types.Struct, tag: str, extra: str = "", shared: list[Piece] = ()) -> str:  # type: ignore[assignment]
    """An entity written by the SDK, with `extra` (links, inline collections) in it and the
    `shared` members written once for many, in the engine's element order and date form."""
    return engine_order(engine_dates(_splice(writer.Writer.write(obj), tag, extra)), tag,
                        shared)


def _device_form(xml: str, mdev_block: str) -> str:
    """A host device in the engine's order without re-parsing it (there are tens of thousands):
    the SDK writes `name` after capability/driver/iommu_group, the engine first; `m_dev_types`
    belongs after `iommu_group` (or whatever of driver/capability comes last before it)."""
    head = _FIRST_CHILD.match(xml)
    start = xml.find("<name>")
    if head is not None and start > 0:
        end = xml.index("</name>", start) + len("</name>")
        name = xml[start:end]
        xml = xml[:head.end()] + name + xml[head.end():start] + xml[end:]
    if mdev_block:
        for anchor in ("</iommu_group>", "</driver>", "</capability>", "</name>"):
            at = xml.find(anchor)
            if at >= 0:
                at += len(anchor)
                xml = xml[:at] + mdev_block + xml[at:]
                break
    return xml


def _splice(xml: str, tag: str, extra: str) -> str:
    close = f"</{tag}>"
    if xml.endswith(close):
        return xml[: -len(close)] + extra + close
    if xml.endswith("/>"):   # an empty element: open it up
        return xml[:-2] + ">" + extra + close
    raise ValueError(f"unexpected XML for {tag}")


def _pci_id(value: str | None) -> str | None:
    if value is None:
        return None
    return value if value.startswith("0x") else "0x" + value


def fault_xml(reason: str, detail: str) -> str:
    # The generated schema sorts Fault's members: <detail> comes before <reason> on the engine too.
    return writer.Writer.write(types.Fault(reason=reason, detail=detail))


def action_xml(status: str = "complete", fault: types.Fault | None = None) -> str:
    return writer.Writer.write(types.Action(status=status, fault=fault))


class Renderer:
    def __init__(self, engine: LabEngine) -> None:
        self.engine = engine
        self._cache: dict[tuple[str, ...], tuple[object, str]] = {}
        self._mdev_blocks: dict[tuple[object, ...], str] = {}
        self._device_objs: dict[tuple[str, str], tuple[LabDevice, types.HostDevice]] = {}
        self._vm_counts: tuple[int, dict[str | None, tuple[int, int, int]]] = (-1, {})
        self._vm_shared: dict[tuple[str, bool], list[Piece]] = {}

    def _cached(self, key: tuple[str, ...], rev: object, make: Callable[[], str]) -> str:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == rev:
            return hit[1]
        text = make()
        self._cache[key] = (rev, text)
        return text

    def warm(self, stop: threading.Event) -> None:
        """Serialise every host (with devices) and VM (with its devices and consoles) ahead of the
        first list.

        Runs in a background thread after start, taking the engine lock one object at a time so
        requests interleave; a 1,000-host fleet's first `hosts?follow=devices` is then served
        from the cache instead of writing 40,000 devices while the client waits.
        """
        e = self.engine
        with e.lock:
            host_ids, vm_ids = list(e.hosts), list(e.vms)
        for hid in host_ids:
            if stop.is_set():
                return
            with e.lock:
                if hid in e.hosts:
                    self.host(e.hosts[hid], {"devices"})
        for vid in vm_ids:
            if stop.is_set():
                return
            with e.lock:
                if vid in e.vms:
                    self.vm(e.vms[vid], {"hostdevices", "mediateddevices", "graphicsconsoles"})

    def _summary(self, host_id: str | None) -> tuple[int, int, int]:
        """(active, migrating, total) VMs on a host, counted once per engine revision."""
        rev = self.engine.revision
        if self._vm_counts[0] != rev:
            active: Counter[str | None] = Counter()
            migrating: Counter[str | None] = Counter()
            for v in self.engine.vms.values():
                if v.host_id is not None:
                    active[v.host_id] += 1
                    active[None] += v.status == "up"
                    migrating[v.host_id] += v.status == "migrating"
            counts: dict[str | None, tuple[int, int, int]] = {
                h: (n, migrating[h], n) for h, n in active.items() if h is not None}
            counts[None] = (active[None], 0, len(self.engine.vms))
            self._vm_counts = (rev, counts)
        return self._vm_counts[1].get(host_id, (0, 0, 0))

    # --- clusters and the data center

    def cluster(self, c: Cluster) -> str:
        return self._cached(("cluster", c.id), (c.name, c.version), lambda: self._cluster(c))

    def cluster_obj(self, c: Cluster) -> types.Cluster:
        obj = types.Cluster(id=c.id, name=c.name, version=represent.cluster_version(c.version))
        if c.cpu_type:
            obj.cpu = types.Cpu(type=c.cpu_type, architecture=types.Architecture(c.architecture))
        represent.cluster_extras(obj, c.id)
        _href(obj, f"{API}/clusters/{c.id}")
        return obj

    def _cluster(self, c: Cluster) -> str:
        return _entity(self.cluster_obj(c), "cluster",
                       _links(f"{API}/clusters/{c.id}", CLUSTER_LINKS))

    def data_center(self) -> str:
        versions = sorted({c.version for c in self.engine.clusters.values()},
                          key=lambda v: [int(x) for x in v.split(".")])
        newest = versions[-1] if versions else "4.7"
        obj = represent.data_center(represent.cluster_version(newest),
                                    [represent.cluster_version(v) for v in versions])
        return _entity(obj, "data_center",
                       _links(f"{API}/datacenters/{represent.DATA_CENTER_ID}", DATA_CENTER_LINKS))

    def quota_obj(self, quota: Any) -> types.Quota:
        dc = f"{API}/datacenters/{represent.DATA_CENTER_ID}"
        obj = types.Quota(id=quota.id, name=quota.name, description=quota.description,
                          data_center=types.DataCenter(id=represent.DATA_CENTER_ID))
        obj.data_center.href = dc
        obj.href = f"{dc}/quotas/{quota.id}"
        return obj

    def quota(self, quota: Any) -> str:
        return _entity(self.quota_obj(quota), "quota")

    def quotas(self, quotas: list[Any]) -> str:
        return writer.Writer.write([self.quota_obj(q) for q in quotas], root="quotas")

    def blank_template(self) -> str:
        obj = represent.blank_template(represent.cluster_version("4.7"))
        return _entity(obj, "template",
                       _links(f"{API}/templates/{represent.BLANK_TEMPLATE_ID}", TEMPLATE_LINKS))

    # --- hosts

    def host(self, h: Host, follow: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        xml = self._cached(("host", h.id), (h.rev, self._summary(h.id)), lambda: self._host(h))
        if "devices" in follow:
            # `devices` sorts right after `cluster`, the last member the lab writes.
            xml = _splice(xml, "host", self.host_devices(h, root="devices"))
        return xml

    def host_obj(self, h: Host) -> types.Host:
        e = self.engine
        obj = types.Host(
            id=h.id, name=h.name, comment=h.comment,
            status=types.HostStatus(h.status), status_detail=h.status_detail,
            cluster=_href(types.Cluster(id=h.cluster_id), f"{API}/clusters/{h.cluster_id}"),
            cpu=types.Cpu(type=h.cpu_type, name=h.cpu_name),
            os=types.OperatingSystem(type="RHEL", custom_kernel_cmdline=h.custom_kernel_cmdline,
                                     reported_kernel_cmdline=e.reported_cmdline(h)),
            device_passthrough=types.HostDevicePassthrough(enabled=e.passthrough_enabled(h)),
            vgpu_placement=types.VgpuPlacement(h.vgpu_placement),
            reinstallation_required=h.reinstallation_required,
            type=types.HostType.RHEL)
        active, migrating, total = self._summary(h.id)
        represent.host_extras(obj, address=f"{h.name}.lab.example", active_vms=active,
                              migrating_vms=migrating, total_vms=total)
        _href(obj, f"{API}/hosts/{h.id}")
        return obj

    def _host(self, h: Host) -> str:
        return _entity(self.host_obj(h), "host",
                       _links(f"{API}/hosts/{h.id}", HOST_LINKS, HOST_ACTIONS))

    def host_devices(self, h: Host, root: str = "host_devices") -> str:
        body = self._cached(("hostdevs", h.id), h.dev_rev, lambda: self._host_devices(h))
        return f"<{root}>{body}</{root}>"

    def _host_devices(self, h: Host) -> str:
        devices = self.engine.devices(h.id)
        return "".join(self._device(h, d) for d in devices.values())

    def host_device(self, h: Host, d: LabDevice) -> str:
        return self._device(h, d)

    def _device_obj(self, host_id: str, d: LabDevice) -> types.HostDevice:
        obj = types.HostDevice(
            id=hex_id(d.name), name=d.name, capability=d.capability, iommu_group=d.iommu_group,
            driver=d.driver, virtual_functions=d.virtual_functions,
            host=_href(types.Host(id=host_id), f"{API}/hosts/{host_id}"))
        if d.product_id or d.product_name:
            obj.product = types.Product(id=_pci_id(d.product_id), name=d.product_name)
        if d.vendor_id or d.vendor_name:
            obj.vendor = types.Vendor(id=_pci_id(d.vendor_id), name=d.vendor_name)
        if d.parent:
            obj.parent_device = _href(types.HostDevice(id=hex_id(d.parent), name=d.parent),
                                      f"{API}/hosts/{host_id}/devices/{hex_id(d.parent)}")
        if d.physical_function:
            obj.physical_function = _href(
                types.HostDevice(id=hex_id(d.physical_function), name=d.physical_function),
                f"{API}/hosts/{host_id}/devices/{hex_id(d.physical_function)}")
        _href(obj, f"{API}/hosts/{host_id}/devices/{hex_id(d.name)}")
        return obj

    def _mdev_types(self, host_id: str, d: LabDevice) -> str:
        """The <m_dev_types> block. Thousands of GPUs of one model share the same block for the
        same availability, so it is written once per distinct (types, availability) pair."""
        avail = tuple(self.engine.available_instances(host_id, d, t.name) for t in d.mdev_types)
        key = (d.mdev_types, avail)
        text = self._mdev_blocks.get(key)
        if text is None:
            text = writer.Writer.write(
                [types.MDevType(name=t.name, human_readable_name=t.human_readable_name,
                                available_instances=n, description=t.description)
                 for t, n in zip(d.mdev_types, avail)], root="m_dev_types")
            self._mdev_blocks[key] = text
        return text

    def _write_device(self, host_id: str, d: LabDevice, obj: types.HostDevice) -> str:
        mdevs = self._mdev_types(host_id, d) if d.mdev_types else ""
        return _device_form(writer.Writer.write(obj), mdevs)

    def _device(self, h: Host, d: LabDevice) -> str:
        # The SDK object of a device is built once and reused (its construction costs as much as
        # writing it); only the `vm` reference changes between renders. Callers hold the lock.
        hit = self._device_objs.get((h.id, d.name))
        if hit is None or hit[0] is not d:
            hit = (d, self._device_obj(h.id, d))
            self._device_objs[(h.id, d.name)] = hit
        obj = hit[1]
        user = self.engine.device_user(h.id, d.name)
        obj.vm = _href(types.Vm(id=user), f"{API}/vms/{user}") if user else None
        return self._write_device(h.id, d, obj)

    # --- VMs

    def vm(self, v: Vm, follow: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        xml = self._cached(("vm", v.id), v.rev, lambda: self._vm(v))
        if not follow & {"hostdevices", "mediateddevices", "graphicsconsoles"}:
            return xml
        # Inline collections go where the engine sorts them among the VM's links:
        # graphics_consoles < host < host_devices < mediated_devices < original_template.
        at = xml.rfind("<original_template")
        consoles = self.vm_consoles(v) if "graphicsconsoles" in follow else ""
        devices = ((self.vm_host_devices(v) if "hostdevices" in follow else "")
                   + (self.vm_mdevs(v) if "mediateddevices" in follow else ""))
        if v.host_id and consoles:
            host_at = xml.rfind("<host ", 0, at)
            return xml[:host_at] + consoles + xml[host_at:at] + devices + xml[at:]
        return xml[:at] + consoles + devices + xml[at:]

    def vm_obj(self, v: Vm, extras: bool = True) -> types.Vm:
        """The VM as the engine returns it; without `extras`, only what differs between VMs."""
        cluster = self.engine.clusters[v.cluster_id]
        obj = types.Vm(
            id=v.id, name=v.name, status=types.VmStatus(v.status),
            description=v.description, comment=v.comment,
            cluster=_href(types.Cluster(id=v.cluster_id), f"{API}/clusters/{v.cluster_id}"),
            placement_policy=types.VmPlacementPolicy(
                affinity=types.VmAffinity(v.affinity),
                hosts=[_href(types.Host(id=hid), f"{API}/hosts/{hid}")
                       for hid in v.pinned_host_ids] or None),
            display=types.Display(
                type=types.DisplayType(v.display_type), allow_override=False,
                copy_paste_enabled=True, disconnect_action="LOCK_SCREEN",
                file_transfer_enabled=True, monitors=1, single_qxl_pci=False,
                smartcard_enabled=False))
        if extras:
            represent.vm_extras(obj, running=v.status != "down",
                                architecture=cluster.architecture)
        if v.custom_properties:
            obj.custom_properties = [types.CustomProperty(name=k, value=val)
                                     for k, val in v.custom_properties.items()]
        if v.host_id:
            obj.host = _href(types.Host(id=v.host_id), f"{API}/hosts/{v.host_id}")
        _href(obj, f"{API}/vms/{v.id}")
        return obj

    def _vm(self, v: Vm) -> str:
        # The members every VM shares are written once per kind of VM, not once per VM.
        running = v.status != "down"
        architecture = self.engine.clusters[v.cluster_id].architecture
        key = (architecture, running)
        shared = self._vm_shared.get(key)
        if shared is None:
            blank = types.Vm()
            represent.vm_extras(blank, running=running, architecture=architecture)
            shared = split(engine_dates(writer.Writer.write(blank)))[1]
            self._vm_shared[key] = shared
        return _entity(self.vm_obj(v, extras=False), "vm",
                       _links(f"{API}/vms/{v.id}", VM_LINKS, VM_ACTIONS), shared)

    def vm_host_devices(self, v: Vm) -> str:
        return self._cached(("vmhostdevs", v.id), v.rev, lambda: self._vm_host_devices(v))

    def _vm_host_devices(self, v: Vm) -> str:
        parts = [self.vm_host_device(v, name) for name in v.host_devices]
        return "<host_devices>" + "".join(parts) + "</host_devices>"

    def vm_host_device(self, v: Vm, name: str) -> str:
        host_id = v.hostdev_host_id or ""
        d = self.engine.devices(host_id).get(name) if host_id in self.engine.hosts else None
        if d is None:
            d = LabDevice(name=name)
        obj = self._device_obj(host_id, d)
        obj.placeholder = v.host_devices.get(name, False)
        obj.vm = _href(types.Vm(id=v.id), f"{API}/vms/{v.id}")
        return self._write_device(host_id, d, obj)

    def _mdev_obj(self, v: Vm, mdev_id: str) -> types.VmMediatedDevice:
        params = v.mdevs[mdev_id]
        obj = types.VmMediatedDevice(
            id=mdev_id, spec_params=[types.Property(name=k, value=val) for k, val in params.items()],
            vm=_href(types.Vm(id=v.id), f"{API}/vms/{v.id}"))
        return _href(obj, f"{API}/vms/{v.id}/mediateddevices/{mdev_id}")  # type: ignore[return-value]

    def vm_mdev(self, v: Vm, mdev_id: str) -> str:
        # Device's links (vm) come before VmMediatedDevice's spec_params on the engine.
        return engine_order(writer.Writer.write(self._mdev_obj(v, mdev_id)), "vm_mediated_device")

    def vm_mdevs(self, v: Vm, root: str = "mediated_devices") -> str:
        """Inline in a VM the element is <mediated_devices>; the collection is <vm_mediated_devices>."""
        body = self._cached(("vmmdevs", v.id), v.rev, lambda: "".join(
            self.vm_mdev(v, m) for m in v.mdevs))
        return f"<{root}>{body}</{root}>"

    def _console_obj(self, v: Vm, protocol: str) -> types.GraphicsConsole:
        cid = hex_id(protocol)
        obj = types.GraphicsConsole(id=cid, protocol=types.GraphicsType(protocol),
                                    vm=_href(types.Vm(id=v.id), f"{API}/vms/{v.id}"))
        return _href(obj, f"{API}/vms/{v.id}/graphicsconsoles/{cid}")  # type: ignore[return-value]

    def vm_console(self, v: Vm, protocol: str) -> str:
        return writer.Writer.write(self._console_obj(v, protocol))

    def vm_consoles(self, v: Vm) -> str:
        # Cached like the VM's other collections (a console change touches the VM): written anew
        # for each of 10,000 VMs, they were most of what listing VMs with consoles cost.
        return self._cached(("vmconsoles", v.id), v.rev, lambda: writer.Writer.write(
            [self._console_obj(v, p) for p in v.consoles], root="graphics_consoles"))

    # --- events and root

    def event(self, ev: Event) -> str:
        obj = types.Event(
            id=str(ev.index), index=ev.index, code=ev.code,
            severity=types.LogSeverity(ev.severity), description=ev.description,
            time=dt.datetime.fromtimestamp(ev.time, tz=dt.timezone.utc), origin="oVirt",
            correlation_id=ev.correlation_id, custom_id=-1, flood_rate=30, log_on_host=False)
        if ev.host_id:
            obj.host = _href(types.Host(id=ev.host_id), f"{API}/hosts/{ev.host_id}")
        if ev.vm_id:
            obj.vm = _href(types.Vm(id=ev.vm_id), f"{API}/vms/{ev.vm_id}")
        if ev.cluster_id:
            obj.cluster = _href(types.Cluster(id=ev.cluster_id), f"{API}/clusters/{ev.cluster_id}")
        _href(obj, f"{API}/events/{ev.index}")
        return _entity(obj, "event")

    def api_root(self, version: str) -> str:
        nums = [int(x) if x.isdigit() else 0 for x in (version.split(".") + ["0", "0", "0"])[:4]]
        active, _, total = self._summary(None)
        hosts = self.engine.hosts.values()
        obj = types.Api(
            product_info=types.ProductInfo(
                name="oVirt Engine", vendor="ovirt.org",
                instance_id=self.engine.instance_id,
                version=types.Version(major=nums[0], minor=nums[1], build=nums[2],
                                      revision=nums[3], full_version=f"{version}-1.el9")),
            special_objects=types.SpecialObjects(blank_template=_href(
                types.Template(id=represent.BLANK_TEMPLATE_ID),
                f"{API}/templates/{represent.BLANK_TEMPLATE_ID}")),
            time=dt.datetime.now(tz=dt.timezone.utc),
            summary=types.ApiSummary(
                hosts=types.ApiSummaryItem(total=len(hosts),
                                           active=sum(1 for h in hosts if h.status == "up")),
                storage_domains=types.ApiSummaryItem(total=0, active=0),
                users=types.ApiSummaryItem(total=1, active=1),
                vms=types.ApiSummaryItem(total=total, active=active)))
        extra = "".join(f"<link href={quoteattr(API + '/' + r)} rel={quoteattr(r)}/>"
                        for r in API_LINKS)
        return _entity(obj, "api", extra)
