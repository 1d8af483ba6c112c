"""Routing of `/ovirt-engine/api/...` requests onto the engine model, with the engine's search,
follow, max and fault conventions. Request bodies are parsed with the SDK's own readers."""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ovirtsdk4 import reader, readers, types  # noqa: F401 - importing readers registers them

from reconciler_lab.engine import EngineFault, Host, LabEngine, Vm, name_from_hex, not_found
from reconciler_lab.render import API, Renderer, action_xml, fault_xml


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


_SEARCH_TERM = re.compile(r'\s*([A-Za-z_.]+)\s*(!=|=)\s*("[^"]*"|\S+)\s*')


def parse_search(text: str) -> list[list[tuple[str, str, str]]]:
    """The Admin Portal query language, as far as we use it: `a=b and c!=d or e=f*`."""
    groups: list[list[tuple[str, str, str]]] = []
    for alternative in re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE):
        terms: list[tuple[str, str, str]] = []
        for part in re.split(r"\s+and\s+", alternative.strip(), flags=re.IGNORECASE):
            if not part.strip() or part.strip().lower().startswith("sortby"):
                continue
            m = _SEARCH_TERM.fullmatch(part)
            if not m:
                raise EngineFault(400, f"Search query failed: cannot parse {part!r}",
                                  reason="Operation Failed")
            terms.append((m.group(1).lower(), m.group(2), m.group(3).strip('"')))
        groups.append(terms)
    return groups


def _matches(value: str | None, pattern: str, case_sensitive: bool) -> bool:
    value = value or ""
    if not case_sensitive:
        value, pattern = value.lower(), pattern.lower()
    return fnmatch.fnmatchcase(value, pattern)


def search_filter(query: str | None, fields: dict[str, Callable[[object], str | None]],
                  case_sensitive: bool) -> Callable[[object], bool]:
    if not query:
        return lambda _obj: True
    groups = parse_search(query)
    for terms in groups:
        for name, _, _ in terms:
            if name not in fields:
                raise EngineFault(400, f"Search query failed: unknown field {name!r}")

    def check(obj: object) -> bool:
        for terms in groups:
            if all(_matches(fields[n](obj), v, case_sensitive) == (op == "=")
                   for n, op, v in terms):
                return True
        return False
    return check



def _search(query: dict[str, str], fields: dict[str, Callable[[object], str | None]]
            ) -> Callable[[object], bool]:
    """The collection's `search=` filter, honouring `case_sensitive=false`."""
    return search_filter(query.get("search"), fields,
                         query.get("case_sensitive", "true").lower() != "false")


def _listing(tag: str, items: Iterable[Any], fields: dict[str, Callable[[object], str | None]],
             render_one: Callable[[Any, Any], str], query: dict[str, str]) -> Reply:
    """A collection GET: `search`, `max` and `follow` as the engine applies them."""
    check = _search(query, fields)
    follow = _follow(query)
    chosen = _limit((item for item in items if check(item)), _max(query))
    return Reply(200, f"<{tag}>" + "".join(render_one(item, follow) for item in chosen)
                 + f"</{tag}>")


def _follow(query: dict[str, str]) -> set[str]:
    # The engine matches link rels with underscores removed: host_devices == hostdevices.
    return {p.split(".")[0].replace("_", "").strip().lower()
            for p in query.get("follow", "").split(",") if p.strip()}


def _max(query: dict[str, str]) -> int | None:
    if "max" not in query:
        return None
    try:
        return max(0, int(query["max"]))
    except ValueError:
        raise EngineFault(400, f"Invalid value '{query['max']}' for max.") from None


T = TypeVar("T")


def _limit(items: Iterable[T], limit: int | None) -> list[T]:
    out: list[T] = []
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        out.append(item)
    return out


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
            self._only(method, "GET")
            if n == 1:
                limit = _max(query)
                return Reply(200, "<clusters>" + "".join(
                    r.cluster(c) for c in _limit(e.clusters.values(), limit)) + "</clusters>")
            if n == 2:
                return Reply(200, r.cluster(e.cluster(parts[1])))
        elif kind == "hosts":
            return self._hosts(method, parts, query, body, cid)
        elif kind == "vms":
            return self._vms(method, parts, query, body, cid)
        elif kind == "events":
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

    # --- hosts

    def _host_fields(self) -> dict[str, Callable[[object], str | None]]:
        e = self.engine
        return {
            "name": lambda h: h.name,  # type: ignore[attr-defined]
            "cluster": lambda h: e.clusters[h.cluster_id].name,  # type: ignore[attr-defined]
            "status": lambda h: h.status,  # type: ignore[attr-defined]
            "id": lambda h: h.id,  # type: ignore[attr-defined]
        }

    def _hosts(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               cid: str | None) -> Reply:
        e, r = self.engine, self.render
        n = len(parts)
        if n == 1:
            self._only(method, "GET")
            return _listing("hosts", e.hosts.values(), self._host_fields(), r.host, query)
        host = e.host(parts[1])
        if n == 2:
            if method == "GET":
                return Reply(200, r.host(host, _follow(query)))
            self._only(method, "PUT")
            upd = _read(body, types.Host)
            assert isinstance(upd, types.Host)
            e.update_host(
                host.id,
                custom_kernel_cmdline=upd.os.custom_kernel_cmdline if upd.os else None,
                vgpu_placement=upd.vgpu_placement.value if upd.vgpu_placement else None, cid=cid)
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
        raise not_found("resource")

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
        else:
            raise not_found("action")
        return Reply(200, action_xml("complete"))

    # --- VMs

    def _vm_fields(self) -> dict[str, Callable[[object], str | None]]:
        e = self.engine

        def host_name(v: Vm) -> str | None:
            return e.hosts[v.host_id].name if v.host_id in e.hosts else None
        return {
            "name": lambda v: v.name,  # type: ignore[attr-defined]
            "cluster": lambda v: e.clusters[v.cluster_id].name,  # type: ignore[attr-defined]
            "host": host_name,  # type: ignore[dict-item]
            "status": lambda v: v.status,  # type: ignore[attr-defined]
            "id": lambda v: v.id,  # type: ignore[attr-defined]
        }

    def _vms(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
             cid: str | None) -> Reply:
        e, r = self.engine, self.render
        n = len(parts)
        if n == 1:
            self._only(method, "GET")
            return _listing("vms", e.vms.values(), self._vm_fields(), r.vm, query)
        vm = e.vm(parts[1])
        if n == 2:
            if method == "GET":
                return Reply(200, r.vm(vm, _follow(query)))
            self._only(method, "PUT")
            upd = _read(body, types.Vm)
            assert isinstance(upd, types.Vm)
            pinned = None
            affinity = None
            pp = upd.placement_policy
            if pp is not None:
                if pp.hosts is not None:
                    pinned = [h.id or h.name for h in pp.hosts if h.id or h.name]
                if pp.affinity is not None:
                    affinity = pp.affinity.value
            display = upd.display.type.value if upd.display and upd.display.type else None
            e.update_vm(vm.id, pinned_hosts=pinned, affinity=affinity, display_type=display,
                        cid=cid)
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
        raise not_found("resource")

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

        def host_name(ev: object) -> str | None:
            hid = ev.host_id  # type: ignore[attr-defined]
            return e.hosts[hid].name if hid in e.hosts else None

        def vm_name(ev: object) -> str | None:
            vid = ev.vm_id  # type: ignore[attr-defined]
            return e.vms[vid].name if vid in e.vms else None
        fields: dict[str, Callable[[object], str | None]] = {
            "type": lambda ev: str(ev.code),  # type: ignore[attr-defined]
            "severity": lambda ev: ev.severity,  # type: ignore[attr-defined]
            "message": lambda ev: ev.description,  # type: ignore[attr-defined]
            "event_host": host_name, "host": host_name, "host.name": host_name,
            "event_vm": vm_name, "vm": vm_name, "vm.name": vm_name,
            "correlation_id": lambda ev: ev.correlation_id,  # type: ignore[attr-defined]
            "origin": lambda ev: "oVirt",
        }
        check = _search(query, fields)
        limit = _max(query)
        out: list[str] = []
        for ev in e.iter_events():          # newest first, as the engine sorts
            if since is not None and ev.index <= since:
                break
            if not check(ev):
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(r.event(ev))
        return Reply(200, "<events>" + "".join(out) + "</events>")


__all__ = ["API", "LabApi", "Reply", "parse_search"]
