"""From spec files to the frozen DesiredState: load, schema, semantics, then build."""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.errors import SpecError, SpecIssue
from reconciler.spec import model
from reconciler.spec.fleetref import is_fleet_path
from reconciler.spec.environment import environment_issues
from reconciler.spec.load import SpecDocument, load_documents
from reconciler.spec.schema import check_document
from reconciler.spec.semantic import check_documents


def _sort_key(issue: SpecIssue) -> tuple[str, int, int, str]:
    return (issue.file, issue.line, issue.column, issue.path)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while spec files are read, restoring it as it was.

    A large spec becomes hundreds of thousands of objects (YAML nodes, a line and column for every
    key and value, the checked values, the built state), few of them in reference cycles; their
    arrival alone sets off collections that walk the whole growing heap again and again: half of
    loading a 5,800-VM spec (~1.0 s -> ~0.5 s). Cyclic garbage made meanwhile is collected once
    the collector runs again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_each(paths: Sequence[str], within: Path | None = None
              ) -> tuple[list[SpecDocument], list[SpecIssue]]:
    """The spec documents under PATHs and each one's own problems (loading, schema); what
    documents say to each other is checked by the caller (one engine's or several engines')."""
    docs: list[SpecDocument] = []
    issues: list[SpecIssue] = []
    for loaded in load_documents(paths, within):
        if isinstance(loaded, SpecIssue):
            issues.append(loaded)
        else:
            docs.append(loaded)
            issues.extend(check_document(loaded))
    return docs, issues


def _check(paths: Sequence[str], within: Path | None = None, environment: bool = False
           ) -> tuple[list[SpecDocument], list[SpecIssue]]:
    docs, issues = load_each(paths, within)
    if docs:
        issues.extend(check_documents(docs))
        if environment:
            issues.extend(environment_issues(docs))
    elif not issues:
        issues.append(SpecIssue(paths[0] if paths else "-", 1, 1, "(document)", "no spec files"))
    issues.sort(key=_sort_key)
    return docs, issues


def validate_paths(paths: Sequence[str]) -> list[SpecIssue]:
    """Every problem in the spec files under PATHs, sorted by file, line and column ([] = valid).

    Raises SpecPathError (a ReconcilerError) when a PATH does not exist or holds no spec files.
    """
    with collector_paused():
        return _check(paths)[1]


def load_desired(paths: Sequence[str], within: Path | None = None) -> model.DesiredState:
    """The merged DesiredState of the spec files under PATHs; SpecError lists every problem.

    `within` (the repository in git mode) bounds where spec files may lie, links included."""
    state, issues = check_and_build(paths, within)
    if issues or state is None:
        raise SpecError(issues)
    return state


def check_and_build(paths: Sequence[str], within: Path | None = None, *,
                    environment: bool = False
                    ) -> tuple[model.DesiredState | None, list[SpecIssue]]:
    """Validate PATHs and, when valid, build the DesiredState (one pass over the files).

    `environment`: also check that the CA file, the password variable or file and the SSH files
    the spec names are there on this machine (spec/environment.py)."""
    with collector_paused():
        docs, issues = _check(paths, within, environment)
        if issues:
            return None, issues
        return build_state(docs), []


def build_state(docs: Sequence[SpecDocument]) -> model.DesiredState:
    """Build from documents that passed every check (shapes are trusted here)."""
    engine: model.EngineSpec | None = None
    host_access = model.HostAccess()
    profiles: list[model.HostProfile] = []
    vms: list[model.VmSpec] = []
    prune = model.PruneSpec()
    for doc in docs:
        base = doc.path.parent
        data = doc.data
        if "engine" in data:
            engine = _engine(data["engine"], base)
        if "hostAccess" in data:
            host_access = _host_access(data["hostAccess"], base)
        if "prune" in data:
            prune = _prune(data["prune"], _location(doc, ("prune",)))
        for i, raw in enumerate(data.get("hostProfiles") or ()):
            profiles.append(_profile(raw, _location(doc, ("hostProfiles", i))))
        for i, raw in enumerate(data.get("vms") or ()):
            vms.append(_vm(raw, _location(doc, ("vms", i))))
    assert engine is not None, "semantic checks guarantee exactly one engine"
    return model.DesiredState(engine=engine, host_access=host_access,
                              host_profiles=tuple(profiles), vms=tuple(vms), prune=prune,
                              sources=tuple(doc.file for doc in docs))


def _location(doc: SpecDocument, path: tuple[str | int, ...]) -> model.Location:
    m = doc.mark(path)
    return model.Location(doc.file, m.line, m.column)


def resolve_path(value: str, base: Path) -> Path:
    """A path as written in a spec: `~` expanded, relative ones taken from the spec file's folder."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _whole(value: Any) -> Any:
    """A count as an int: JSON Schema's "integer" also admits 2.0, which slices and ranges refuse."""
    return int(value) if isinstance(value, float) else value


def _optional_path(raw: dict[str, Any], key: str, base: Path) -> Path | None:
    value = raw.get(key)
    return resolve_path(value, base) if value is not None else None


def _engine(raw: dict[str, Any], base: Path) -> model.EngineSpec:
    if "lab" in raw:
        lab = raw["lab"]
        fleet = lab["fleet"]
        return model.EngineSpec(
            lab_fleet=str(resolve_path(fleet, base)) if is_fleet_path(fleet) else fleet,
            lab_state=_optional_path(lab, "state", base))
    password = raw["passwordFrom"]
    return model.EngineSpec(
        url=raw["url"], username=raw["username"],
        password_env=password.get("env"),
        password_file=_optional_path(password, "file", base),
        ca_file=_optional_path(raw, "caFile", base),
        insecure=bool(raw.get("insecure", False)),
        timeout_seconds=float(raw.get("timeoutSeconds", 60.0)))


def _host_access(raw: dict[str, Any], base: Path) -> model.HostAccess:
    ssh = raw.get("ssh")
    ssh_access = None
    if ssh is not None:
        defaults = model.SshAccess()
        ssh_access = model.SshAccess(
            user=ssh.get("user", defaults.user), port=_whole(ssh.get("port", defaults.port)),
            identity_file=_optional_path(ssh, "identityFile", base),
            known_hosts_file=_optional_path(ssh, "knownHostsFile", base),
            concurrency=_whole(ssh.get("concurrency", defaults.concurrency)),
            timeout_seconds=float(ssh.get("timeoutSeconds", defaults.timeout_seconds)))
    return model.HostAccess(ssh=ssh_access, local_roots=_optional_path(raw, "localRoots", base))


def _prune(raw: dict[str, Any] | None, location: model.Location) -> model.PruneSpec:
    raw = raw or {}
    defaults = model.PruneSpec()
    return model.PruneSpec(
        unmanaged_vgpus=bool(raw.get("unmanagedVgpus", defaults.unmanaged_vgpus)),
        unmanaged_host_devices=bool(raw.get("unmanagedHostDevices",
                                            defaults.unmanaged_host_devices)),
        vms=tuple(raw.get("vms", defaults.vms)), location=location)


def _profile(raw: dict[str, Any], location: model.Location) -> model.HostProfile:
    selector = raw["selector"]
    kernel = raw.get("kernel")
    modprobe = raw.get("modprobe")
    vgpu = raw.get("vgpu")
    rollout = raw.get("rollout") or {}
    return model.HostProfile(
        name=raw["name"],
        selector=model.HostSelector(cluster=selector.get("cluster"),
                                    names=tuple(selector.get("names") or ())),
        kernel=None if kernel is None else model.KernelSpec(
            iommu=kernel.get("iommu"),
            iommu_passthrough=kernel.get("iommuPassthrough"),
            blacklist_nouveau=kernel.get("blacklistNouveau"),
            pci_stub=None if kernel.get("pciStub") is None else tuple(kernel["pciStub"]),
            extra_args=tuple(kernel.get("extraArgs") or ())),
        modprobe=None if modprobe is None else model.ModprobeSpec(
            blacklist=tuple(modprobe.get("blacklist") or ()),
            options=tuple(sorted((module, tuple(opts))
                                 for module, opts in (modprobe.get("options") or {}).items()))),
        vgpu=None if vgpu is None else model.VgpuHostSpec(
            manager=vgpu.get("manager", "ignore"), placement=vgpu.get("placement")),
        rollout=model.RolloutSpec(max_unavailable=_whole(rollout.get("maxUnavailable", 1)),
                                  reboot=rollout.get("reboot", "allowed")),
        location=location)


def _vm(raw: dict[str, Any], location: model.Location) -> model.VmSpec:
    pt = raw.get("passthrough")
    vgpu = raw.get("vgpu")
    return model.VmSpec(
        name=raw["name"],
        passthrough=None if pt is None else model.PassthroughSpec(
            host=pt["host"], devices=tuple(model.normalise_device_name(d) for d in pt["devices"])),
        vgpu=None if vgpu is None else model.VgpuSpec(
            type=vgpu["type"], instances=_whole(vgpu.get("instances", 1)),
            secondary_display=vgpu.get("secondaryDisplay", "vnc"),
            driver_params=vgpu.get("driverParams"), console=vgpu.get("console", "addVnc")),
        restart=raw.get("restart", "whenDown"),
        location=location)
