"""Re-observing one object after a step and checking the step's verifications against it.

An operation that returns is not proof that the fleet changed (peers report "applied
successfully" while nothing did), so after every step the executor reads the target again — the
engine's view of that one host or VM, plus a fresh probe of the host when it has a transport —
and evaluates the action's `Verification`s on those facts. A verification that does not hold
within the deadline fails the step.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ovirtsdk4  # type: ignore[import-untyped]

from reconciler.apply.waiting import Backoff, wait_until
from reconciler.engine.retry import DEFAULT_TIMING, Timing, read
from reconciler.errors import ApplyError
from reconciler.observe.engine import HOST_FOLLOW, VM_FOLLOW, host_fact, vm_fact
from reconciler.model.facts import Cluster, Host, ModprobeFile, Observed, ProbeFacts, Vm
from reconciler.model.ownership import owned_kernel_args
from reconciler.observe.probe import probe_host
from reconciler.access.transport import Transport
from reconciler.plan.fingerprint import sha256_text
from reconciler.plan.actions import Verification

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_SELECTOR = re.compile(r"^(?P<field>[A-Za-z_]+)\[(?P<sel>[^\]]+)\]$")
_FILE_CHECK = re.compile(r"probe\.modprobe_files\[(/etc/modprobe\.d/[^\]]+)\]\.sha256")
_ITEM_KEYS = ("name", "id", "path", "address", "protocol", "mdev_type", "host")


class VerificationFailed(ApplyError):
    """A step returned but re-observing its target shows the change did not take effect."""

    def __init__(self, message: str, failed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failed = tuple(failed)


@dataclass(frozen=True)
class ObjectView:
    """What one re-observation of a target saw: the engine fact and, for a host, its probe."""

    key: str
    host: Host | None = None
    vm: Vm | None = None
    probe: ProbeFacts | None = None

    @property
    def exists(self) -> bool:
        return self.host is not None or self.vm is not None


class ObjectReader:
    """Reads one host or VM by name (one request each) and probes one host.

    Built from a full observation, whose clusters and id->name maps turn the SDK objects into the
    same facts the planner saw.
    """

    def __init__(self, connection: ovirtsdk4.Connection, observed: Observed,
                 transports: Mapping[str, Transport], probe_timeout: float = 60.0,
                 timing: Timing = DEFAULT_TIMING) -> None:
        self.connection = connection
        self.timing = timing
        self.transports = transports
        self.probe_timeout = probe_timeout
        self._clusters: dict[str, Cluster] = {c.id: c for c in observed.clusters}
        self._host_names = {h.id: h.name for h in observed.hosts}
        self._vm_names = {v.id: v.name for v in observed.vms}

    def with_connection(self, connection: ovirtsdk4.Connection) -> ObjectReader:
        """The same reader over another connection (an SDK connection serves one thread)."""
        other = object.__new__(ObjectReader)
        other.__dict__.update(self.__dict__)
        other.connection = connection
        return other

    def _list(self, kind: str, name: str) -> list[Any]:
        if not _SAFE_NAME.fullmatch(name):
            raise ApplyError(f"invalid {kind} name {name!r}")
        system = self.connection.system_service()
        if kind == "host":
            return read(lambda: system.hosts_service().list(
                search=f"name={name}", follow=HOST_FOLLOW), f"read host {name}",
                timing=self.timing)
        return read(lambda: system.vms_service().list(
            search=f"name={name}", follow=VM_FOLLOW), f"read vm {name}", timing=self.timing)

    def host(self, name: str) -> Host | None:
        found = [h for h in self._list("host", name) if h.name == name]
        if not found:
            return None
        return host_fact(found[0], self._clusters, self._vm_names.get)

    def vm(self, name: str) -> Vm | None:
        found = [v for v in self._list("vm", name) if v.name == name]
        if not found:
            return None
        return vm_fact(found[0], self._clusters, self._host_names.get)

    def cluster_hosts(self, cluster: str) -> list[Host]:
        """Every host of one cluster, statuses fresh (one request, no devices)."""
        if not _SAFE_NAME.fullmatch(cluster):
            raise ApplyError(f"invalid cluster name {cluster!r}")
        system = self.connection.system_service()
        raw = read(lambda: system.hosts_service().list(search=f"cluster={cluster}"),
                   f"list hosts of cluster {cluster}", timing=self.timing)
        hosts = [host_fact(h, self._clusters, self._vm_names.get) for h in raw]
        return [h for h in hosts if h.cluster == cluster]

    def probe(self, name: str) -> ProbeFacts | None:
        transport = self.transports.get(name)
        if transport is None:
            return None
        return probe_host(transport, name, timeout=self.probe_timeout)

    def files(self, name: str, paths: Sequence[str]) -> ProbeFacts | None:
        """Just the named modprobe files (content hashes), read directly: a full probe runs
        every host command, which a check of one file does not need."""
        transport = self.transports.get(name)
        if transport is None:
            return None
        found = []
        for path in paths:
            data = transport.read_file(path)
            if data is not None:
                found.append(ModprobeFile(path=path, sha256=sha256_text(
                    data.decode("utf-8", errors="replace"))))
        return ProbeFacts(host=name, modprobe_files=tuple(found))

    def view(self, key: str, *, probe: bool = True,
             files: Sequence[str] = ()) -> ObjectView:
        kind, _, name = key.partition(":")
        if kind == "host":
            facts = (self.files(name, files) if files else self.probe(name)) if probe else None
            return ObjectView(key, host=self.host(name), probe=facts)
        if kind == "vm":
            return ObjectView(key, vm=self.vm(name))
        raise ApplyError(f"unknown object key {key!r}")


# ---- evaluating a verification -------------------------------------------------------------------

_MISSING = object()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _identity(item: Any) -> set[str]:
    if isinstance(item, dict):
        return {str(item[k]) for k in _ITEM_KEYS if isinstance(item.get(k), str)}
    return {str(item)}


def _step(value: Any, segment: str) -> Any:
    match = _SELECTOR.match(segment)
    name, selector = (match.group("field"), match.group("sel")) if match else (segment, None)
    if not isinstance(value, dict) or name not in value:
        return _MISSING
    value = value[name]
    if selector is None:
        return value
    if not isinstance(value, list):
        return _MISSING
    if "=" in selector:
        key, _, wanted = selector.partition("=")
        return [v for v in value if isinstance(v, dict) and str(v.get(key)) == wanted]
    return next((v for v in value if selector in _identity(v)), _MISSING)


def _root(view: ObjectView) -> dict[str, Any]:
    if view.host is not None:
        data: dict[str, Any] = _plain(view.host)
        probe = view.probe if view.probe is not None and view.probe.ok else None
        data["probe"] = _plain(probe) if probe is not None else _MISSING
        booted = probe.proc_cmdline if probe is not None and probe.proc_cmdline is not None \
            else view.host.reported_kernel_cmdline
        data["booted_cmdline"] = booted if booted is not None else _MISSING
        # The record of the kernel args we wrote (the host's comment), as one string.
        data["owned_kernel_args"] = " ".join(owned_kernel_args(view.host.comment))
        return data
    if view.vm is not None:
        data = _plain(view.vm)
        data["host_devices"] = [d for d in data["host_devices"] if not d["placeholder"]]
        return data
    return {}


def resolve(view: ObjectView, field: str) -> Any:
    """The value of a dotted fact path on `view`; `_MISSING` when absent or not observable."""
    value: Any = _root(view)
    for segment in _split_path(field):
        if value is _MISSING:
            return _MISSING
        value = _step(value, segment)
    return value


def _split_path(field: str) -> list[str]:
    """Split on dots outside brackets (`probe.modprobe_files[/etc/x.conf].sha256`)."""
    parts, depth, current = [], 0, ""
    for ch in field:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _contains(value: Any, wanted: Any) -> bool:
    if isinstance(value, str):
        return str(wanted) in value.split()
    if isinstance(value, list):
        return any(str(wanted) in _identity(v) for v in value)
    return False


def holds(check: Verification, view: ObjectView) -> bool | None:
    """True / False, or None when the field cannot be observed (e.g. the host was not probed)."""
    value = resolve(view, check.field)
    if value is _MISSING:
        if check.op == "not-contains" and view.exists and not check.field.startswith("probe"):
            return True
        if check.op == "count" and view.exists:
            return check.value == 0
        return None
    if check.op == "eq":
        if isinstance(value, list) and isinstance(check.value, str):
            return ",".join(str(v) for v in value) == check.value
        return bool(value == check.value)
    if check.op == "contains":
        return _contains(value, check.value)
    if check.op == "not-contains":
        return not _contains(value, check.value)
    if check.op == "count":
        return isinstance(value, list) and len(value) == check.value
    raise ApplyError(f"unknown verification op {check.op!r}")


def describe(check: Verification) -> str:
    return f"{check.target} {check.field} {check.op} {check.value!r}"


def _observed_value(view: ObjectView, field: str) -> str:
    value = resolve(view, field)
    if value is _MISSING:
        return "(not observed)"
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _read_view(reader: ObjectReader, key: str, probe: bool, files: Sequence[str]) -> ObjectView:
    return reader.view(key, probe=probe, files=files)


@dataclass(frozen=True)
class VerifyReport:
    checked: tuple[str, ...]
    unobservable: tuple[str, ...]      # not observable here (no probe): said, never counted as ok


def verify(reader: ObjectReader, checks: Sequence[Verification], timeout: float,
           interval: float | Backoff = 0.05, *,
           fetch: Callable[[str, bool], ObjectView] | None = None) -> VerifyReport:
    """Re-observe each target of `checks` until every check holds; raise VerificationFailed."""
    by_target: dict[str, list[Verification]] = {}
    for check in checks:
        by_target.setdefault(check.target, []).append(check)
    checked: list[str] = []
    unobservable: list[str] = []
    for target, group in by_target.items():
        needs_probe = any(c.field.startswith("probe") or c.field == "booted_cmdline"
                          for c in group)
        files = [m.group(1) for m in (_FILE_CHECK.fullmatch(c.field) for c in group) if m]
        narrow = tuple(files) if len(files) == len(group) else ()
        read = fetch or functools.partial(_read_view, reader, files=narrow)

        def settled(view: ObjectView) -> bool:
            return view.exists and all(holds(c, view) is not False for c in group)

        def message(view: ObjectView | None) -> str:
            if view is None or not view.exists:
                return f"{target} no longer exists"
            failed = [f"{describe(c)} (observed {_observed_value(view, c.field)})"
                      for c in group if holds(c, view) is False]
            return "did not take effect: " + "; ".join(failed)

        try:
            view = wait_until(lambda: read(target, needs_probe), settled, timeout, interval,
                              message)
        except ApplyError as err:
            raise VerificationFailed(str(err), [describe(c) for c in group]) from None
        for c in group:
            (unobservable if holds(c, view) is None else checked).append(describe(c))
    return VerifyReport(tuple(checked), tuple(unobservable))


__all__ = ["ObjectReader", "ObjectView", "VerificationFailed", "VerifyReport", "holds",
           "resolve", "verify"]
