"""Engine changes, one per function, each confirmed by re-reading before it returns.

Every function here:
- reads first and sends nothing mutating when the target state is already there (safe to re-run);
- sends one change through the real ovirtsdk4 API, retrying only transient failures (5xx, dropped
  or timed-out connections, a 409 that says the object is busy) with capped, jittered backoff;
  a 409 that is a real precondition ("VM must be down") is raised at once as `PreconditionFailed`;
- before repeating a change whose request may already have reached the engine, re-reads to see
  whether it took effect, so a dropped reply never doubles an add;
- polls until the change is visible (or the host/VM reached its target status) within a deadline,
  raising an `ApplyError` subclass that names the object and its last observed state.

Hosts and VMs are named by name (found with one `search=name=...` request) or by their id (a UUID).
Ids found by name are cached per connection. Every function takes an optional `correlation_id`,
sent as the `Correlation-Id` header on each request so engine events and jobs can be tied to one
apply run.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from reconciler.apply.waiting import WaitInterrupted, WaitTimeout, wait_until
# One engine error family and one retry loop for the whole project (reconciler.engine).
from reconciler.engine.errors import (EngineRefused, EngineUnavailable, NotFoundOnEngine,
                                      PreconditionFailed)
from reconciler.engine.retry import DEFAULT_TIMING, Timing, retry
from reconciler.errors import ApplyError
from reconciler.log import get_logger
from reconciler.model.ownership import owned_kernel_args, with_owned_kernel_args

R = TypeVar("R")

log = get_logger(__name__)


# ---------------------------------------------------------------------------------------------
# Errors

class HostDidNotReturn(WaitTimeout):
    """A host did not reach its target status (maintenance / up) within the timeout."""


class MaintenanceBlocked(PreconditionFailed):
    """VMs that cannot migrate keep a host from maintenance: the engine refused up front (pinned
    VMs, `code` 409) or the host stayed in preparing_for_maintenance (`code` None). `vms` names
    the VMs running on it, pinned ones marked."""

    def __init__(self, message: str, vms: tuple[str, ...] = (), *, code: int | None = None,
                 detail: str | None = None, last: object = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.vms = vms
        self.last = last


class InstallFailed(ApplyError):
    """The engine reported `install_failed` for the host."""


class ActivationFailed(ApplyError):
    """The host went `non_operational` instead of `up`."""


class VmDidNotStop(WaitTimeout):
    """The VM was still not down after a graceful shutdown and a forced stop."""


class VmDidNotStart(WaitTimeout):
    """The VM did not reach `up`."""


class VmStartFailed(ApplyError):
    """The VM fell back to `down` while starting."""


class ChangeNotVisible(WaitTimeout):
    """The engine accepted a change but it never showed up on re-reading."""


# ---------------------------------------------------------------------------------------------
# Timing and results

@dataclass(frozen=True)
class Outcome:
    """What an operation did: `changed` is False when the target state was already there."""

    changed: bool
    target: str                    # "host gpu-01", "vm cad-ws-01"
    summary: str
    id: str | None = None          # the id of a created object (mediated device)


# ---------------------------------------------------------------------------------------------
# Validation of values that reach the engine

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DEVICE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_MDEV_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_CORRELATION = re.compile(r"[A-Za-z0-9_-]{1,50}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AFFINITIES = frozenset(a.value for a in types.VmAffinity)
_PLACEMENTS = frozenset(p.value for p in types.VgpuPlacement)


def _check(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ApplyError(f"invalid {what}: {value!r}")
    return value


def _check_text(value: object, what: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or _CONTROL.search(value) or len(value) > limit:
        raise ApplyError(f"invalid {what}: must be one line of at most {limit} characters")
    return value


# ---------------------------------------------------------------------------------------------
# Requests: refusals and retries

@dataclass
class _Ctx:
    """What one operation carries: the connection, its headers, pacing and its id cache."""

    conn: sdk.Connection
    correlation_id: str | None
    timing: Timing
    ids: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Correlation-Id": self.correlation_id} if self.correlation_id else None

    def call(self, what: str, request: Callable[[], R],
             landed: Callable[[], bool] | None = None) -> R | None:
        """Send `request` through the one retry loop (`reconciler.engine.retry`).

        For a change, `landed()` re-reads the engine before each retry: if the previous attempt
        took effect although its reply was lost, the retry is skipped and None is returned.
        """
        return retry(request, what, timing=self.timing, landed=landed,
                     correlation_id=self.correlation_id)

    def read(self, what: str, request: Callable[[], R]) -> R:
        return self.call(what, request)  # type: ignore[return-value]  # None only with `landed`


def _ctx(conn: sdk.Connection, correlation_id: str | None, timing: Timing) -> _Ctx:
    if correlation_id is not None:
        _check(correlation_id, _CORRELATION, "correlation id")
    # Ids found by name live on the connection (CountingConnection.id_cache), so a closed
    # connection takes its cache with it; a plain SDK connection gets a cache per operation.
    ids = getattr(conn, "id_cache", None)
    return _Ctx(conn, correlation_id, timing, ids if ids is not None else {})


# ---------------------------------------------------------------------------------------------
# Lookups

def _lookup(ctx: _Ctx, kind: str, ref: str,
            read: Callable[[str], Any] | None = None) -> tuple[str, Any]:
    """Return (id, entity) of the host or VM named (or identified by) `ref`.

    With `read`, return (id, read(id)) instead: an operation that only needs the id and reads
    something else (the VM's devices) then costs no extra request once the id is cached.
    """
    ref = _check(ref, _NAME, f"{kind} name or id")
    system = ctx.conn.system_service()
    collection = system.hosts_service() if kind == "host" else system.vms_service()

    def by_id(entity_id: str) -> Any:
        if read is not None:
            return read(entity_id)
        service = (collection.host_service(entity_id) if kind == "host"
                   else collection.vm_service(entity_id))
        return ctx.read(f"read {kind} {ref}", lambda: service.get(headers=ctx.headers))

    key = (kind, ref)
    cached = ref if _UUID.fullmatch(ref) else ctx.ids.get(key)
    if cached is not None:
        try:
            return cached, by_id(cached)
        except NotFoundOnEngine:
            ctx.ids.pop(key, None)   # deleted and maybe re-created under the same name
            if cached == ref:
                raise NotFoundOnEngine(f"no {kind} with id {ref} on the engine") from None
    found = ctx.read(f"look up {kind} {ref}", lambda: collection.list(
        search=f"name={ref}", headers=ctx.headers))
    matches = [e for e in found or () if e.name == ref]
    if not matches:
        raise NotFoundOnEngine(f"no {kind} named {ref!r} on the engine")
    if len(matches) > 1:
        raise ApplyError(f"{len(matches)} {kind}s are named {ref!r}; use the id")
    ctx.ids[key] = matches[0].id
    return matches[0].id, matches[0] if read is None else read(matches[0].id)


def _host_service(ctx: _Ctx, host_id: str) -> Any:
    return ctx.conn.system_service().hosts_service().host_service(host_id)


def _vm_service(ctx: _Ctx, vm_id: str) -> Any:
    return ctx.conn.system_service().vms_service().vm_service(vm_id)


def _status(entity: Any) -> str:
    status = getattr(entity, "status", None)
    return status.value if status is not None else "unknown"


def _poll(ctx: _Ctx, fetch: Callable[[], R], predicate: Callable[[R], bool], timeout: float,
          describe: Callable[[R | None], str], *, fail: Callable[[R], ApplyError | None] | None = None,
          error: type[WaitTimeout] = ChangeNotVisible, stop: threading.Event | None = None,
          interruptible: Callable[[R], bool] | None = None) -> R:
    return wait_until(fetch, predicate, timeout, ctx.timing.poll, describe, fail=fail, error=error,
                      stop=stop, interruptible=interruptible)


def _done(ctx: _Ctx, target: str, summary: str, changed: bool = True,
          new_id: str | None = None) -> Outcome:
    log.info("engine change applied" if changed else "engine already in target state",
             target=target, summary=summary, correlation_id=ctx.correlation_id)
    return Outcome(changed, target, summary, new_id)


# ---------------------------------------------------------------------------------------------
# Host fields

def _normalise_cmdline(cmdline: str) -> str:
    return " ".join(_check_text(cmdline, "kernel command line").split())


def set_kernel_cmdline(conn: sdk.Connection, host: str, cmdline: str, *,
                       owned: Sequence[str] | None = None,
                       correlation_id: str | None = None,
                       timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Set `host.os.custom_kernel_cmdline` (allowed in any host state; applied at reinstall).

    With `owned`, the host's record of the kernel args we wrote (a marker in its `comment`,
    reconciler/model/ownership.py) is set to it in the same PUT; the rest of the comment, the
    administrator's, is kept as the engine has it now.
    """
    ctx = _ctx(conn, correlation_id, timing)
    wanted = _normalise_cmdline(cmdline)
    host_id, current = _lookup(ctx, "host", host)
    service = _host_service(ctx, host_id)

    def value(h: Any) -> str:
        return " ".join(((h.os.custom_kernel_cmdline if h.os else None) or "").split())

    def record(h: Any) -> tuple[str, ...]:
        return owned_kernel_args(h.comment)

    def done(h: Any) -> bool:
        return value(h) == wanted and (owned is None or record(h) == tuple(owned))

    if done(current):
        return _done(ctx, f"host {host}", f"kernel cmdline already {wanted!r}", changed=False)
    update = types.Host(os=types.OperatingSystem(custom_kernel_cmdline=wanted))
    if owned is not None:
        update.comment = with_owned_kernel_args(current.comment, owned)
    fetch = lambda: ctx.read(f"read host {host}", lambda: service.get(headers=ctx.headers))  # noqa: E731
    ctx.call(f"set the kernel command line of host {host}",
             lambda: service.update(update, headers=ctx.headers),
             landed=lambda: done(service.get(headers=ctx.headers)))
    _poll(ctx, fetch, done, timing.verify_timeout,
          lambda h: f"host {host}: kernel cmdline still {value(h)!r} after the update, "
                    f"wanted {wanted!r}" + ("" if owned is None else
                                            f" (record {record(h)}, wanted {tuple(owned)})"))
    return _done(ctx, f"host {host}", f"kernel cmdline {value(current)!r} -> {wanted!r}")


def set_vgpu_placement(conn: sdk.Connection, host: str, placement: str, *,
                       correlation_id: str | None = None,
                       timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Set `host.vgpu_placement` to `consolidated` or `separated`."""
    if placement not in _PLACEMENTS:
        raise ApplyError(f"invalid vGPU placement {placement!r}: use one of {sorted(_PLACEMENTS)}")
    ctx = _ctx(conn, correlation_id, timing)
    host_id, current = _lookup(ctx, "host", host)
    service = _host_service(ctx, host_id)

    def value(h: Any) -> str | None:
        return h.vgpu_placement.value if h.vgpu_placement is not None else None

    if value(current) == placement:
        return _done(ctx, f"host {host}", f"vGPU placement already {placement}", changed=False)
    ctx.call(f"set the vGPU placement of host {host}",
             lambda: service.update(types.Host(vgpu_placement=types.VgpuPlacement(placement)),
                                    headers=ctx.headers),
             landed=lambda: value(service.get(headers=ctx.headers)) == placement)
    _poll(ctx, lambda: ctx.read(f"read host {host}", lambda: service.get(headers=ctx.headers)),
          lambda h: value(h) == placement, timing.verify_timeout,
          lambda h: f"host {host}: vGPU placement still {value(h) if h else None} after the update")
    return _done(ctx, f"host {host}", f"vGPU placement {value(current)} -> {placement}")


# ---------------------------------------------------------------------------------------------
# Host cycle: deactivate -> install -> activate

def _vms_on_host(ctx: _Ctx, host: str) -> tuple[str, ...]:
    vms = ctx.read(f"list VMs on host {host}", lambda: ctx.conn.system_service().vms_service()
                   .list(search=f"host={host}", headers=ctx.headers))
    names = []
    for vm in vms or ():
        if _status(vm) == "down":
            continue
        policy = vm.placement_policy
        pinned = policy is not None and policy.affinity is not None and \
            policy.affinity.value == "pinned"
        names.append(f"{vm.name} (pinned)" if pinned else str(vm.name))
    return tuple(sorted(names))


# The engine's refusal when running VMs cannot leave the host (pinned / non-migratable).
_NON_MIGRATABLE = re.compile(r"non-migratable|running VMs", re.IGNORECASE)


def deactivate_host(conn: sdk.Connection, host: str, timeout: float = 600.0, *,
                    reason: str | None = None, correlation_id: str | None = None,
                    timing: Timing = DEFAULT_TIMING,
                    stop: threading.Event | None = None) -> Outcome:
    """Move a host to `maintenance` and wait for it; its VMs are migrated by the engine.

    VMs that cannot migrate raise `MaintenanceBlocked` naming them, whether the engine refuses
    the request (pinned VMs) or the host stays in preparing_for_maintenance past `timeout`. A set
    `stop` ends the wait (migrations can take minutes) with `WaitInterrupted`: nothing is past
    the point of no return yet, so the caller can put the host back.
    """
    ctx = _ctx(conn, correlation_id, timing)
    if reason is not None:
        _check_text(reason, "maintenance reason", 1000)
    host_id, current = _lookup(ctx, "host", host)
    service = _host_service(ctx, host_id)
    before = _status(current)
    if before == "maintenance":
        return _done(ctx, f"host {host}", "already in maintenance", changed=False)
    if before != "preparing_for_maintenance":
        try:
            ctx.call(f"move host {host} to maintenance",
                     lambda: service.deactivate(reason=reason, headers=ctx.headers),
                     landed=lambda: _status(service.get(headers=ctx.headers)) in (
                         "preparing_for_maintenance", "maintenance"))
        except PreconditionFailed as err:
            if not _NON_MIGRATABLE.search(err.detail or ""):
                raise
            vms = _vms_on_host(ctx, str(current.name))
            raise MaintenanceBlocked(str(err), vms, code=err.code, detail=err.detail) from None
    fetch = lambda: ctx.read(f"read host {host}", lambda: service.get(headers=ctx.headers))  # noqa: E731
    try:
        _poll(ctx, fetch, lambda h: _status(h) == "maintenance", timeout,
              lambda h: f"host {host} did not reach maintenance within {timeout:g}s "
                        f"(last status: {_status(h)})", error=HostDidNotReturn, stop=stop,
              # Only once the engine shows the request taking effect: from there, activating
              # the host puts it back; before, an activation could cross the deactivation.
              interruptible=lambda h: _status(h) in ("preparing_for_maintenance",
                                                     "maintenance"))
    except WaitInterrupted as err:
        raise WaitInterrupted(f"stopped while host {host} was moving to maintenance (status "
                              f"{_status(err.last)})", err.last) from None
    except HostDidNotReturn as err:
        if _status(err.last) != "preparing_for_maintenance":
            raise
        vms = _vms_on_host(ctx, str(current.name))
        listing = ", ".join(vms) if vms else "none listed"
        raise MaintenanceBlocked(
            f"host {host} is stuck in preparing_for_maintenance after {timeout:g}s; VMs still "
            f"running on it (they cannot migrate): {listing}", vms, last=err.last) from None
    return _done(ctx, f"host {host}", f"{before} -> maintenance")


_INSTALL_IN_FLIGHT = frozenset({"installing", "reboot", "installing_os"})
# Statuses a host passes through between an install request and its final status.
_INSTALL_TRANSIT = _INSTALL_IN_FLIGHT | {"initializing", "non_responsive", "connecting"}


def install_host(conn: sdk.Connection, host: str, reboot: bool = True, activate: bool = False,
                 timeout: float = 1800.0, *, correlation_id: str | None = None,
                 timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Reinstall a host (applies the engine's kernel cmdline; reboots it when `reboot`).

    Authenticates with the engine's SSH key (publickey). The host must be in maintenance (or
    non_operational / install_failed): otherwise the engine's 409 is raised as
    `PreconditionFailed`, without retrying. Waits for `maintenance` (or `up` when `activate`);
    `install_failed` raises `InstallFailed`, a host not back in time `HostDidNotReturn`.
    An install already running is awaited rather than started again.
    """
    ctx = _ctx(conn, correlation_id, timing)
    host_id, current = _lookup(ctx, "host", host)
    service = _host_service(ctx, host_id)
    target = "up" if activate else "maintenance"
    before = _status(current)
    was_required = bool(current.reinstallation_required)
    if before not in _INSTALL_IN_FLIGHT:
        ctx.call(f"install host {host}",
                 lambda: service.install(
                     ssh=types.Ssh(authentication_method=types.SshAuthenticationMethod.PUBLICKEY),
                     reboot=reboot, activate=activate, headers=ctx.headers),
                 landed=lambda: _status(service.get(headers=ctx.headers)) in _INSTALL_TRANSIT)
    seen_transit = before in _INSTALL_IN_FLIGHT

    def fetch() -> Any:
        nonlocal seen_transit
        h = ctx.read(f"read host {host}", lambda: service.get(headers=ctx.headers))
        seen_transit = seen_transit or _status(h) in _INSTALL_TRANSIT
        return h

    def finished(h: Any) -> bool:
        # The engine flips the status to `installing` before it answers; the cleared
        # reinstallation flag covers an install too quick to be seen in flight.
        return _status(h) == target and (
            seen_transit or (was_required and not h.reinstallation_required))

    def fail(h: Any) -> ApplyError | None:
        status = _status(h)
        if status == "install_failed" and (seen_transit or before != "install_failed"):
            return InstallFailed(f"installing host {host} failed (install_failed"
                                 f"{': ' + h.status_detail if h.status_detail else ''})")
        if activate and status == "non_operational" and seen_transit:
            return ActivationFailed(f"host {host} went non_operational after install"
                                    f"{': ' + h.status_detail if h.status_detail else ''}")
        return None

    _poll(ctx, fetch, finished, timeout,
          lambda h: f"host {host} did not return to {target} within {timeout:g}s after install "
                    f"(last status: {_status(h)})", fail=fail, error=HostDidNotReturn)
    return _done(ctx, f"host {host}", f"installed ({'rebooted, ' if reboot else ''}now {target})")


def activate_host(conn: sdk.Connection, host: str, timeout: float = 600.0, *,
                  correlation_id: str | None = None, timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Activate a host and wait for `up`; `non_operational` raises `ActivationFailed`."""
    ctx = _ctx(conn, correlation_id, timing)
    host_id, current = _lookup(ctx, "host", host)
    service = _host_service(ctx, host_id)
    before = _status(current)
    if before == "up":
        return _done(ctx, f"host {host}", "already up", changed=False)
    if before not in ("initializing", "unassigned", "connecting"):
        ctx.call(f"activate host {host}", lambda: service.activate(headers=ctx.headers),
                 landed=lambda: _status(service.get(headers=ctx.headers)) != before)
    left_before = before != "non_operational"

    def fetch() -> Any:
        nonlocal left_before
        h = ctx.read(f"read host {host}", lambda: service.get(headers=ctx.headers))
        left_before = left_before or _status(h) != before
        return h

    def fail(h: Any) -> ApplyError | None:
        if _status(h) == "non_operational" and left_before:
            return ActivationFailed(f"host {host} went non_operational on activation"
                                    f"{': ' + h.status_detail if h.status_detail else ''}")
        return None

    _poll(ctx, fetch, lambda h: _status(h) == "up", timeout,
          lambda h: f"host {host} did not come up within {timeout:g}s (last status: {_status(h)})",
          fail=fail, error=HostDidNotReturn)
    return _done(ctx, f"host {host}", f"{before} -> up")


# ---------------------------------------------------------------------------------------------
# VM placement, host devices, mediated devices, consoles

def pin_vm(conn: sdk.Connection, vm: str, host: str, affinity: str = "pinned", *,
           correlation_id: str | None = None, timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Pin a VM to exactly `host` with `affinity` (pinned | user_migratable | migratable).

    The engine drops every host device of a VM whose pinned host changes.
    """
    if affinity not in _AFFINITIES:
        raise ApplyError(f"invalid affinity {affinity!r}: use one of {sorted(_AFFINITIES)}")
    ctx = _ctx(conn, correlation_id, timing)
    host_id, _ = _lookup(ctx, "host", host, lambda i: None)   # only its id is needed
    vm_id, current = _lookup(ctx, "vm", vm)
    service = _vm_service(ctx, vm_id)

    def placement(v: Any) -> tuple[tuple[str, ...], str | None]:
        policy = v.placement_policy
        if policy is None:
            return (), None
        hosts = tuple(sorted(h.id for h in policy.hosts or () if h.id))
        return hosts, policy.affinity.value if policy.affinity is not None else None

    wanted = ((host_id,), affinity)
    if placement(current) == wanted:
        return _done(ctx, f"vm {vm}", f"already pinned to {host} ({affinity})", changed=False)
    ctx.call(f"pin VM {vm} to host {host}",
             lambda: service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
                 affinity=types.VmAffinity(affinity), hosts=[types.Host(id=host_id)])),
                 headers=ctx.headers),
             landed=lambda: placement(service.get(headers=ctx.headers)) == wanted)
    _poll(ctx, lambda: ctx.read(f"read vm {vm}", lambda: service.get(headers=ctx.headers)),
          lambda v: placement(v) == wanted, timing.verify_timeout,
          lambda v: f"vm {vm}: placement still {placement(v) if v else None} after pinning")
    return _done(ctx, f"vm {vm}", f"pinned to {host} ({affinity})")


def _device_name(device: Any) -> str | None:
    if device.name:
        return str(device.name)
    try:   # the engine's host-device id is the hex of its name
        return bytes.fromhex(device.id).decode() if device.id else None
    except (ValueError, UnicodeDecodeError):
        return None


def _attached(ctx: _Ctx, service: Any, vm: str) -> dict[str, bool]:
    """Device name -> placeholder flag, for the host devices the VM has."""
    devices = ctx.read(f"list host devices of vm {vm}",
                       lambda: service.host_devices_service().list(headers=ctx.headers))
    return {name: bool(d.placeholder) for d in devices or () if (name := _device_name(d))}


def _vm_host_devices(conn: sdk.Connection, vm: str, device_name: str,
                     correlation_id: str | None, timing: Timing
                     ) -> tuple[_Ctx, Any, dict[str, bool]]:
    """The operation's context, the VM's service and its host devices (name -> placeholder),
    read in the request that finds the VM once its id is known."""
    _check(device_name, _DEVICE, "host device name")
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, devices = _lookup(ctx, "vm", vm,
                             lambda i: _attached(ctx, _vm_service(ctx, i), vm))
    return ctx, _vm_service(ctx, vm_id), devices


def attach_host_device(conn: sdk.Connection, vm: str, device_name: str, *,
                       correlation_id: str | None = None,
                       timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Attach a host device (e.g. `pci_0000_03_00_0`) of the VM's pinned host.

    The VM must be down and pinned to one host; the engine's 409 otherwise is raised as
    `PreconditionFailed`. IOMMU-group siblings come along as placeholders.
    """
    ctx, service, devices = _vm_host_devices(conn, vm, device_name, correlation_id, timing)

    def attached(devices: dict[str, bool]) -> bool:
        return device_name in devices and not devices[device_name]

    if attached(devices):
        return _done(ctx, f"vm {vm}", f"host device {device_name} already attached", changed=False)
    ctx.call(f"attach host device {device_name} to vm {vm}",
             lambda: service.host_devices_service().add(types.HostDevice(name=device_name),
                                                        headers=ctx.headers),
             landed=lambda: attached(_attached(ctx, service, vm)))
    _poll(ctx, lambda: _attached(ctx, service, vm), attached, timing.verify_timeout,
          lambda d: f"vm {vm}: host device {device_name} not attached after adding it")
    return _done(ctx, f"vm {vm}", f"host device {device_name} attached")


def detach_host_device(conn: sdk.Connection, vm: str, device_name: str, *,
                       correlation_id: str | None = None,
                       timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Detach a host device; the engine keeps it as a placeholder while IOMMU siblings remain."""
    ctx, service, devices = _vm_host_devices(conn, vm, device_name, correlation_id, timing)

    def gone(devices: dict[str, bool]) -> bool:
        return device_name not in devices or devices[device_name]

    if gone(devices):
        return _done(ctx, f"vm {vm}", f"host device {device_name} not attached", changed=False)
    device_service = service.host_devices_service().device_service(device_name.encode().hex())
    try:
        ctx.call(f"detach host device {device_name} from vm {vm}",
                 lambda: device_service.remove(headers=ctx.headers),
                 landed=lambda: gone(_attached(ctx, service, vm)))
    except NotFoundOnEngine:
        pass   # removed meanwhile: the target state
    _poll(ctx, lambda: _attached(ctx, service, vm), gone, timing.verify_timeout,
          lambda d: f"vm {vm}: host device {device_name} still attached after removing it")
    return _done(ctx, f"vm {vm}", f"host device {device_name} detached")


def _mdev_params(mdev_type: str, nodisplay: bool, driver_params: str | None) -> dict[str, str]:
    _check(mdev_type, _MDEV_TYPE, "mdev type")
    if not isinstance(nodisplay, bool):
        raise ApplyError(f"invalid nodisplay {nodisplay!r}: must be true or false")
    params = {"mdevType": mdev_type, "nodisplay": "true" if nodisplay else "false"}
    if driver_params is not None:
        params["driverParams"] = _check_text(driver_params, "vGPU driver parameters", 1024)
    return params


def _spec_params(device: Any) -> dict[str, str]:
    params = {str(p.name): str(p.value) for p in device.spec_params or () if p.name}
    if "nodisplay" in params:   # the engine stores a boolean; spellings vary on the way back
        params["nodisplay"] = "true" if params["nodisplay"].lower() in ("true", "1") else "false"
    else:
        params["nodisplay"] = "false"
    return params


def _as_properties(params: dict[str, str]) -> list[types.Property]:
    return [types.Property(name=k, value=v) for k, v in params.items()]


def _mdevs(ctx: _Ctx, service: Any, vm: str) -> dict[str, dict[str, str]]:
    # Read through the VM with `follow` (as the Admin Portal's vGPU dialog does): one request,
    # and the inline <mediated_devices> element is what every engine version renders the same.
    current = ctx.read(f"list mediated devices of vm {vm}",
                       lambda: service.get(follow="mediated_devices", headers=ctx.headers))
    return {str(d.id): _spec_params(d) for d in current.mediated_devices or () if d.id}


def add_mediated_device(conn: sdk.Connection, vm: str, mdev_type: str, nodisplay: bool = False,
                        driver_params: str | None = None, *, instances: int | None = None,
                        correlation_id: str | None = None,
                        timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Add one vGPU instance (one mediated device) to a VM; `Outcome.id` is its UUID.

    With `instances`, nothing is added when the VM already has that many devices with exactly
    these parameters, which makes a repeated call a no-op. Accepted while the VM runs; effective
    at its next start.
    """
    params = _mdev_params(mdev_type, nodisplay, driver_params)
    if instances is not None and (not isinstance(instances, int) or instances < 1):
        raise ApplyError(f"invalid instance count {instances!r}")
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, before = _lookup(ctx, "vm", vm, lambda i: _mdevs(ctx, _vm_service(ctx, i), vm))
    service = _vm_service(ctx, vm_id)
    same = [i for i, p in before.items() if p == params]
    if instances is not None and len(same) >= instances:
        return _done(ctx, f"vm {vm}", f"already has {len(same)} x {mdev_type}", changed=False)

    def new_ids() -> list[str]:
        return [i for i, p in _mdevs(ctx, service, vm).items() if p == params and i not in before]

    created = ctx.call(f"add a {mdev_type} mediated device to vm {vm}",
                       lambda: service.mediated_devices_service().add(
                           types.VmMediatedDevice(spec_params=_as_properties(params)),
                           headers=ctx.headers),
                       landed=lambda: bool(new_ids()))
    if created is not None and created.id:
        new_id = str(created.id)
        _poll(ctx, lambda: _mdevs(ctx, service, vm), lambda d: d.get(new_id) == params,
              timing.verify_timeout,
              lambda d: f"vm {vm}: mediated device {new_id} not visible with {params} after adding")
    else:
        new_id = _poll(ctx, new_ids, bool, timing.verify_timeout,
                       lambda d: f"vm {vm}: no new {mdev_type} mediated device after adding")[0]
    return _done(ctx, f"vm {vm}", f"mediated device {new_id} ({mdev_type}) added", new_id=new_id)


def remove_mediated_device(conn: sdk.Connection, vm: str, mdev_id: str, *,
                           correlation_id: str | None = None,
                           timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Remove one mediated device from a VM; a device already gone is a no-op."""
    _check(mdev_id, _UUID, "mediated device id")
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, current = _lookup(ctx, "vm", vm, lambda i: _mdevs(ctx, _vm_service(ctx, i), vm))
    service = _vm_service(ctx, vm_id)
    if mdev_id not in current:
        return _done(ctx, f"vm {vm}", f"mediated device {mdev_id} not present", changed=False)
    device_service = service.mediated_devices_service().device_service(mdev_id)
    try:
        ctx.call(f"remove mediated device {mdev_id} from vm {vm}",
                 lambda: device_service.remove(headers=ctx.headers),
                 landed=lambda: mdev_id not in _mdevs(ctx, service, vm))
    except NotFoundOnEngine:
        pass
    _poll(ctx, lambda: _mdevs(ctx, service, vm), lambda d: mdev_id not in d, timing.verify_timeout,
          lambda d: f"vm {vm}: mediated device {mdev_id} still present after removing it")
    return _done(ctx, f"vm {vm}", f"mediated device {mdev_id} removed")


def update_mediated_device(conn: sdk.Connection, vm: str, mdev_id: str, mdev_type: str,
                           nodisplay: bool = False, driver_params: str | None = None, *,
                           correlation_id: str | None = None,
                           timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Rewrite a mediated device's spec params. The engine replaces the whole map on update, so
    every key is sent; `driver_params=None` therefore removes driver parameters."""
    params = _mdev_params(mdev_type, nodisplay, driver_params)
    _check(mdev_id, _UUID, "mediated device id")
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, current = _lookup(ctx, "vm", vm, lambda i: _mdevs(ctx, _vm_service(ctx, i), vm))
    service = _vm_service(ctx, vm_id)
    if mdev_id not in current:
        raise NotFoundOnEngine(f"vm {vm} has no mediated device {mdev_id}")
    if current[mdev_id] == params:
        return _done(ctx, f"vm {vm}", f"mediated device {mdev_id} already {_show(params)}",
                     changed=False)
    device_service = service.mediated_devices_service().device_service(mdev_id)
    ctx.call(f"update mediated device {mdev_id} of vm {vm}",
             lambda: device_service.update(types.VmMediatedDevice(
                 spec_params=_as_properties(params)), headers=ctx.headers),
             landed=lambda: _mdevs(ctx, service, vm).get(mdev_id) == params)
    _poll(ctx, lambda: _mdevs(ctx, service, vm), lambda d: d.get(mdev_id) == params,
          timing.verify_timeout,
          lambda d: f"vm {vm}: mediated device {mdev_id} shows "
                    f"{_show(d.get(mdev_id)) if d and d.get(mdev_id) else 'nothing'} "
                    f"after the update, wanted {_show(params)}")
    return _done(ctx, f"vm {vm}", f"mediated device {mdev_id}: {_show(current[mdev_id])} -> "
                                  f"{_show(params)}")


def _show(params: dict[str, str]) -> str:
    """Spec params as a reader writes them: `mdevType=nvidia-18 nodisplay=false`."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def _protocols(ctx: _Ctx, service: Any, vm: str) -> set[str]:
    consoles = ctx.read(f"list graphics consoles of vm {vm}",
                        lambda: service.graphics_consoles_service().list(headers=ctx.headers))
    return {c.protocol.value for c in consoles or () if c.protocol is not None}


def add_vnc_console(conn: sdk.Connection, vm: str, *, correlation_id: str | None = None,
                    timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Give the VM a VNC graphics console (the console NVIDIA vGPU displays need)."""
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, protocols = _lookup(ctx, "vm", vm,
                               lambda i: _protocols(ctx, _vm_service(ctx, i), vm))
    service = _vm_service(ctx, vm_id)
    if "vnc" in protocols:
        return _done(ctx, f"vm {vm}", "already has a VNC console", changed=False)
    ctx.call(f"add a VNC console to vm {vm}",
             lambda: service.graphics_consoles_service().add(
                 types.GraphicsConsole(protocol=types.GraphicsType.VNC), headers=ctx.headers),
             landed=lambda: "vnc" in _protocols(ctx, service, vm))
    _poll(ctx, lambda: _protocols(ctx, service, vm), lambda p: "vnc" in p, timing.verify_timeout,
          lambda p: f"vm {vm}: no VNC console after adding one (consoles: {sorted(p or ())})")
    return _done(ctx, f"vm {vm}", "VNC console added")


# ---------------------------------------------------------------------------------------------
# VM power

def shutdown_vm(conn: sdk.Connection, vm: str, timeout: float = 300.0, *,
                stop_timeout: float = 120.0, correlation_id: str | None = None,
                timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Shut a VM down gracefully; if it is not down after `timeout`, power it off (`stop`)."""
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, current = _lookup(ctx, "vm", vm)
    service = _vm_service(ctx, vm_id)
    before = _status(current)
    if before == "down":
        return _done(ctx, f"vm {vm}", "already down", changed=False)
    fetch = lambda: ctx.read(f"read vm {vm}", lambda: service.get(headers=ctx.headers))  # noqa: E731
    is_down = lambda v: _status(v) == "down"  # noqa: E731
    if before != "powering_down":
        ctx.call(f"shut down vm {vm}", lambda: service.shutdown(headers=ctx.headers),
                 landed=lambda: _status(service.get(headers=ctx.headers)) in (
                     "powering_down", "down"))
    try:
        _poll(ctx, fetch, is_down, timeout,
              lambda v: f"vm {vm} not down {timeout:g}s after shutdown (status {_status(v)})",
              error=VmDidNotStop)
        return _done(ctx, f"vm {vm}", f"{before} -> down (shutdown)")
    except VmDidNotStop as err:
        log.warning("graceful shutdown timed out, stopping", vm=vm, status=_status(err.last),
                    correlation_id=ctx.correlation_id)
    ctx.call(f"stop vm {vm}", lambda: service.stop(headers=ctx.headers),
             landed=lambda: _status(service.get(headers=ctx.headers)) == "down")
    _poll(ctx, fetch, is_down, stop_timeout,
          lambda v: f"vm {vm} still {_status(v)} after shutdown ({timeout:g}s) and stop "
                    f"({stop_timeout:g}s)", error=VmDidNotStop)
    return _done(ctx, f"vm {vm}", f"{before} -> down (forced stop after {timeout:g}s)")


_STARTING = frozenset({"wait_for_launch", "powering_up"})


def start_vm(conn: sdk.Connection, vm: str, timeout: float = 300.0, *,
             correlation_id: str | None = None, timing: Timing = DEFAULT_TIMING) -> Outcome:
    """Start a VM and wait for `up`; a VM that falls back to down raises `VmStartFailed`."""
    ctx = _ctx(conn, correlation_id, timing)
    vm_id, current = _lookup(ctx, "vm", vm)
    service = _vm_service(ctx, vm_id)
    before = _status(current)
    if before == "up":
        return _done(ctx, f"vm {vm}", "already up", changed=False)
    if before not in _STARTING:
        ctx.call(f"start vm {vm}", lambda: service.start(headers=ctx.headers),
                 landed=lambda: _status(service.get(headers=ctx.headers)) != before)
    seen_starting = before in _STARTING

    def fetch() -> Any:
        nonlocal seen_starting
        v = ctx.read(f"read vm {vm}", lambda: service.get(headers=ctx.headers))
        seen_starting = seen_starting or _status(v) in _STARTING
        return v

    def fail(v: Any) -> ApplyError | None:
        if _status(v) == "down" and seen_starting:
            return VmStartFailed(f"vm {vm} went back to down while starting")
        return None

    _poll(ctx, fetch, lambda v: _status(v) == "up", timeout,
          lambda v: f"vm {vm} not up {timeout:g}s after start (status {_status(v)})",
          fail=fail, error=VmDidNotStart)
    return _done(ctx, f"vm {vm}", f"{before} -> up")


__all__ = [
    "ActivationFailed", "ChangeNotVisible", "DEFAULT_TIMING", "EngineRefused", "EngineUnavailable",
    "HostDidNotReturn", "InstallFailed", "MaintenanceBlocked", "NotFoundOnEngine", "Outcome",
    "PreconditionFailed", "Timing", "VmDidNotStart", "VmDidNotStop", "VmStartFailed",
    "activate_host", "add_mediated_device", "add_vnc_console", "attach_host_device",
    "deactivate_host", "detach_host_device", "install_host", "pin_vm",
    "remove_mediated_device", "set_kernel_cmdline", "set_vgpu_placement", "shutdown_vm",
    "start_vm", "update_mediated_device",
]
