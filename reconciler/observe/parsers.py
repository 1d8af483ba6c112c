"""One pure parser per host fact, written against the real output formats (shared host-facts notes).

Every parser takes text and returns facts, or raises ParseError; the probe turns a ParseError into
an unknown sub-fact, never into a crash.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

from reconciler.errors import ParseError
from reconciler.model.facts import BootEntry, MdevParentType, NvidiaGpu, NvidiaSmiSummary
# modprobe.d syntax and precedence live in the pure model, shared with the apply oracle; they are
# re-exported here so that every host-output parser is found in one place.
from reconciler.model.modprobe import (MODPROBE_DIRS, effective_modprobe_files, modprobe_commands,
                                       module_name, parse_modprobe_conf)


# ---- kernel command line and boot entries --------------------------------------------------------

def parse_proc_cmdline(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ParseError(f"/proc/cmdline: expected one line, got {len(lines)}")
    return lines[0].strip()


def parse_etc_kernel_cmdline(text: str) -> str:
    """/etc/kernel/cmdline: the args new kernels get on RHEL 9 (one line; newlines are spaces)."""
    return " ".join(text.split())


def parse_grubenv(text: str) -> dict[str, str]:
    """grubenv: `name=value` lines after a `# GRUB Environment Block` header, padded with '#'."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ParseError(f"grubenv: unexpected line {line[:80]!r}")
        name, value = line.split("=", 1)
        env[name] = value
    return env


_VAR_RE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_vars(options: str, env: Mapping[str, str]) -> str:
    """Expand `$kernelopts` / `$tuned_params` the way GRUB does; unknown variables become empty."""
    expanded = _VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), options)
    return " ".join(expanded.split())


def parse_bls_entry(entry_id: str, text: str, grubenv: Mapping[str, str] | None = None) -> BootEntry:
    """A BLS snippet (boot/loader/entries/<id>.conf): `key value` lines; `options` may repeat."""
    kernel: str | None = None
    options: list[str] = []
    seen = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not re.fullmatch(r"[a-z_]+", key):
            raise ParseError(f"BLS entry {entry_id}: unexpected line {line[:80]!r}")
        seen = True
        if key == "linux":
            kernel = value.strip()
        elif key == "options":
            options.append(value.strip())
    if not seen:
        raise ParseError(f"BLS entry {entry_id}: empty")
    return BootEntry(id=entry_id, kernel=kernel,
                     options=expand_vars(" ".join(options), grubenv or {}))


def parse_grubby_info(text: str, grubenv: Mapping[str, str] | None = None) -> tuple[BootEntry, ...]:
    """`grubby --info=ALL`: `index=N` starts an entry; values may be double-quoted. Variables left
    in `args` ($tuned_params) are expanded from grubenv as GRUB would."""
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ParseError(f"grubby --info: unexpected line {line[:80]!r}")
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "index":
            entries.append({})
        if not entries:
            raise ParseError("grubby --info: output does not start with index=")
        entries[-1][key] = value
    result = []
    for e in entries:
        kernel = e.get("kernel")
        result.append(BootEntry(id=e.get("id") or f"index-{e['index']}", kernel=kernel,
                                options=expand_vars(e.get("args", ""), grubenv or {})))
    return tuple(result)


def parse_default_grub(text: str) -> str | None:
    """GRUB_CMDLINE_LINUX from /etc/default/grub (a shell fragment; the last assignment wins)."""
    found: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("GRUB_CMDLINE_LINUX="):
            continue
        try:
            words = shlex.split(stripped[len("GRUB_CMDLINE_LINUX="):], comments=True)
        except ValueError as exc:
            raise ParseError(f"/etc/default/grub: GRUB_CMDLINE_LINUX: {exc}") from exc
        found = " ".join(" ".join(words).split())
    return found


# ---- modprobe.d and the initramfs ----------------------------------------------------------------

def parse_softdeps(text: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """`softdep <m> pre: a b post: c` lines as (module, pre, post)."""
    result = []
    for words in modprobe_commands(text):
        if words[0] != "softdep" or len(words) < 2:
            continue
        pre: list[str] = []
        post: list[str] = []
        bucket: list[str] | None = None
        for w in words[2:]:
            if w == "pre:":
                bucket = pre
            elif w == "post:":
                bucket = post
            elif bucket is not None:
                bucket.append(module_name(w))
        result.append((module_name(words[1]), tuple(pre), tuple(post)))
    return tuple(result)


_LSINITRD_RE = re.compile(r"^[-dlcbps][-rwxsStT]{9}\S*\s+\d+\s+\S+\s+\S+\s+\d+\s+"
                          r"\w{3}\s+\d+\s+[\d:]+\s+(\S+?)(?: -> \S+)?$")


def parse_lsinitrd_listing(text: str) -> tuple[str, ...]:
    """Paths of modprobe.d config files in an `lsinitrd <image>` listing (ls -l style lines)."""
    paths = []
    for line in text.splitlines():
        m = _LSINITRD_RE.match(line.strip())
        if not m:
            continue
        path = m.group(1)
        if re.fullmatch(r"(usr/)?(lib|etc)/modprobe\.d/[^/]+\.conf", path):
            paths.append(path)
    return tuple(paths)


def initramfs_blacklist(contents: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Modules the initramfs's modprobe.d files block (blacklist or install <m> /bin/false)."""
    blocked: set[str] = set()
    for path, text in contents:
        conf = parse_modprobe_conf(path, text)
        blocked.update(conf.blacklist)
        blocked.update(conf.install_false)
    return tuple(sorted(blocked))


# ---- modules and services ------------------------------------------------------------------------

def parse_proc_modules(text: str) -> tuple[str, ...]:
    """/proc/modules: `name size refcount deps state address` per line."""
    names = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or not parts[1].isdigit():
            raise ParseError(f"/proc/modules: unexpected line {line[:80]!r}")
        names.append(parts[0])
    return tuple(names)


def parse_lsmod(text: str) -> tuple[str, ...]:
    """`lsmod`: a `Module Size Used by` header, then `name size refcount [holders]`."""
    names = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or (parts[0] == "Module" and "Size" in parts):
            continue
        if len(parts) < 3 or not parts[1].isdigit():
            raise ParseError(f"lsmod: unexpected line {line[:80]!r}")
        names.append(parts[0])
    return tuple(names)


_ACTIVE_STATES = frozenset({"active", "inactive", "failed", "activating", "deactivating",
                            "reloading", "maintenance", "refreshing", "unknown"})


def parse_systemctl_is_active(text: str) -> str:
    word = text.strip()
    if word not in _ACTIVE_STATES:
        raise ParseError(f"systemctl is-active: unexpected output {word[:80]!r}")
    return word


def parse_systemctl_show(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise ParseError(f"systemctl show: unexpected line {line[:80]!r}")
        key, value = line.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def service_state(is_active: str | None, show: str | None) -> str:
    """One word for a unit: `not-found` when systemd has no such unit, else its active state."""
    if show:
        props = parse_systemctl_show(show)
        if props.get("LoadState") == "not-found":
            return "not-found"
        if props.get("ActiveState"):
            return parse_systemctl_is_active(props["ActiveState"])
    if is_active is None:
        raise ParseError("systemctl: no output")
    return parse_systemctl_is_active(is_active)


# ---- sysfs -------------------------------------------------------------------------------------

def parse_sysfs_int(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError as exc:
        raise ParseError(f"sysfs: not a decimal number: {text.strip()[:40]!r}") from exc


def parse_sysfs_hex(text: str, width: int | None = None) -> str:
    """`0x10de\\n` -> `0x10de` (validated, lower case)."""
    value = text.strip().lower()
    digits = "{%d}" % width if width else "+"
    if not re.fullmatch(r"0x[0-9a-f]" + digits, value):
        raise ParseError(f"sysfs: not a hex value: {value[:40]!r}")
    return value


def parse_mdev_description(text: str) -> dict[str, str]:
    """NVIDIA type description: `num_heads=4, frl_config=60, framebuffer=2048M, ..., max_instance=4`."""
    fields: dict[str, str] = {}
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ParseError(f"mdev description: unexpected field {part[:40]!r}")
        key, value = part.split("=", 1)
        fields[key.strip()] = value.strip()
    return fields


def mdev_max_instances(description: str | None) -> int | None:
    if not description:
        return None
    value = parse_mdev_description(description).get("max_instance")
    return parse_sysfs_int(value) if value is not None else None


def parse_mdev_type(parent: str, name: str, attrs: Mapping[str, str]) -> MdevParentType:
    """One mdev_supported_types/<name>/ directory (attribute file name -> content)."""
    available = attrs.get("available_instances")
    description = attrs.get("description")
    if description is not None:
        parse_mdev_description(description)     # validates the format
    return MdevParentType(
        parent=parent, name=name,
        human_name=attrs["name"].strip() if attrs.get("name") else None,
        description=description.strip() if description else None,
        available_instances=parse_sysfs_int(available) if available is not None else None,
        device_api=attrs["device_api"].strip() if attrs.get("device_api") else None)


_CREATABLE_RE = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")


def parse_creatable_vgpu_types(text: str) -> tuple[tuple[int, str], ...]:
    """nvidia/creatable_vgpu_types: header `ID    : vGPU Name`, then `1148  : NVIDIA L40S-2Q`."""
    types = []
    for line in text.splitlines():
        if not line.strip() or re.match(r"^\s*ID\s*:", line):
            continue
        m = _CREATABLE_RE.match(line)
        if not m:
            raise ParseError(f"creatable_vgpu_types: unexpected line {line[:80]!r}")
        types.append((int(m.group(1)), m.group(2)))
    return tuple(types)


# ---- nvidia-smi ----------------------------------------------------------------------------------

def _optional_int(value: str) -> int | None:
    value = value.strip()
    if value in {"", "N/A", "[N/A]", "[Not Supported]", "Not Supported"}:
        return None
    try:
        return int(float(value))
    except ValueError as exc:
        raise ParseError(f"nvidia-smi: not a number: {value[:40]!r}") from exc


def parse_nvidia_smi_csv(text: str) -> NvidiaSmiSummary:
    """`--query-gpu=pci.bus_id,name,driver_version,memory.total,memory.used,utilization.gpu
    --format=csv,noheader,nounits`: one comma+space separated line per GPU."""
    gpus = []
    versions: set[str] = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 6 or not re.fullmatch(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]",
                                             cols[0]):
            raise ParseError(f"nvidia-smi csv: unexpected line {line[:80]!r}")
        bus_id, name, version, total, used, util = cols
        versions.add(version)
        gpus.append(NvidiaGpu(bus_id=bus_id, name=name, memory_total_mib=_optional_int(total),
                              memory_used_mib=_optional_int(used),
                              utilization_percent=_optional_int(util)))
    if len(versions) > 1:
        raise ParseError(f"nvidia-smi csv: several driver versions {sorted(versions)}")
    return NvidiaSmiSummary(driver_version=versions.pop() if versions else None, gpus=tuple(gpus))


_ACTIVE_VGPUS_RE = re.compile(r"^\s*Active vGPUs\s*:\s*(\d+)\s*$")
_VGPU_ROW_RE = re.compile(r"^\|\s+\d{6,}\s+\S")


def parse_nvidia_smi_vgpu(text: str) -> int:
    """Active vGPUs from `nvidia-smi vgpu -q` (sum of `Active vGPUs`) or the `nvidia-smi vgpu`
    table (one row per vGPU, starting with its numeric vGPU ID)."""
    if "No supported devices in vGPU mode" in text:
        return 0
    counts = [int(m.group(1)) for m in map(_ACTIVE_VGPUS_RE.match, text.splitlines()) if m]
    if counts:
        return sum(counts)
    if "vGPU ID" in text and "|" in text:
        return sum(1 for line in text.splitlines() if _VGPU_ROW_RE.match(line))
    raise ParseError("nvidia-smi vgpu: neither a -q report nor the vGPU table")
