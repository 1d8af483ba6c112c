"""Checks that need the whole spec but no engine: names, claims, contradictions, safety of access.

They run on the loaded documents even where the schema found problems, so every issue shows up in
one run; each check therefore looks at a value only when it has the expected shape.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reconciler.errors import SpecIssue
from reconciler.spec.fleetref import builtin_fleets, is_fleet_path
from reconciler.spec.load import SpecDocument, SpecPath
from reconciler.spec.model import normalise_device_name
from reconciler.spec.patterns import DEVICE_NAME


@dataclass(frozen=True)
class _Seen:
    doc: SpecDocument
    path: SpecPath

    def where(self) -> str:
        m = self.doc.mark(self.path, prefer_key=True)
        return f"{self.doc.file}:{m.line}"


def check_documents(docs: Sequence[SpecDocument]) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    issues.extend(_engine_once(docs))
    issues.extend(_host_access_once(docs))
    issues.extend(_prune_once(docs))
    issues.extend(_unique_names(docs, "hostProfiles", "host profile"))
    issues.extend(_unique_names(docs, "vms", "VM"))
    issues.extend(_device_claims(docs))
    for doc in docs:
        issues.extend(_engine_access(doc))
        issues.extend(_profiles(doc))
        issues.extend(_vms(doc))
    return issues


def _items(doc: SpecDocument, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    values = doc.data.get(key)
    if isinstance(values, list):
        for i, item in enumerate(values):
            if isinstance(item, dict):
                yield i, item


def _engine_once(docs: Sequence[SpecDocument]) -> Iterator[SpecIssue]:
    first: _Seen | None = None
    for doc in docs:
        if "engine" not in doc.data:
            continue
        if first is None:
            first = _Seen(doc, ("engine",))
        else:
            yield doc.issue(("engine",), f"engine is already given at {first.where()}; give it "
                                         "in exactly one spec file", prefer_key=True)
    if first is None and docs:
        yield SpecIssue(docs[0].file, 1, 1, "engine",
                        "no spec file gives 'engine' (how to reach the engine, or {lab: {fleet: "
                        "demo}})")


def _host_access_once(docs: Sequence[SpecDocument]) -> Iterator[SpecIssue]:
    first: _Seen | None = None
    for doc in docs:
        if "hostAccess" not in doc.data:
            continue
        if first is None:
            first = _Seen(doc, ("hostAccess",))
        else:
            yield doc.issue(("hostAccess",), f"hostAccess is already given at {first.where()}; "
                                             "give it in at most one spec file", prefer_key=True)


def _prune_once(docs: Sequence[SpecDocument]) -> Iterator[SpecIssue]:
    first: _Seen | None = None
    for doc in docs:
        if "prune" not in doc.data:
            continue
        if first is None:
            first = _Seen(doc, ("prune",))
        else:
            yield doc.issue(("prune",), f"prune is already given at {first.where()}; give it "
                                        "in at most one spec file", prefer_key=True)


def _unique_names(docs: Sequence[SpecDocument], key: str, what: str) -> Iterator[SpecIssue]:
    first: dict[str, _Seen] = {}
    for doc in docs:
        for i, item in _items(doc, key):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            path = (key, i, "name")
            if name in first:
                yield doc.issue(path, f"{what} '{name}' is already defined at "
                                      f"{first[name].where()}")
            else:
                first[name] = _Seen(doc, path)


def _device_claims(docs: Sequence[SpecDocument]) -> Iterator[SpecIssue]:
    claimed: dict[tuple[str, str], tuple[str, _Seen]] = {}
    for doc in docs:
        for i, vm in _items(doc, "vms"):
            pt = vm.get("passthrough")
            if not isinstance(pt, dict) or not isinstance(pt.get("host"), str):
                continue
            devices = pt.get("devices")
            if not isinstance(devices, list):
                continue
            name = vm.get("name")
            vm_name = name if isinstance(name, str) else f"vms[{i}]"
            for j, device in enumerate(devices):
                if not isinstance(device, str) or not DEVICE_NAME.fullmatch(device):
                    continue
                claim = (pt["host"], normalise_device_name(device))
                path = ("vms", i, "passthrough", "devices", j)
                if claim in claimed:
                    owner, seen = claimed[claim]
                    who = "this VM" if owner == vm_name else f"VM '{owner}'"
                    yield doc.issue(path, f"device {claim[1]} on host {claim[0]} is already "
                                          f"claimed by {who} at {seen.where()}")
                else:
                    claimed[claim] = (vm_name, _Seen(doc, path))


def _engine_access(doc: SpecDocument) -> Iterator[SpecIssue]:
    engine = doc.data.get("engine")
    if not isinstance(engine, dict):
        return
    if "password" in engine:
        yield doc.issue(("engine", "password"), "inline passwords are not allowed: use "
                                                "passwordFrom: {env: ...} or {file: ...}",
                        prefer_key=True)
    if "lab" in engine:
        yield from _lab_fleet(doc, engine["lab"])
        return
    insecure = engine.get("insecure") is True
    url = engine.get("url")
    if isinstance(url, str) and url.lower().startswith("http://") and not insecure:
        yield doc.issue(("engine", "url"), "http:// sends the password in clear text: use "
                                           "https:// or set insecure: true")
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        problem = _api_url_problem(url)
        if problem:
            yield doc.issue(("engine", "url"), problem)
    if insecure and "caFile" in engine:
        yield doc.issue(("engine", "insecure"), "insecure: true turns TLS verification off, so "
                                                "caFile would be ignored: remove one of them",
                        prefer_key=True)
    if "url" in engine and "caFile" not in engine and not insecure:
        yield doc.issue(("engine",), "missing 'caFile': TLS is verified against a CA file "
                                     "(set insecure: true to skip verification)", prefer_key=True)


def _api_url_problem(url: str) -> str | None:
    """The SDK appends /hosts, /vms ... to the URL: without the API path every call is a 404."""
    try:
        parts = urlsplit(url)
    except ValueError as err:   # e.g. a stray bracket in the host part
        return f"'{url}' is not a valid URL ({err})"
    if parts.path.rstrip("/").endswith(_API_PATH):
        return None
    return f"the engine API URL ends in {_API_PATH}: {parts.scheme}://{parts.netloc}{_API_PATH}"


def _lab_fleet(doc: SpecDocument, lab: object) -> Iterator[SpecIssue]:
    """A fleet given by name must be a built-in one: a typo would only show up at `plan`."""
    fleet = lab.get("fleet") if isinstance(lab, dict) else None
    if not isinstance(fleet, str) or not fleet or is_fleet_path(fleet):
        return
    known = builtin_fleets()
    if fleet in known:
        return
    close = difflib.get_close_matches(fleet, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    yield doc.issue(("engine", "lab", "fleet"),
                    f"unknown lab fleet '{fleet}' ({hint}built-in fleets: {', '.join(known)}; "
                    "a fleet file is given by its path, e.g. fleets/big.yaml)")


_API_PATH = "/ovirt-engine/api"


# extraArgs keys owned by a managed kernel option, and the value that option writes.
_IOMMU_KEYS = ("intel_iommu", "amd_iommu")
_NOUVEAU_KEYS = ("rdblacklist", "rd.driver.blacklist", "modprobe.blacklist")


def _profiles(doc: SpecDocument) -> Iterator[SpecIssue]:
    for i, profile in _items(doc, "hostProfiles"):
        base: SpecPath = ("hostProfiles", i)
        selector = profile.get("selector")
        # An empty mapping is the schema's to report; `names: []` alone passes the schema.
        if isinstance(selector, dict) and selector and not selector.get("cluster") \
                and not selector.get("names"):
            yield doc.issue(base + ("selector",), "selector picks no hosts: give a cluster, "
                                                  "host names, or both")
        kernel = profile.get("kernel")
        if isinstance(kernel, dict):
            yield from _extra_args(doc, base + ("kernel",), kernel)


def _extra_args(doc: SpecDocument, base: SpecPath, kernel: dict[str, Any]) -> Iterator[SpecIssue]:
    extra = kernel.get("extraArgs")
    if not isinstance(extra, list):
        return
    seen: dict[str, int] = {}
    for j, arg in enumerate(extra):
        if not isinstance(arg, str):
            continue
        path = base + ("extraArgs", j)
        if arg in seen:
            yield doc.issue(path, f"'{arg}' is already listed (extraArgs[{seen[arg]}])")
            continue
        seen[arg] = j
        key, _, value = arg.partition("=")
        managed = _managed_by(kernel, key, value)
        if managed:
            yield doc.issue(path, f"'{arg}' is managed by kernel.{managed}: remove it from "
                                  "extraArgs")


def _managed_by(kernel: dict[str, Any], key: str, value: str) -> str | None:
    def managed(option: str) -> bool:
        return kernel.get(option) is not None and not isinstance(kernel.get(option), dict)

    if key in _IOMMU_KEYS and managed("iommu"):
        return "iommu"
    if key == "iommu" and managed("iommuPassthrough"):
        return "iommuPassthrough"
    if key in _NOUVEAU_KEYS and "nouveau" in value.split(",") and managed("blacklistNouveau"):
        return "blacklistNouveau"
    if key == "pci-stub.ids" and "pciStub" in kernel and kernel["pciStub"] is not None:
        return "pciStub"
    return None


def _vms(doc: SpecDocument) -> Iterator[SpecIssue]:
    for i, vm in _items(doc, "vms"):
        if "passthrough" not in vm and "vgpu" not in vm:
            yield doc.issue(("vms", i), "a VM needs passthrough, vgpu, or both")
