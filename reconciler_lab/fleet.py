"""Lab fleets: the seed of a lab engine, as plain mutable-free data.

A fleet file (deploy/lab/fleets/<name>.yaml) names clusters, hosts with their GPUs, and VMs. GPUs are
given by catalogue model (real PCI ids, functions, mdev types); `load_fleet` expands them into
`LabDevice`s. The engine model (`lab/engine.py`) copies these into its own mutable state.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabMdevType:
    name: str                      # nvidia-18
    human_readable_name: str       # GRID M60-2Q
    max_instances: int
    description: str               # "num_heads=4, frl_config=60, framebuffer=2048M, ..., max_instance=4"


@dataclass(frozen=True)
class LabDevice:
    """One host device as the engine lists it (a libvirt nodedev)."""

    name: str                      # pci_0000_86_00_0
    capability: str = "pci"
    iommu_group: int | None = None
    driver: str | None = None
    vendor_id: str | None = None   # "10de"
    vendor_name: str | None = None
    product_id: str | None = None
    product_name: str | None = None
    parent: str | None = None      # parent nodedev name (pci bridge / root)
    pci_class: str | None = None   # "0x030200"
    physical_function: str | None = None
    virtual_functions: int | None = None
    mdev_types: tuple[LabMdevType, ...] = ()


@dataclass(frozen=True)
class LabGpu:
    """One physical GPU of a host as the fleet file names it: catalogue model, PCI address of
    function 0 and its IOMMU group (the hardware grouping, shown only while the IOMMU is on)."""

    model: str                     # catalogue key: tesla-m60, tesla-t4, a2, l40s, h100-pcie, ...
    address: str                   # 0000:86:00.0
    iommu_group: int


@dataclass(frozen=True)
class LabCluster:
    name: str
    cpu_type: str | None           # ServerCPUList name, e.g. "Intel Cascadelake Server Family"
    architecture: str = "x86_64"
    version: str = "4.7"


@dataclass(frozen=True)
class LabHost:
    name: str
    cluster: str
    cpu_type: str | None           # engine-computed best ServerCPUList entry
    cpu_name: str                  # /proc/cpuinfo model name
    status: str = "up"
    base_cmdline: str = "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet"
    custom_kernel_cmdline: str = ""        # engine-configured
    booted_custom_args: str = ""           # custom args the host booted with (may differ: pending)
    vgpu_placement: str = "consolidated"
    os_release: str = "rhel9"
    devices: tuple[LabDevice, ...] = ()
    modules: tuple[str, ...] = ()          # modules loaded at boot besides the GPU driver logic
    services: tuple[tuple[str, str], ...] = ()   # (unit, state)
    modprobe_files: tuple[tuple[str, str], ...] = ()   # (file name in /etc/modprobe.d, content)
    behaviour: str = "normal"              # normal | never-returns | install-fails
    gpus: tuple[LabGpu, ...] = ()          # what `devices` was expanded from (empty: hand-built)
    reinstallation_required: bool = False  # engine flag: custom cmdline changed, not yet deployed


@dataclass(frozen=True)
class LabMdev:
    mdev_type: str
    nodisplay: bool = False
    driver_params: str | None = None


@dataclass(frozen=True)
class LabVm:
    name: str
    cluster: str
    status: str = "down"           # up | down
    host: str | None = None        # running on (status up)
    pinned_hosts: tuple[str, ...] = ()
    affinity: str = "migratable"
    graphics: tuple[str, ...] = ("vnc",)   # protocols: vnc, spice
    host_devices: tuple[str, ...] = ()     # device names explicitly attached
    mediated_devices: tuple[LabMdev, ...] = ()
    # VM custom properties as the engine stores them, e.g. (("mdev_type", "nvidia-18"),): the
    # pre-4.5 form of a vGPU that fleets upgraded from 4.3/4.4 carry (see reconciler_lab/legacy.py)
    custom_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LabFleet:
    name: str
    clusters: tuple[LabCluster, ...] = ()
    hosts: tuple[LabHost, ...] = ()
    vms: tuple[LabVm, ...] = ()
    username: str = "admin@internal"
    password: str = "lab-password"
    engine_version: str = "4.5.6"
    extra: dict = field(default_factory=dict, compare=False)


# ---- fleet files --------------------------------------------------------------------------------
# The catalogue and host model build on the dataclasses above, hence the late imports.
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from reconciler.errors import ReconcilerError  # noqa: E402
from reconciler_lab import catalogue  # noqa: E402
from reconciler_lab import hosts as labhosts  # noqa: E402
# deploy/lab/fleets/ in a checkout; an installed copy reads the copies a wheel ships.
from reconciler.spec.fleetref import BUILTIN_FLEETS_DIR as FLEETS_DIR  # noqa: E402

_DEFAULT_CPU_NAME = {"intel": "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
                     "amd": "AMD EPYC 7313 16-Core Processor"}
RHEL8_CMDLINE = ("BOOT_IMAGE=(hd0,msdos1)/vmlinuz-4.18.0-477.10.1.el8_8.x86_64 "
                 "root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap "
                 "rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet")
NOUVEAU_MODPROBE = ("nvidia-installer-disable-nouveau.conf",
                    "# generated by nvidia-installer\nblacklist nouveau\noptions nouveau modeset=0\n")


class FleetError(ReconcilerError):
    """A fleet name or file is unknown or invalid."""


def _yaml() -> Any:
    import yaml  # only fleet files need it; the emulated host commands stay quick to start
    return yaml


def load_fleet(name_or_path: str | Path) -> LabFleet:
    """A fleet by bare name (`demo` -> deploy/lab/fleets/demo.yaml) or by path."""
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if not (text_name.endswith((".yaml", ".yml")) or "/" in text_name):
        path = FLEETS_DIR / f"{text_name}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in FLEETS_DIR.glob("*.yaml"))
            raise FleetError(f"unknown lab fleet {text_name!r} (known: {', '.join(known)})")
    if not path.is_file():
        raise FleetError(f"lab fleet file {path} does not exist")
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(), Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FleetError(f"{where}: not valid YAML: {problem}") from None
    return fleet_from_dict(data, str(path))


def _take(data: Mapping[str, Any], where: str, required: tuple[str, ...],
          optional: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise FleetError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise FleetError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    missing = [k for k in required if k not in data]
    if missing:
        raise FleetError(f"{where}: missing key(s) {', '.join(missing)}")
    return dict(data)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FleetError(f"{where}: expected a list")
    return value


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(v, str) for v in items):
        raise FleetError(f"{where}: expected a list of strings")
    return tuple(items)


def expand_host(host: LabHost) -> LabHost:
    """`host` with `devices` expanded from its GPUs as the engine lists them in its current boot."""
    record = labhosts.record_for(host)
    return replace(host, devices=labhosts.devices_for(record, labhosts.initial_boot(host, record)))


def _device(data: Any, where: str) -> LabDevice:
    d = _take(data, where, ("name",), tuple(f for f in LabDevice.__dataclass_fields__
                                             if f != "name"))
    d["mdev_types"] = tuple(LabMdevType(**_take(t, f"{where}.mdev_types", (
        "name", "human_readable_name", "max_instances", "description"), ()))
        for t in _list(d.get("mdev_types"), where))
    return LabDevice(**d)


def fleet_from_dict(data: Any, source: str = "<fleet>") -> LabFleet:
    top = _take(data, source, ("name",), ("clusters", "hosts", "vms", "username", "password",
                                           "engineVersion", "extra"))
    clusters = []
    for i, c in enumerate(_list(top.get("clusters"), f"{source}: clusters")):
        c = _take(c, f"{source}: clusters[{i}]", ("name",), ("cpuType", "architecture",
                                                            "version"))
        clusters.append(LabCluster(name=str(c["name"]), cpu_type=c.get("cpuType"),
                                   architecture=c.get("architecture", "x86_64"),
                                   version=str(c.get("version", "4.7"))))
    by_cluster = {c.name: c for c in clusters}
    if len(by_cluster) != len(clusters):
        raise FleetError(f"{source}: cluster names must be unique")
    host_list = []
    expanded: dict[LabHost, tuple[LabDevice, ...]] = {}
    for i, h in enumerate(_list(top.get("hosts"), f"{source}: hosts")):
        where = f"{source}: hosts[{i}]"
        h = _take(h, where, ("name", "cluster"), (
            "cpuType", "cpuName", "status", "osRelease", "baseCmdline", "customKernelCmdline",
            "bootedCustomArgs", "vgpuPlacement", "vgpuManager", "services", "modprobe", "modules",
            "behaviour", "reinstallationRequired", "gpus", "devices"))
        where = f"{source}: host {h['name']}"
        cluster = by_cluster.get(h["cluster"])
        if cluster is None:
            raise FleetError(f"{where}: unknown cluster {h['cluster']!r}")
        services = dict(h.get("services") or {})
        if h.get("vgpuManager"):
            services.setdefault(labhosts.MANAGER_UNIT, "active")
        gpus = []
        for j, g in enumerate(_list(h.get("gpus"), where)):
            g = _take(g, f"{where}: gpus[{j}]", ("model", "address", "iommuGroup"), ())
            if g["model"] not in catalogue.MODELS:
                raise FleetError(f"{where}: gpus[{j}]: unknown GPU model {g['model']!r} "
                                 f"(known: {', '.join(sorted(catalogue.MODELS))})")
            if not _ADDRESS.fullmatch(str(g["address"])):
                raise FleetError(f"{where}: gpus[{j}]: bad PCI address {g['address']!r} "
                                 "(expected a quoted string DDDD:BB:DD.F; unquoted, YAML may "
                                 "read 0000:41:00.0 as a number)")
            gpus.append(LabGpu(g["model"], str(g["address"]).lower(), int(g["iommuGroup"])))
        os_release = h.get("osRelease", "rhel9")
        if os_release not in ("rhel8", "rhel9"):
            raise FleetError(f"{where}: osRelease must be rhel8 or rhel9")
        custom = str(h.get("customKernelCmdline", ""))
        booted = str(h.get("bootedCustomArgs", ""))
        host = LabHost(
            name=str(h["name"]), cluster=cluster.name,
            cpu_type=h.get("cpuType", cluster.cpu_type),
            cpu_name=h.get("cpuName") or _DEFAULT_CPU_NAME[
                "amd" if "AMD" in str(h.get("cpuType", cluster.cpu_type)) else "intel"],
            status=h.get("status", "up"),
            base_cmdline=h.get("baseCmdline") or (RHEL8_CMDLINE if os_release == "rhel8"
                                                  else LabHost.base_cmdline),
            custom_kernel_cmdline=custom, booted_custom_args=booted,
            vgpu_placement=h.get("vgpuPlacement", "consolidated"), os_release=os_release,
            modules=_str_tuple(h.get("modules"), where),
            services=tuple(sorted(services.items())),
            modprobe_files=tuple(sorted((str(k), str(v))
                                        for k, v in (h.get("modprobe") or {}).items())),
            behaviour=h.get("behaviour", "normal"), gpus=tuple(gpus),
            reinstallation_required=bool(h.get("reinstallationRequired",
                                               custom.split() != booted.split())))
        if "devices" in h:
            host = replace(host, devices=tuple(_device(d, f"{where}: devices")
                                               for d in _list(h["devices"], where)))
        else:
            # The expansion does not depend on the name: generated fleets repeat a few kinds.
            key = replace(host, name="")
            if key not in expanded:
                expanded[key] = expand_host(host).devices
            host = replace(host, devices=expanded[key])
        host_list.append(host)
    host_names = {h.name for h in host_list}
    if len(host_names) != len(host_list):
        raise FleetError(f"{source}: host names must be unique")
    vms = []
    for i, v in enumerate(_list(top.get("vms"), f"{source}: vms")):
        v = _take(v, f"{source}: vms[{i}]", ("name", "cluster"), (
            "status", "host", "pinnedHosts", "affinity", "graphics", "hostDevices",
            "mediatedDevices", "customProperties"))
        where = f"{source}: vm {v['name']}"
        if v["cluster"] not in by_cluster:
            raise FleetError(f"{where}: unknown cluster {v['cluster']!r}")
        for ref in [v.get("host")] + list(v.get("pinnedHosts") or []):
            if ref is not None and ref not in host_names:
                raise FleetError(f"{where}: unknown host {ref!r}")
        status = v.get("status", "down")
        if status == "up" and not v.get("host"):
            raise FleetError(f"{where}: a VM that is up needs its host")
        mdevs = []
        for j, m in enumerate(_list(v.get("mediatedDevices"), where)):
            m = _take(m, f"{where}: mediatedDevices[{j}]", ("type",), ("nodisplay",
                                                                       "driverParams"))
            mdevs.append(LabMdev(str(m["type"]), bool(m.get("nodisplay", False)),
                                 m.get("driverParams")))
        vms.append(LabVm(
            name=str(v["name"]), cluster=v["cluster"], status=status, host=v.get("host"),
            pinned_hosts=_str_tuple(v.get("pinnedHosts"), where),
            affinity=v.get("affinity", "migratable"),
            graphics=_str_tuple(v.get("graphics", ["vnc"]), where),
            host_devices=_str_tuple(v.get("hostDevices"), where), mediated_devices=tuple(mdevs),
            custom_properties=_custom_properties(v.get("customProperties"), where)))
    if len({v.name for v in vms}) != len(vms):
        raise FleetError(f"{source}: VM names must be unique")
    return LabFleet(name=str(top["name"]), clusters=tuple(clusters), hosts=tuple(host_list),
                    vms=tuple(vms), username=top.get("username", "admin@internal"),
                    password=top.get("password", "lab-password"),
                    engine_version=str(top.get("engineVersion", "4.5.6")),
                    extra=dict(top.get("extra") or {}))


def _custom_properties(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise FleetError(f"{where}: customProperties must map names to values")
    return tuple((k, str(v)) for k, v in value.items())


_ADDRESS = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")


def fleet_to_dict(fleet: LabFleet) -> dict[str, Any]:
    hosts_out = []
    # The expansion does not depend on the host's name: compare once per kind of host.
    expanded: dict[LabHost, tuple[LabDevice, ...]] = {}
    for h in fleet.hosts:
        d: dict[str, Any] = {
            "name": h.name, "cluster": h.cluster, "cpuType": h.cpu_type, "cpuName": h.cpu_name,
            "status": h.status, "osRelease": h.os_release, "baseCmdline": h.base_cmdline,
            "customKernelCmdline": h.custom_kernel_cmdline,
            "bootedCustomArgs": h.booted_custom_args, "vgpuPlacement": h.vgpu_placement,
            "services": dict(h.services), "modprobe": dict(h.modprobe_files),
            "modules": list(h.modules), "behaviour": h.behaviour,
            "reinstallationRequired": h.reinstallation_required,
            "gpus": [{"model": g.model, "address": g.address, "iommuGroup": g.iommu_group}
                     for g in h.gpus]}
        key = replace(h, name="", devices=())
        if h.gpus and key not in expanded:
            expanded[key] = expand_host(h).devices
        if not h.gpus or expanded[key] != h.devices:
            d["devices"] = [_device_dict(x) for x in h.devices]
        hosts_out.append(d)
    return {
        "name": fleet.name, "engineVersion": fleet.engine_version, "username": fleet.username,
        "password": fleet.password,
        "clusters": [{"name": c.name, "cpuType": c.cpu_type, "architecture": c.architecture,
                      "version": c.version} for c in fleet.clusters],
        "hosts": hosts_out,
        "vms": [_vm_dict(v) for v in fleet.vms],
        "extra": dict(fleet.extra),
    }


def _vm_dict(v: LabVm) -> dict[str, Any]:
    """A VM with its non-default fields only (large generated fleets stay small on disk)."""
    out: dict[str, Any] = {"name": v.name, "cluster": v.cluster}
    if v.status != "down":
        out["status"] = v.status
    if v.host is not None:
        out["host"] = v.host
    if v.pinned_hosts:
        out["pinnedHosts"] = list(v.pinned_hosts)
    if v.affinity != "migratable":
        out["affinity"] = v.affinity
    if v.graphics != ("vnc",):
        out["graphics"] = list(v.graphics)
    if v.host_devices:
        out["hostDevices"] = list(v.host_devices)
    if v.mediated_devices:
        out["mediatedDevices"] = [
            {"type": m.mdev_type, **({"nodisplay": True} if m.nodisplay else {}),
             **({"driverParams": m.driver_params} if m.driver_params is not None else {})}
            for m in v.mediated_devices]
    if v.custom_properties:
        out["customProperties"] = dict(v.custom_properties)
    return out


def _device_dict(d: LabDevice) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(d, k) for k in LabDevice.__dataclass_fields__
                           if k != "mdev_types"}
    out["mdev_types"] = [{"name": t.name, "human_readable_name": t.human_readable_name,
                          "max_instances": t.max_instances, "description": t.description}
                         for t in d.mdev_types]
    return out


def dump_fleet(fleet: LabFleet) -> str:
    """YAML that `load_fleet` reads back to an equal fleet."""
    yaml = _yaml()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(fleet_to_dict(fleet), Dumper=dumper, sort_keys=False, width=100))


# ---- generator ----------------------------------------------------------------------------------

_GEN_BUSES = tuple(b for b in range(0x03, 0xff, 0x0b) if b not in (0x18,))
_VGPU_TYPES = {"tesla-m60": ("nvidia-18", "nvidia-15", "nvidia-20"),
               "tesla-t4": ("nvidia-231", "nvidia-223"), "a2": ("nvidia-745", "nvidia-746")}
_HOST_KINDS = (("tesla-m60", 0.3), ("tesla-t4", 0.3), ("a2", 0.15), ("passthrough", 0.25))


def _gen_gpus(kind: str, count: int, group_base: int) -> tuple[LabGpu, ...]:
    gpus = []
    for i in range(count):
        model = kind if kind != "passthrough" else ("h100-pcie" if i % 2 == 0 else "quadro-k4200")
        bus = _GEN_BUSES[i % len(_GEN_BUSES)] + i // len(_GEN_BUSES)
        gpus.append(LabGpu(model, f"0000:{bus:02x}:00.0", group_base + i))
    return tuple(gpus)


class _Gpu:
    """Capacity left on one physical GPU while the generator places running VMs."""

    __slots__ = ("name", "max", "type", "used", "claimed")

    def __init__(self, name: str, max_instances: dict[str, int]) -> None:
        self.name = name
        self.max = max_instances
        self.type: str | None = None
        self.used = 0
        self.claimed = False

    def room(self, mdev_type: str) -> int:
        if self.claimed or (self.type not in (None, mdev_type)):
            return 0
        return self.max[mdev_type] - self.used


def generate_fleet(hosts: int, gpus_per_host: int, vms: int, seed: int = 0) -> LabFleet:
    """A synthetic fleet: clusters of ~50 hosts (the second of every four AMD), a mix of M60 / T4 / A2 vGPU
    hosts and H100 / Quadro passthrough hosts, and VMs with vGPU, passthrough or no GPU. Running
    VMs are placed first-fit in VM order over GPUs in address order, one vGPU type per GPU, so
    every running vGPU fits; a VM that does not fit stays down."""
    rng = random.Random(seed)
    n_clusters = max(1, math.ceil(hosts / 50))
    clusters = tuple(
        LabCluster(f"gen-{i:03d}", "Secure AMD EPYC" if i % 4 == 1
                   else "Intel Cascadelake Server Family") for i in range(n_clusters))
    kinds = [k for k, _ in _HOST_KINDS]
    weights = [w for _, w in _HOST_KINDS]
    # Hosts of one kind share hardware layout and boot state, so their device lists are equal:
    # expand each combination once.
    templates: dict[tuple[Any, ...], LabHost] = {}
    host_list: list[LabHost] = []
    gpu_state: dict[str, list[_Gpu]] = {}
    host_kind: dict[str, str] = {}
    for i in range(hosts):
        cluster = clusters[i * n_clusters // max(hosts, 1)]
        kind = rng.choices(kinds, weights)[0]
        amd = "AMD" in (cluster.cpu_type or "")
        ready = rng.random() < 0.9
        rhel8 = rng.random() < 0.1
        key = (kind, amd, ready, rhel8)
        template = templates.get(key)
        if template is None:
            iommu = "amd_iommu=on" if amd else "intel_iommu=on"
            vgpu = kind != "passthrough"
            template = expand_host(LabHost(
                name="template", cluster="", cpu_type=cluster.cpu_type,
                cpu_name=_DEFAULT_CPU_NAME["amd" if amd else "intel"],
                base_cmdline=RHEL8_CMDLINE if rhel8 else LabHost.base_cmdline,
                custom_kernel_cmdline=f"{iommu} rdblacklist=nouveau",
                booted_custom_args=f"{iommu} rdblacklist=nouveau" if ready else "",
                os_release="rhel8" if rhel8 else "rhel9",
                services=((labhosts.MANAGER_UNIT, "active"),) if vgpu else (),
                modprobe_files=(NOUVEAU_MODPROBE,) if vgpu else (),
                gpus=_gen_gpus(kind, gpus_per_host, 40), reinstallation_required=not ready))
            templates[key] = template
        host = replace(template, name=f"gen-h{i:05d}", cluster=cluster.name,
                       cpu_type=cluster.cpu_type)
        host_list.append(host)
        host_kind[host.name] = kind
        gpu_state[host.name] = [
            _Gpu(labhosts.pci_name(g.address),
                 {t.name: t.max_instances for t in catalogue.model(g.model).mdev_types})
            for g in host.gpus]
    by_cluster: dict[str, list[LabHost]] = {}
    for h in host_list:
        by_cluster.setdefault(h.cluster, []).append(h)
    vm_list = []
    for i in range(vms if hosts else 0):
        cluster = clusters[i % n_clusters]
        members = by_cluster[cluster.name]
        host = members[rng.randrange(len(members))]
        kind = host_kind[host.name]
        want_up = rng.random() < 0.6
        roll = rng.random()
        name = f"gen-vm{i:05d}"
        graphics = rng.choice((("vnc",), ("vnc",), ("vnc", "spice"), ("spice",)))
        if kind != "passthrough" and roll < 0.6:
            mdev_type = rng.choice(_VGPU_TYPES[kind])
            count = 2 if rng.random() < 0.1 else 1
            placed = want_up and _place_vgpu(gpu_state[host.name], mdev_type, count)
            vm_list.append(LabVm(name, cluster.name, "up" if placed else "down",
                                 host.name if placed else None, graphics=graphics,
                                 mediated_devices=(LabMdev(mdev_type),) * count))
        elif kind == "passthrough" and roll < 0.5:
            free = [g for g in gpu_state[host.name] if not g.claimed]
            if not free:
                vm_list.append(LabVm(name, cluster.name, graphics=graphics))
                continue
            gpu = free[0]
            gpu.claimed = True
            up = want_up and host.booted_custom_args != ""
            vm_list.append(LabVm(name, cluster.name, "up" if up else "down",
                                 host.name if up else None, pinned_hosts=(host.name,),
                                 affinity="pinned", graphics=graphics,
                                 host_devices=(gpu.name,)))
        else:
            vm_list.append(LabVm(name, cluster.name, "up" if want_up else "down",
                                 host.name if want_up else None, graphics=graphics))
    return LabFleet(name=f"generated-{hosts}x{gpus_per_host}-{vms}-s{seed}", clusters=clusters,
                    hosts=tuple(host_list), vms=tuple(vm_list))


def _place_vgpu(gpus: list[_Gpu], mdev_type: str, count: int) -> bool:
    """First fit: all instances of one VM on GPUs in address order, each GPU one type."""
    plan: list[tuple[_Gpu, int]] = []
    left = count
    for g in gpus:
        if left == 0:
            break
        take = min(g.room(mdev_type), left)
        if take > 0:
            plan.append((g, take))
            left -= take
    if left:
        return False
    for g, take in plan:
        g.type = mdev_type
        g.used += take
    return True

