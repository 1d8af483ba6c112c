"""Routing of `/ovirt-engine/api/...` requests onto the engine model, with the engine's search,
follow, max and fault conventions. Request bodies are parsed with the SDK's own readers."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ovirtsdk4 import reader, readers, types  # noqa: F401 - importing readers registers them

from reconciler_lab import edits, links, represent, search
from reconciler_lab.engine import Host, LabEngine, Vm, name_from_hex
from reconciler_lab.errors import EngineFault, not_found
from reconciler_lab.render import Renderer, action_xml, fault_xml
from reconciler_lab.represent import API
from reconciler_lab.search import Field


@dataclass(frozen=True)
class Reply:
    status: int
    body: str | tuple[str, ...]     # a collection: its pieces in order, never joined when streamed


def _case_sensitive(query: dict[str, str]) -> bool:
    return query.get("case_sensitive", "true").lower() != "false"


def _listing(tag: str, items: Iterable[Any], fields: dict[str, search.Field],
             render_one: Callable[[Any, Any], str], query: dict[str, str],
             followable: frozenset[str] = frozenset()) -> Reply:
    """A collection GET: `search` (with sortby and page), `max` and `follow` as the engine
    applies them."""
    follow = _follow(query, followable)
    chosen = search.run(items, query.get("search"), fields,
                        case_sensitive=_case_sensitive(query), limit=_max(query))
    # The pieces, not joined: a 1,000-host list is ~60 MB, sent while it is compressed.
    return Reply(200, (f"<{tag}>", *(render_one(item, follow) for item in chosen), f"</{tag}>"))


def _follow(query: dict[str, str], followable: frozenset[str]) -> set[str]:
    """The rels to inline. The engine follows nested paths (`a.b`) and fails on links an entity
    does not have; the lab follows what it models and refuses the rest, never cutting a path
    short with a 200."""
    out: set[str] = set()
    for path in query.get("follow", "").split(","):
        if not path.strip():
            continue
        segments = [links.rel(s) for s in path.strip().split(".")]
        if segments[0] not in followable:
            raise EngineFault(400, f"[Cannot follow link '{path.strip()}'. The lab engine "
                                   f"follows only: {', '.join(sorted(followable)) or 'nothing'}"
                                   " here.]")
        if len(segments) > 1:
            raise EngineFault(400, f"[Cannot follow link '{path.strip()}'. The lab engine does "
                                   "not follow nested links.]")
        out.add(segments[0])
    return out


def _max(query: dict[str, str]) -> int | None:
    if "max" not in query:
        return None
    try:
        return max(0, int(query["max"]))
    except ValueError:
        raise EngineFault(400, f"Invalid value '{query['max']}' for max.") from None


def _read(body: bytes, expected: type) -> object:
    if not body.strip():
        raise EngineFault(400, "Request body is empty", reason="Incomplete parameters")
    try:
        obj = reader.Reader.read(body)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the client's bad input
        raise EngineFault(400, f"Failed to parse the request body: {exc}") from None
    if not isinstance(obj, expected):
        raise EngineFault(400, f"Expected a <{expected.__name__.lower()}> body")
    return obj


def _spec_params(obj: types.VmMediatedDevice) -> dict[str, str]:
    return {p.name: (p.value if p.value is not None else "")
            for p in (obj.spec_params or []) if p.name}


class LabApi:
    """Dispatches one API request (path relative to /ovirt-engine/api) under the engine lock."""

    def __init__(self, engine: LabEngine) -> None:
        self.engine = engine
        self.render = Renderer(engine)

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes,
               correlation_id: str | None = None) -> Reply:
        parts = [p for p in path.split("/") if p]
        is_action = False
        try:
            with self.engine.lock:
                self.engine.advance()
                is_action = self._is_action(method, parts)
                return self._route(method, parts, query, body, correlation_id)
        except EngineFault as fault:
            if fault.status == 404:
                # The engine answers an unknown entity or path with a bare 404 (no body).
                return Reply(404, "")
            if is_action:
                return Reply(fault.status, action_xml(
                    "failed", types.Fault(reason=fault.reason, detail=fault.detail)))
            return Reply(fault.status, fault_xml(fault.reason, fault.detail))

    @staticmethod
    def _is_action(method: str, parts: list[str]) -> bool:
        return (method == "POST" and len(parts) == 3 and parts[0] in ("hosts", "vms")
                and parts[2] not in ("hostdevices", "mediateddevices", "graphicsconsoles"))

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               cid: str | None) -> Reply:
        e, r = self.engine, self.render
        n = len(parts)
        if n == 0:
            self._only(method, "GET")
            return Reply(200, r.api_root(e.fleet.engine_version))
        kind = parts[0]
        if kind == "clusters":
            return self._clusters(method, parts, query)
        if kind == "datacenters":
            return self._data_centers(method, parts, query, body)
        if kind == "templates":
            return self._templates(method, parts, query)
        if kind == "hosts":
            return self._hosts(method, parts, query, body, cid)
        if kind == "vms":
            return self._vms(method, parts, query, body, cid)
        if kind == "events":
            self._only(method, "GET")
            if n == 1:
                return self._events(query)
            if n == 2:
                ev = next((x for x in e.events if str(x.index) == parts[1]), None)
                if ev is None:
                    raise not_found("event")
                return Reply(200, r.event(ev))
        raise not_found("resource")

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise EngineFault(405, f"Method {method} is not allowed here", reason="Not Allowed")

    def _empty(self, method: str, rels: dict[str, str], parts: list[str]) -> Reply:
        """An advertised sub-collection the lab models nothing in: the empty list the engine
        returns for an entity without any (an unknown rel, or an item in it, is 404)."""
        self._only(method, "GET")
        if len(parts) == 3 and parts[2] in rels:
            return Reply(200, f"<{rels[parts[2]]}/>")
        raise not_found("resource")

    # --- search fields the lab's collections share

    def _cluster_name(self, cluster_id: str) -> str:
        return self.engine.clusters[cluster_id].name

    def _dc(self, _obj: object) -> str:
        return represent.DATA_CENTER_NAME

    # --- clusters, the data center and the Blank template

    def _cluster_fields(self) -> dict[str, Field]:
        return {
            "name": Field(lambda c: c.name), "id": Field(lambda c: c.id),
            "description": Field(lambda c: ""), "comment": Field(lambda c: ""),
            "datacenter": Field(self._dc), "datacenter.name": Field(self._dc),
            "architecture": Field(lambda c: c.architecture),
        }

    def _clusters(self, method: str, parts: list[str], query: dict[str, str]) -> Reply:
        e, r = self.engine, self.render
        self._only(method, "GET")
        if len(parts) == 1:
            return _listing("clusters", e.clusters.values(), self._cluster_fields(),
                            lambda c, _f: r.cluster(c), query)
        cluster = e.cluster(parts[1])
        if len(parts) == 2:
            _follow(query, frozenset())
            return Reply(200, r.cluster(cluster))
        return self._empty(method, links.CLUSTER_LINKS, parts)

    def _data_centers(self, method: str, parts: list[str], query: dict[str, str],
                      body: bytes = b"") -> Reply:
        e, r = self.engine, self.render
        if len(parts) >= 3 and parts[1] == represent.DATA_CENTER_ID and parts[2] == "quotas":
            return self._quotas(method, parts, body)
        self._only(method, "GET")
        fields = {"name": Field(lambda d: represent.DATA_CENTER_NAME),
                  "id": Field(lambda d: represent.DATA_CENTER_ID),
                  "status": Field(lambda d: "up")}
        if len(parts) == 1:
            return _listing("data_centers", [None], fields, lambda _d, _f: r.data_center(),
                            query)
        if parts[1] != represent.DATA_CENTER_ID:
            raise not_found("data center")
        if len(parts) == 2:
            return Reply(200, r.data_center())
        if len(parts) == 3 and parts[2] == "clusters":
            return _listing("clusters", e.clusters.values(), self._cluster_fields(),
                            lambda c, _f: r.cluster(c), query)
        return self._empty(method, links.DATA_CENTER_LINKS, parts)

    def _quotas(self, method: str, parts: list[str], body: bytes) -> Reply:
        e, r = self.engine, self.render
        if len(parts) == 3:
            if method == "GET":
                return Reply(200, r.quotas(list(e.quotas.items.values())))
            self._only(method, "POST")
            wanted = _read(body, types.Quota)
            assert isinstance(wanted, types.Quota)
            return Reply(201, r.quota(e.quota_change(lambda q: q.add(wanted))))
        if len(parts) == 4:
            quota_id = parts[3]
            if method == "GET":
                return Reply(200, r.quota(e.quotas.get(quota_id)))
            if method == "PUT":
                wanted = _read(body, types.Quota)
                assert isinstance(wanted, types.Quota)
                return Reply(200, r.quota(e.quota_change(lambda q: q.update(quota_id, wanted))))
            self._only(method, "DELETE")
            e.quota_change(lambda q: q.remove(quota_id))
            return Reply(200, action_xml("complete"))
        raise not_found("resource")

    def _templates(self, method: str, parts: list[str], query: dict[str, str]) -> Reply:
        e, r = self.engine, self.render
        self._only(method, "GET")

        # Every lab VM was made from Blank, so `vm.name=X` finds Blank for any VM X.
        fields = {"name": Field(lambda t: "Blank"),
                  "id": Field(lambda t: represent.BLANK_TEMPLATE_ID),
                  "status": Field(lambda t: "ok"), "datacenter": Field(self._dc),
                  "vm.name": Field(lambda t: None, many=lambda t: [v.name for v in e.vms.values()])}
        if len(parts) == 1:
            return _listing("templates", [None], fields, lambda _t, _f: r.blank_template(), query)
        if parts[1] != represent.BLANK_TEMPLATE_ID:
            raise not_found("template")
        if len(parts) == 2:
            return Reply(200, r.blank_template())
        return self._empty(method, links.TEMPLATE_LINKS, parts)

    # --- hosts

    def _host_fields(self) -> dict[str, Field]:
        def cluster(h: Host) -> str:
            return self._cluster_name(h.cluster_id)
        return {
            "name": Field(lambda h: h.name), "id": Field(lambda h: h.id),
            "cluster": Field(cluster), "cluster.name": Field(cluster),
            "status": Field(lambda h: h.status), "comment": Field(lambda h: h.comment),
            "address": Field(lambda h: f"{h.name}.lab.example"),
            "datacenter": Field(self._dc), "datacenter.name": Field(self._dc),
            "vgpu_placement": Field(lambda h: h.vgpu_placement),
        }

    def _hosts(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               cid: str | None) -> Reply:
        e, r = self.engine, self.render
        n = len(parts)
        followable = frozenset({"devices"})
        if n == 1:
            self._only(method, "GET")
            return _listing("hosts", e.hosts.values(), self._host_fields(), r.host, query,
                            followable)
        host = e.host(parts[1])
        if n == 2:
            if method == "GET":
                return Reply(200, r.host(host, _follow(query, followable)))
            self._only(method, "PUT")
            upd = _read(body, types.Host)
            assert isinstance(upd, types.Host)
            edits.update_host(e, host, upd, r.host_obj(host), cid=cid)
            return Reply(200, r.host(host))
        if parts[2] == "devices":
            self._only(method, "GET")
            if n == 3:
                return Reply(200, r.host_devices(host))
            if n == 4:
                return Reply(200, r.host_device(host, e.device_by_hex(host.id, parts[3])))
        if n == 3 and method == "POST":
            action = _read(body or b"<action/>", types.Action)
            assert isinstance(action, types.Action)
            return self._host_action(host, parts[2], action, cid)
        return self._empty(method, links.HOST_LINKS, parts)

    def _host_action(self, host: Host, name: str, action: types.Action,
                     cid: str | None) -> Reply:
        e = self.engine
        if name == "deactivate":
            e.deactivate_host(host.id, reason=action.reason, cid=cid)
        elif name == "activate":
            e.activate_host(host.id, cid=cid)
        elif name == "install":
            e.install_host(host.id, reboot=action.reboot if action.reboot is not None else True,
                           activate=bool(action.activate), cid=cid)
        elif name == "refresh":
            edits.refresh_host(e, host, cid=cid)
        elif name == "upgrade":
            edits.upgrade_host(e, host)
        elif name == "upgradecheck":
            edits.upgrade_check(e, host, cid=cid)
        elif name == "fence":
            edits.fence_host(action)
        else:
            raise not_found("action")
        return Reply(200, action_xml("complete"))

    # --- VMs

    def _vm_fields(self) -> dict[str, Field]:
        e = self.engine

        def host_name(v: Vm) -> str | None:
            return e.hosts[v.host_id].name if v.host_id in e.hosts else None

        def cluster(v: Vm) -> str:
            return self._cluster_name(v.cluster_id)
        return {
            "name": Field(lambda v: v.name), "id": Field(lambda v: v.id),
            "cluster": Field(cluster), "cluster.name": Field(cluster),
            "host": Field(host_name), "host.name": Field(host_name),
            "status": Field(lambda v: v.status), "description": Field(lambda v: v.description),
            "comment": Field(lambda v: v.comment),
            "datacenter": Field(self._dc), "datacenter.name": Field(self._dc),
            "template": Field(lambda v: "Blank"), "template.name": Field(lambda v: "Blank"),
        }

    def _vms(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
             cid: str | None) -> Reply:
        e, r = self.engine, self.render
        n = len(parts)
        followable = frozenset({"hostdevices", "mediateddevices", "graphicsconsoles"})
        if n == 1:
            self._only(method, "GET")
            return _listing("vms", e.vms.values(), self._vm_fields(), r.vm, query, followable)
        vm = e.vm(parts[1])
        if n == 2:
            if method == "GET":
                return Reply(200, r.vm(vm, _follow(query, followable)))
            self._only(method, "PUT")
            upd = _read(body, types.Vm)
            assert isinstance(upd, types.Vm)
            edits.update_vm(e, vm, upd, r.vm_obj(vm), cid=cid)
            return Reply(200, r.vm(vm))
        sub = parts[2]
        if sub == "hostdevices":
            return self._vm_hostdevs(method, vm, parts, body, cid)
        if sub == "mediateddevices":
            return self._vm_mdevs(method, vm, parts, body, cid)
        if sub == "graphicsconsoles":
            return self._vm_consoles(method, vm, parts, body, cid)
        if n == 3 and method == "POST":
            _read(body or b"<action/>", types.Action)
            if sub == "start":
                e.start_vm(vm.id, cid=cid)
            elif sub == "stop":
                e.stop_vm(vm.id, cid=cid)
            elif sub == "shutdown":
                e.shutdown_vm(vm.id, cid=cid)
            else:
                raise not_found("action")
            return Reply(200, action_xml("complete"))
        return self._empty(method, links.VM_LINKS, parts)

    def _vm_hostdevs(self, method: str, vm: Vm, parts: list[str], body: bytes,
                     cid: str | None) -> Reply:
        e, r = self.engine, self.render
        if len(parts) == 3:
            if method == "GET":
                return Reply(200, r.vm_host_devices(vm))
            self._only(method, "POST")
            dev = _read(body, types.HostDevice)
            assert isinstance(dev, types.HostDevice)
            name = e.attach_host_device(vm.id, name=dev.name, dev_id=dev.id, cid=cid)
            return Reply(201, r.vm_host_device(vm, name))
        if len(parts) == 4:
            dev_name = name_from_hex(parts[3])
            if method == "GET":
                if dev_name is None or dev_name not in vm.host_devices:
                    raise not_found("host device")
                return Reply(200, r.vm_host_device(vm, dev_name))
            self._only(method, "DELETE")
            e.detach_host_device(vm.id, parts[3], cid=cid)
            return Reply(200, action_xml("complete"))
        raise not_found("resource")

    def _vm_mdevs(self, method: str, vm: Vm, parts: list[str], body: bytes,
                  cid: str | None) -> Reply:
        e, r = self.engine, self.render
        if len(parts) == 3:
            if method == "GET":
                return Reply(200, r.vm_mdevs(vm, root="vm_mediated_devices"))
            self._only(method, "POST")
            dev = _read(body, types.VmMediatedDevice)
            assert isinstance(dev, types.VmMediatedDevice)
            mdev_id = e.add_mdev(vm.id, _spec_params(dev), cid=cid)
            return Reply(201, r.vm_mdev(vm, mdev_id))
        if len(parts) == 4:
            mdev_id = parts[3]
            if method == "GET":
                if mdev_id not in vm.mdevs:
                    raise not_found("mediated device")
                return Reply(200, r.vm_mdev(vm, mdev_id))
            if method == "PUT":
                dev = _read(body, types.VmMediatedDevice)
                assert isinstance(dev, types.VmMediatedDevice)
                e.update_mdev(vm.id, mdev_id, _spec_params(dev), cid=cid)
                return Reply(200, r.vm_mdev(vm, mdev_id))
            self._only(method, "DELETE")
            e.remove_mdev(vm.id, mdev_id, cid=cid)
            return Reply(200, action_xml("complete"))
        raise not_found("resource")

    def _vm_consoles(self, method: str, vm: Vm, parts: list[str], body: bytes,
                     cid: str | None) -> Reply:
        e, r = self.engine, self.render
        if len(parts) == 3:
            if method == "GET":
                return Reply(200, r.vm_consoles(vm))
            self._only(method, "POST")
            con = _read(body, types.GraphicsConsole)
            assert isinstance(con, types.GraphicsConsole)
            protocol = e.add_console(vm.id, con.protocol.value if con.protocol else "", cid=cid)
            return Reply(201, r.vm_console(vm, protocol))
        if len(parts) == 4:
            found = name_from_hex(parts[3])
            if method == "GET":
                if found is None or found not in vm.consoles:
                    raise not_found("graphics console")
                return Reply(200, r.vm_console(vm, found))
            self._only(method, "DELETE")
            e.remove_console(vm.id, parts[3], cid=cid)
            return Reply(200, action_xml("complete"))
        raise not_found("resource")

    # --- events

    def _events(self, query: dict[str, str]) -> Reply:
        e, r = self.engine, self.render
        since = None
        if "from" in query:
            try:
                since = int(query["from"])
            except ValueError:
                raise EngineFault(400, f"Invalid value '{query['from']}' for from.") from None

        def host_name(ev: Any) -> str | None:
            return e.hosts[ev.host_id].name if ev.host_id in e.hosts else None

        def vm_name(ev: Any) -> str | None:
            return e.vms[ev.vm_id].name if ev.vm_id in e.vms else None

        def cluster_name(ev: Any) -> str | None:
            return e.clusters[ev.cluster_id].name if ev.cluster_id in e.clusters else None
        fields: dict[str, Field] = {
            "type": Field(lambda ev: ev.code, "number"),
            "severity": Field(lambda ev: ev.severity),
            "message": Field(lambda ev: ev.description),
            "time": Field(lambda ev: ev.time, "time"),
            "index": Field(lambda ev: ev.index, "number"),
            "event_host": Field(host_name), "host": Field(host_name),
            "host.name": Field(host_name),
            "event_vm": Field(vm_name), "vm": Field(vm_name), "vm.name": Field(vm_name),
            "cluster": Field(cluster_name), "cluster.name": Field(cluster_name),
            "event_cluster": Field(cluster_name),
            "datacenter": Field(self._dc), "event_datacenter": Field(self._dc),
            "correlation_id": Field(lambda ev: ev.correlation_id),
            "origin": Field(lambda ev: "oVirt"),
            "usrname": Field(lambda ev: e.user),
        }
        # from=N adds `audit_log_id > N`; the default order is newest first.
        newest_first = e.iter_events() if since is None else _until_index(e.iter_events(), since)
        chosen = search.run(newest_first, query.get("search"), fields,
                            case_sensitive=_case_sensitive(query), limit=_max(query))
        return Reply(200, "<events>" + "".join(r.event(ev) for ev in chosen) + "</events>")


def _until_index(events: Iterable[Any], since: int) -> Iterable[Any]:
    for ev in events:
        if ev.index <= since:
            return
        yield ev


__all__ = ["API", "LabApi", "Reply"]
