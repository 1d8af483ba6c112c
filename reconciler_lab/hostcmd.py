"""Emulated host commands of a lab host: `python -m reconciler_lab.hostcmd <cmd> [args...]`.

Each lab root has tiny wrappers at `<root>/usr/bin/<cmd>` that exec this module; the command acts
on the tree named by the HOST_ROOT environment variable and refuses to run without it. Output
formats and exit codes follow the real tools (host-facts §§ 1-7) for the options we use.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import sys
import uuid as uuidlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from reconciler_lab import catalogue, hosts

Out = TextIO


class Usage(Exception):
    """Bad command line: message for stderr, exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _opts(argv: Sequence[str], with_value: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """GNU-style options: `--opt=v`, `--opt v`, `-o v`; flags map to ['']."""
    opts: dict[str, list[str]] = {}
    pos: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            opts.setdefault(key, []).append(value)
        elif arg in with_value:
            try:
                opts.setdefault(arg, []).append(next(it))
            except StopIteration:
                raise Usage(f"option '{arg}' requires an argument") from None
        elif arg.startswith("-") and arg != "-":
            opts.setdefault(arg, []).append("")
        else:
            pos.append(arg)
    return opts, pos


def _host_path(root: Path, path: str) -> Path:
    """A host-absolute path inside the root; never outside it."""
    p = (root / path.lstrip("/")).resolve()
    if not p.is_relative_to(root.resolve()):
        raise Usage(f"{path}: outside the host")
    return p


# ---- dracut / lsinitrd --------------------------------------------------------------------------

_DRACUT_VERSION = {"rhel9": "057-53.git20240104.el9", "rhel8": "049-223.git20230119.el8"}
_DRACUT_MODULES = ("bash", "systemd", "systemd-initrd", "nss-softokn", "i18n", "drm", "plymouth",
                   "prefixdevname", "dm", "kernel-modules", "kernel-modules-extra", "lvm",
                   "qemu", "resume", "rootfs-block", "terminfo", "udev-rules", "dracut-systemd",
                   "usrmount", "base", "fs-lib", "shutdown")


def cmd_dracut(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    opts, pos = _opts(argv, {"--kver", "-a", "--add", "-o", "--omit", "-c", "--conf"})
    force = "-f" in opts or "--force" in opts
    record = hosts.load_record(root)
    if "--regenerate-all" in opts:
        kvers = list(record.kernels)
    else:
        kver = (opts.get("--kver") or [pos[1] if len(pos) > 1 else hosts.running_kernel(root)])[-1]
        kvers = [kver]
    if pos and "--regenerate-all" not in opts and pos[0] != f"/boot/initramfs-{kvers[0]}.img":
        raise Usage(f"dracut: only /boot/initramfs-<kver>.img images are supported here: {pos[0]}")
    for kver in kvers:
        if not (root / f"boot/vmlinuz-{kver}").exists():
            err.write(f"dracut: Cannot find module directory /lib/modules/{kver}/\n"
                      "dracut: and --no-kernel was not specified\n")
            return 1
        image = hosts.initramfs_path(root, kver)
        if image.exists() and not force:
            err.write(f"dracut: Will not override existing initramfs (/boot/initramfs-{kver}.img)"
                      " without --force\n")
            return 1
        hosts.build_initramfs(root, kver, list(argv))
    return 0


def _ls_line(mode: str, size: int, path: str, links: int = 1) -> str:
    return f"{mode} {links:>3} {'root':<8} {'root':<8} {size:>8} Jan  1 00:00 {path}\n"


def cmd_lsinitrd(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    opts, pos = _opts(argv, {"-f", "--file", "-k", "--kver"})
    kver = (opts.get("-k") or opts.get("--kver") or [hosts.running_kernel(root)])[-1]
    image_arg = pos[0] if pos else f"/boot/initramfs-{kver}.img"
    image = _host_path(root, image_arg)
    if not image.exists():
        err.write(f"No <{image_arg}> with initramfs found.\n")
        return 1
    try:
        data = hosts.read_initramfs(image)
    except (ValueError, json.JSONDecodeError):
        err.write(f"{image_arg}: unknown image format\n")
        return 1
    files = data["files"]
    assert isinstance(files, dict)
    wanted = (opts.get("-f") or []) + (opts.get("--file") or []) + pos[1:]
    if wanted:
        for name in wanted:
            text = files.get(name.lstrip("/"))
            if text is not None:
                out.write(text)
        return 0
    record = hosts.load_record(root)
    ikver = str(data["kver"])
    dracut_args = data["dracut_args"]
    assert isinstance(dracut_args, list)
    args = " ".join(f"'{a}'" if not a.startswith("-") else a for a in dracut_args)
    total = sum(len(t.encode()) for t in files.values()) + 34 * 1024 * 1024
    out.write(f"Image: {image_arg}: {total // (1024 * 1024)}M\n{'=' * 72}\n"
              f"Version: dracut-{_DRACUT_VERSION.get(record.os_release, _DRACUT_VERSION['rhel9'])}"
              f"\n\nArguments: {args}\n\ndracut modules:\n"
              + "".join(m + "\n" for m in _DRACUT_MODULES) + "=" * 72 + "\n")
    entries = [("drwxr-xr-x", 0, ".", 12), ("lrwxrwxrwx", 7, "bin -> usr/bin", 1),
               ("drwxr-xr-x", 0, "etc", 2), ("drwxr-xr-x", 0, "etc/modprobe.d", 2)]
    entries += [("-rw-r--r--", len(t.encode()), p, 1) for p, t in sorted(files.items())
                if p.startswith("etc/")]
    mods = f"usr/lib/modules/{ikver}/kernel/drivers"
    entries += [("drwxr-xr-x", 0, "usr/lib/modprobe.d", 2)]
    entries += [("-rw-r--r--", len(t.encode()), p, 1) for p, t in sorted(files.items())
                if p.startswith("usr/")]
    entries += [("-rw-r--r--", 1048576, f"{mods}/gpu/drm/nouveau/nouveau.ko.xz", 1),
                ("-rw-r--r--", 20184, f"{mods}/vfio/pci/vfio-pci.ko.xz", 1),
                ("-rw-r--r--", 16748, f"{mods}/vfio/vfio.ko.xz", 1)]
    for mode, size, path, links in entries:
        out.write(_ls_line(mode, size, path, links))
    out.write("=" * 72 + "\n")
    return 0


# ---- grubby -------------------------------------------------------------------------------------

def _grubby_info(root: Path, which: str, out: Out) -> int:
    entries = hosts.bls_entries(root)
    env = hosts.read_grubenv(root)
    default = hosts.default_entry(root)[0]
    chosen = [(i, e) for i, e in enumerate(entries)
              if which == "ALL" or (which == "DEFAULT" and e[0] == default)
              or e[1].get("linux", "") == which.removeprefix("/boot")]
    if not chosen:
        out.write(f"The param {which} is incorrect\n")
        return 1
    for index, (path, fields) in chosen:
        tokens = fields.get("options", "").split()
        expanded: list[str] = []
        for t in tokens:  # grubby shows $kernelopts expanded, other variables as written
            expanded += env.get("kernelopts", "").split() if t == "$kernelopts" else [t]
        root_arg = next((t.split("=", 1)[1] for t in expanded if t.startswith("root=")), "")
        args = " ".join(t for t in expanded if not t.startswith("root="))
        out.write(f"index={index}\nkernel=\"/boot{fields.get('linux', '')}\"\nargs=\"{args}\"\n"
                  f"root=\"{root_arg}\"\ninitrd=\"/boot{fields.get('initrd', '')}\"\n"
                  f"title=\"{fields.get('title', '')}\"\nid=\"{path.stem}\"\n")
    return 0


def cmd_grubby(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    known = {"--info", "--update-kernel", "--args", "--remove-args", "--set-default"}
    opts, pos = _opts(argv, known)
    flags = {"--default-kernel", "--default-index", "--default-title"}
    for key in opts:
        if key not in known | flags:
            err.write(f"grubby: bad argument {key}: unknown option\n")
            return 1
    if pos:
        err.write(f"grubby: unexpected argument {pos[0]}\n")
        return 1
    if "--info" in opts:
        return _grubby_info(root, opts["--info"][-1], out)
    if "--default-kernel" in opts:
        out.write(f"/boot{hosts.default_entry(root)[1].get('linux', '')}\n")
        return 0
    if "--default-index" in opts:
        default = hosts.default_entry(root)[0]
        out.write(f"{[p for p, _ in hosts.bls_entries(root)].index(default)}\n")
        return 0
    if "--default-title" in opts:
        out.write(f"{hosts.default_entry(root)[1].get('title', '')}\n")
        return 0
    if "--set-default" in opts:
        target = opts["--set-default"][-1].removeprefix("/boot")
        match = next((p for p, f in hosts.bls_entries(root) if f.get("linux") == target), None)
        if match is None:
            err.write(f"The param {opts['--set-default'][-1]} is incorrect\n")
            return 1
        env = hosts.read_grubenv(root)
        env["saved_entry"] = match.stem
        hosts.write_grubenv(root, env)
        out.write(f"The default is /boot/loader/entries/{match.name} with index "
                  f"{[p for p, _ in hosts.bls_entries(root)].index(match)} and kernel "
                  f"/boot{target}\n")
        return 0
    if "--update-kernel" in opts:
        if "--args" not in opts and "--remove-args" not in opts:
            err.write("grubby: no action specified\n")
            return 1
        add = " ".join(opts.get("--args", [])).split()
        remove = " ".join(opts.get("--remove-args", [])).split()
        try:
            hosts.grubby_update(root, add, remove, opts["--update-kernel"][-1])
        except ValueError as exc:
            err.write(f"{exc}\n")
            return 1
        return 0
    err.write("grubby: no action specified\n")
    return 1


# ---- systemctl ----------------------------------------------------------------------------------

_SHOW_ORDER = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState")
_ENABLED_LIKE = {"enabled", "enabled-runtime", "static", "indirect", "generated", "transient",
                 "alias"}


def _unit_name(name: str) -> str:
    return name if "." in name else name + ".service"


def _units(root: Path) -> dict[str, dict[str, str]]:
    path = root / hosts.UNITS
    data = json.loads(path.read_text()) if path.exists() else {}
    assert isinstance(data, dict)
    return data


def _unit_installed(root: Path, unit: str) -> bool:
    return any((root / d / unit).exists() for d in ("usr/lib/systemd/system", "etc/systemd/system"))


def _unit_props(root: Path, unit: str) -> dict[str, str]:
    if not _unit_installed(root, unit):
        return {"Id": unit, "LoadState": "not-found", "ActiveState": "inactive",
                "SubState": "dead", "UnitFileState": ""}
    state = _units(root).get(unit) or {"ActiveState": "inactive", "SubState": "dead",
                                       "LoadState": "loaded", "UnitFileState": "disabled"}
    return {"Id": unit, **state}


def cmd_systemctl(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    opts, pos = _opts(argv, {"-p", "--property"})
    quiet = "-q" in opts or "--quiet" in opts
    if not pos:
        raise Usage("systemctl: this emulation needs a verb (is-active, is-enabled, show, start, "
                    "stop, restart, daemon-reload)")
    verb, names = pos[0], [_unit_name(n) for n in pos[1:]]
    if verb == "daemon-reload":
        return 0
    if not names:
        err.write("Too few arguments.\n")
        return 1
    if verb == "is-active":
        states = [_unit_props(root, u)["ActiveState"] for u in names]
        if not quiet:
            out.write("".join(s + "\n" for s in states))
        return 0 if "active" in states else 3
    if verb == "is-enabled":
        code = 1
        for u in names:
            props = _unit_props(root, u)
            if props["LoadState"] == "not-found":
                err.write(f"Failed to get unit file state for {u}: No such file or directory\n")
                return 1
            if not quiet:
                out.write(props["UnitFileState"] + "\n")
            if props["UnitFileState"] in _ENABLED_LIKE:
                code = 0
        return code
    if verb == "show":
        wanted = [p for v in opts.get("-p", []) + opts.get("--property", []) for p in v.split(",")]
        blocks = []
        for u in names:
            props = _unit_props(root, u)
            keys = [k for k in _SHOW_ORDER if not wanted or k in wanted]
            if "--value" in opts:
                blocks.append("".join(f"{props[k]}\n" for k in keys))
            else:
                blocks.append("".join(f"{k}={props[k]}\n" for k in keys))
        out.write("\n".join(blocks))
        return 0
    if verb in ("start", "stop", "restart"):
        units = _units(root)
        for u in names:
            if not _unit_installed(root, u):
                err.write(f"Failed to {verb} {u}: Unit {u} not found.\n")
                return 5
            state = units.get(u) or {"LoadState": "loaded", "UnitFileState": "disabled"}
            if verb == "stop":
                state.update(ActiveState="inactive", SubState="dead")
            elif u == hosts.MANAGER_UNIT and "nvidia" not in hosts.loaded_modules(root):
                state.update(ActiveState="failed", SubState="failed")
                units[u] = state
                (root / hosts.UNITS).write_text(json.dumps(units, indent=1, sort_keys=True))
                err.write(f"Job for {u} failed because the control process exited with error "
                          f"code.\nSee \"systemctl status {u}\" and \"journalctl -xeu {u}\" for "
                          "details.\n")
                return 1
            else:
                state.update(ActiveState="active", SubState="running")
            units[u] = state
        (root / hosts.UNITS).write_text(json.dumps(units, indent=1, sort_keys=True))
        return 0
    raise Usage(f"systemctl: verb {verb!r} is not emulated")


# ---- lsmod --------------------------------------------------------------------------------------

def cmd_lsmod(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    if argv:
        err.write("Usage: lsmod\n")
        return 1
    out.write("Module                  Size  Used by\n")
    for line in (root / "proc/modules").read_text().splitlines():
        name, size, refs, holders = line.split()[:4]
        tail = "" if holders == "-" else " " + holders.rstrip(",")
        out.write(f"{name:<19} {int(size):>8}  {refs}{tail}\n")
    return 0


# ---- lspci --------------------------------------------------------------------------------------

_CLASS_NAMES = {"0300": "VGA compatible controller", "0302": "3D controller",
                "0403": "Audio device", "0600": "Host bridge", "0604": "PCI bridge",
                "0106": "SATA controller", "0200": "Ethernet controller"}
_MODALIASES = {"0300": ["nouveau"], "0302": ["nouveau"], "0403": ["snd_hda_intel"]}


def cmd_lspci(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    opts, pos = _opts(argv, {"-s", "-d"})
    letters = "".join(k[1:] for k in opts if k.startswith("-") and not k.startswith("--")
                      and k not in ("-s", "-d"))
    numeric = letters.count("n")
    record = hosts.load_record(root)
    boot = hosts.load_boot(root)
    manager = (root / hosts.MANAGER_UNIT_PATH).exists()
    sel_slot = (opts.get("-s") or [""])[-1]
    sel_id = (opts.get("-d") or [""])[-1]
    for f in sorted(hosts.present_functions(record, boot), key=lambda f: f.fn.address):
        fn = f.fn
        if sel_slot and not fn.address.endswith(sel_slot):
            continue
        if sel_id:
            v, _, d = sel_id.partition(":")
            if (v and v != fn.vendor_id) or (d and d != fn.product_id):
                continue
        code = fn.pci_class[2:6]
        cname = _CLASS_NAMES.get(code, "Unclassified device")
        addr = fn.address if "D" in letters else fn.address[5:]
        rev = "a1" if fn.vendor_id == catalogue.NVIDIA else "04"
        if numeric >= 2:
            line = (f"{addr} {cname} [{code}]: {fn.vendor_name} {fn.product_name} "
                    f"[{fn.vendor_id}:{fn.product_id}] (rev {rev})")
        elif numeric == 1:
            line = f"{addr} {code}: {fn.vendor_id}:{fn.product_id} (rev {rev})"
        else:
            line = f"{addr} {cname}: {fn.vendor_name} {fn.product_name} (rev {rev})"
        out.write(line + "\n")
        if "k" in letters:
            sub = fn.subsystem_device.removeprefix("0x")
            out.write(f"\tSubsystem: {fn.vendor_name} Device [{fn.vendor_id}:{sub}]\n")
            drv = boot.driver(fn.address)
            if drv:
                out.write(f"\tKernel driver in use: {drv}\n")
            mods = list(_MODALIASES.get(code, [fn.driver] if fn.driver else []))
            if fn.vendor_id == catalogue.NVIDIA and code.startswith("03") and manager:
                mods += ["nvidia_vgpu_vfio", "nvidia"]
            if mods:
                out.write(f"\tKernel modules: {', '.join(mods)}\n")
    return 0


# ---- nvidia-smi ---------------------------------------------------------------------------------

_NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
              "Make sure that the latest NVIDIA driver is installed and running.\n\n")


class _Gpu:
    def __init__(self, index: int, fn: hosts.PciFn, model: catalogue.GpuModel,
                 vgpus: list[tuple[str, str, int, str, int, str | None]]) -> None:
        self.index = index
        self.fn = fn
        self.model = model
        self.vgpus = vgpus          # (uuid, human name, type number, framebuffer MiB, ...)
        self.bus_id = ("0000" + fn.address).upper()
        self.uuid = "GPU-" + str(uuidlib.UUID(hashlib.md5(
            f"{fn.address}/{fn.product_id}".encode()).hexdigest()))

    @property
    def memory_used(self) -> int:
        return 14 + sum(v[4] for v in self.vgpus)


def _framebuffer_mib(description: str) -> int:
    match = re.search(r"framebuffer=(\d+)M", description)
    return int(match.group(1)) if match else 0


def _gpus(root: Path) -> list[_Gpu]:
    record = hosts.load_record(root)
    boot = hosts.load_boot(root)
    active = hosts.active_mdevs(root)
    vgpus_path = root / hosts.VGPUS
    vfio = json.loads(vgpus_path.read_text()) if vgpus_path.exists() else {}
    out: list[_Gpu] = []
    present = hosts.present_functions(record, boot)
    for f in sorted(present, key=lambda f: f.fn.address):
        m = record.gpu_model(f.fn)
        if f.fn.role != "gpu" or m is None or boot.driver(f.fn.address) != "nvidia":
            continue
        mine = {f.fn.address} | {v.fn.address for v in present if v.physfn == f.fn.address}
        vg: list[tuple[str, str, int, str, int, str | None]] = []
        for a in active:
            if a.parent in mine:
                t = next((t for t in m.mdev_types if t.name == a.mdev_type), None)
                if t:
                    vg.append((a.uuid, t.human_readable_name, int(t.name.split("-")[1]),
                               a.parent, _framebuffer_mib(t.description), a.vm))
        for vf, type_id in sorted(vfio.items()):
            t2 = next((t for t in m.vgpu_types if t.id == type_id), None)
            if vf in mine and t2:
                fb = m.memory_mib // max(t2.max_instances, 1)
                vg.append(("", t2.name, t2.id, vf, fb, None))
        out.append(_Gpu(len(out), f.fn, m, vg))
    return out


_QUERY = {
    "index": ("index", lambda g: str(g.index), ""),
    "count": ("count", lambda g: "", ""),
    "pci.bus_id": ("pci.bus_id", lambda g: g.bus_id, ""),
    "gpu_bus_id": ("pci.bus_id", lambda g: g.bus_id, ""),
    "name": ("name", lambda g: g.model.smi_name, ""),
    "gpu_name": ("name", lambda g: g.model.smi_name, ""),
    "uuid": ("uuid", lambda g: g.uuid, ""),
    "driver_version": ("driver_version", lambda g: hosts.NVIDIA_DRIVER_VERSION, ""),
    "memory.total": ("memory.total [MiB]", lambda g: str(g.model.memory_mib), " MiB"),
    "memory.used": ("memory.used [MiB]", lambda g: str(g.memory_used), " MiB"),
    "memory.free": ("memory.free [MiB]", lambda g: str(g.model.memory_mib - g.memory_used),
                    " MiB"),
    "utilization.gpu": ("utilization.gpu [%]", lambda g: "0", " %"),
    "temperature.gpu": ("temperature.gpu", lambda g: str(31 + g.index), ""),
    "power.draw": ("power.draw [W]", lambda g: f"{24.1 + g.index:.2f}", " W"),
}


def _smi_query(gpus: list[_Gpu], fields: list[str], fmt: str, out: Out, err: Out) -> int:
    parts = set(fmt.split(","))
    if "csv" not in parts:
        err.write(f'"{fmt}" is not a valid format. Valid formats are: csv, noheader, nounits.\n')
        return 2
    for f in fields:
        if f not in _QUERY:
            err.write(f'Field "{f}" is not a valid field to query.\n\n')
            return 2
    if "noheader" not in parts:
        out.write(", ".join(_QUERY[f][0] if "nounits" not in parts
                            else _QUERY[f][0].split(" [")[0] for f in fields) + "\n")
    for g in gpus:
        values = []
        for f in fields:
            _, get, unit = _QUERY[f]
            value = str(len(gpus)) if f == "count" else get(g)
            values.append(value + ("" if "nounits" in parts else unit))
        out.write(", ".join(values) + "\n")
    return 0


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S %Y")


def _row(*cells: tuple[str, int]) -> str:
    return "|" + "|".join(text.ljust(width)[:width] for text, width in cells) + "|\n"


def _smi_table(gpus: list[_Gpu], out: Out) -> None:
    """The default table in the R535 layout (89 columns)."""
    v = hosts.NVIDIA_DRIVER_VERSION
    bar = "+" + "-" * 41 + "+" + "-" * 22 + "+" + "-" * 22 + "+\n"
    out.write(f"{_stamp()}       \n+{'-' * 87}+\n"
              + _row((f" NVIDIA-SMI {v:<22} Driver Version: {v:<12} CUDA Version: N/A", 87))
              + f"|{'-' * 41}+{'-' * 22}+{'-' * 22}+\n"
              + _row((" GPU  Name                 Persistence-M", 41),
                     (" Bus-Id        Disp.A", 22), (" Volatile Uncorr. ECC", 22))
              + _row((" Fan  Temp   Perf          Pwr:Usage/Cap", 41),
                     ("         Memory-Usage", 22), (" GPU-Util  Compute M.", 22))
              + _row(("", 41), ("", 22), ("MIG M. ".rjust(22), 22))
              + f"|{'=' * 41}+{'=' * 22}+{'=' * 22}|\n")
    for g in gpus:
        mem = f"{g.memory_used}MiB / {g.model.memory_mib}MiB"
        out.write(_row((f"{g.index:>4}  {g.model.smi_name}".ljust(37) + "On  ", 41),
                       (f" {g.bus_id} Off", 22), ("Off ".rjust(22), 22))
                  + _row((f" N/A   {31 + g.index}C    P8".ljust(25)
                          + f"{24 + g.index}W / 150W ".rjust(16), 41),
                         (f"{mem} ".rjust(22), 22), (f"{'0%':>8}      Default ", 22))
                  + _row(("", 41), ("", 22), ("N/A ".rjust(22), 22)) + bar)
    out.write(f"{' ' * 89}\n+{'-' * 87}+\n" + _row((" Processes:", 87))
              + _row(("  GPU   GI   CI        PID   Type   Process name"
                      "                            GPU Memory ", 87))
              + _row(("        ID   ID" + " " * 61 + "Usage      ", 87))
              + f"|{'=' * 87}|\n" + _row(("  No running processes found", 87))
              + f"+{'-' * 87}+\n")


def _smi_vgpu(gpus: list[_Gpu], out: Out) -> None:
    v = hosts.NVIDIA_DRIVER_VERSION
    sep = "+" + "-" * 33 + "+" + "-" * 30 + "+" + "-" * 12 + "+\n"
    out.write(f"{_stamp()}\n+{'-' * 77}+\n"
              + _row((f" NVIDIA-SMI {v:<22} Driver Version: {v}", 77))
              + f"|{'-' * 33}+{'-' * 30}+{'-' * 12}+\n"
              + _row((" GPU  Name", 33), (" Bus-Id", 30), (" GPU-Util", 12))
              + _row(("      vGPU ID     Name", 33), (" VM ID     VM Name", 30),
                     (" vGPU-Util", 12))
              + f"|{'=' * 33}+{'=' * 30}+{'=' * 12}|\n")
    for g in gpus:
        out.write(_row((f"{g.index:>4}  {g.model.smi_name}", 33), (f" {g.bus_id}", 30),
                       (f"{'0%':>5}", 12)))
        for uuid, name, _type, parent, _fb, vm in g.vgpus:
            short = name if len(name) <= 14 else name[:11] + "..."
            vmname = vm or ""
            vmname = vmname if len(vmname) <= 18 else vmname[:15] + "..."
            out.write(_row((f"      {_vgpu_id(uuid or parent):<10}  {short}", 33),
                           (f" {_vm_uuid(vm)[:4]}...  {vmname}", 30), (f"{'0%':>7}", 12)))
        out.write(sep)


def _vgpu_id(key: str) -> int:
    return 3251634000 + int(hashlib.md5(key.encode()).hexdigest()[:4], 16) % 1000


def _vm_uuid(vm: str | None) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"lab-vm/{vm}")) if vm else ""


def _kv(indent: int, key: str, value: object) -> str:
    return f"{' ' * indent}{key}".ljust(42) + f": {value}\n"


def _smi_vgpu_q(gpus: list[_Gpu], out: Out) -> None:
    for g in gpus:
        out.write(f"GPU {g.bus_id}\n" + _kv(4, "Active vGPUs", len(g.vgpus)))
        for uuid, name, type_no, parent, fb, vm in g.vgpus:
            out.write(_kv(4, "vGPU ID", _vgpu_id(uuid or parent)) + _kv(8, "VM UUID", _vm_uuid(vm))
                      + _kv(8, "VM Name", vm or "") + _kv(8, "vGPU Name", name)
                      + _kv(8, "vGPU Type", type_no) + _kv(8, "vGPU UUID", _vm_uuid(uuid))
                      + (_kv(8, "MDEV UUID", uuid) if uuid else "")
                      + _kv(8, "Guest Driver Version", "N/A")
                      + _kv(8, "License Status", "N/A (Expiry: N/A)")
                      + _kv(8, "GPU Instance ID", "N/A") + f"{' ' * 8}PCI\n"
                      + _kv(12, "Bus Id", "00000000:00:00.0") + f"{' ' * 8}FB Memory Usage\n"
                      + _kv(12, "Total", f"{fb} MiB") + _kv(12, "Used", "0 MiB")
                      + _kv(12, "Free", f"{fb} MiB"))
        out.write("\n")


def _smi_q(gpus: list[_Gpu], out: Out) -> None:
    out.write(f"\n==============NVSMI LOG==============\n\n"
              + _kv(0, "Timestamp", _stamp()) + _kv(0, "Driver Version",
                                                    hosts.NVIDIA_DRIVER_VERSION)
              + _kv(0, "CUDA Version", "Not Found") + "\n"
              + _kv(0, "Attached GPUs", len(gpus)))
    for g in gpus:
        mode = "SR-IOV" if g.model.sriov_vfs else "Non SR-IOV"
        bus, dev = g.fn.address.split(":")[1], g.fn.address.split(":")[2].split(".")[0]
        out.write(f"GPU {g.bus_id}\n" + _kv(4, "Product Name", g.model.smi_name)
                  + _kv(4, "GPU UUID", g.uuid) + f"    GPU Virtualization Mode\n"
                  + _kv(8, "Virtualization Mode", "Host VGPU") + _kv(8, "Host VGPU Mode", mode)
                  + "    PCI\n" + _kv(8, "Bus", f"0x{bus.upper()}")
                  + _kv(8, "Device", f"0x{dev.upper()}") + _kv(8, "Domain", "0x0000")
                  + _kv(8, "Device Id", f"0x{g.model.product_id.upper()}10DE")
                  + _kv(8, "Bus Id", g.bus_id)
                  + _kv(8, "Sub System Id",
                        f"0x{g.model.subsystem_device.removeprefix('0x').upper()}10DE")
                  + "    FB Memory Usage\n" + _kv(8, "Total", f"{g.model.memory_mib} MiB")
                  + _kv(8, "Used", f"{g.memory_used} MiB")
                  + _kv(8, "Free", f"{g.model.memory_mib - g.memory_used} MiB") + "\n")


def cmd_nvidia_smi(root: Path, argv: Sequence[str], out: Out, err: Out) -> int:
    if "nvidia" not in hosts.loaded_modules(root):
        out.write(_NO_DRIVER)
        return 9
    gpus = _gpus(root)
    opts, pos = _opts(argv, {"-i", "--id"})
    if pos[:1] == ["vgpu"]:
        if "-q" in opts or "--query" in opts:
            _smi_vgpu_q(gpus, out)
        else:
            _smi_vgpu(gpus, out)
        return 0
    if pos:
        err.write(f"Invalid combination of input arguments. Please run 'nvidia-smi -h' for "
                  f"help.\n")
        return 2
    query = opts.get("--query-gpu")
    if query:
        return _smi_query(gpus, query[-1].split(","), (opts.get("--format") or ["csv"])[-1],
                          out, err)
    if "-L" in opts or "--list-gpus" in opts:
        for g in gpus:
            out.write(f"GPU {g.index}: {g.model.smi_name} (UUID: {g.uuid})\n")
        return 0
    if "-q" in opts or "--query" in opts:
        _smi_q(gpus, out)
        return 0
    _smi_table(gpus, out)
    return 0


COMMANDS: dict[str, Callable[[Path, Sequence[str], Out, Out], int]] = {
    "dracut": cmd_dracut, "lsinitrd": cmd_lsinitrd, "grubby": cmd_grubby,
    "systemctl": cmd_systemctl, "lsmod": cmd_lsmod, "lspci": cmd_lspci,
    "nvidia-smi": cmd_nvidia_smi,
}


# ---- pre-rendered answers to read-only queries --------------------------------------------------
# Every emulated command is a Python start (60-80 ms) and a probe runs about seven, so probing 200
# lab hosts used to take over a minute of interpreter starts. The outputs of read-only queries are
# therefore kept under .lab/out for the host's current state, and the wrapper at usr/bin/<cmd>
# `cat`s them (see `wrapper_script`). They are rendered for the probe's queries whenever a host
# (re)boots, stored after any other query runs here, and dropped when a command or a lab
# operation changes the state they came from. As a guard against edits made behind the lab's
# back, the wrapper also ignores an entry that is not newer than every state file it depends on.

OUT_DIR = f"{hosts.LAB_DIR}/out"
_INDEX = "index"
_DEPS = "deps"
_SEP = "\x1f"      # joins argv in the index: cannot occur in an argument we store
_STATE = (hosts.RECORD, hosts.BOOT, hosts.UNITS, hosts.MDEVS, hosts.VGPUS, "proc/modules",
          "proc/cmdline", "proc/sys/kernel/osrelease", "boot", "usr/lib/systemd/system",
          "etc/systemd/system")
_READ_ONLY_VERBS = {"show", "is-active", "is-enabled"}


def is_query(name: str, argv: Sequence[str]) -> bool:
    """True for invocations that only read the host's state (their output can be kept)."""
    if name in ("lsinitrd", "nvidia-smi", "lsmod"):
        return True
    if name == "systemctl":
        _, pos = _opts(argv, {"-p", "--property"})
        return bool(pos) and pos[0] in _READ_ONLY_VERBS
    return False


def _state_files(root: Path) -> list[str]:
    images = sorted(p.relative_to(root).as_posix() for p in (root / "boot").glob("initramfs-*"))
    return [*_STATE, *images]


def _snapshot(root: Path, deps: Sequence[str]) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for rel in deps:
        try:
            st = os.stat(root / rel)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def forget_answers(root: Path) -> None:
    """Drop every kept answer (the host's state is about to change or just changed)."""
    try:
        os.unlink(Path(root) / OUT_DIR / _INDEX)
    except FileNotFoundError:
        pass


def _keep(root: Path, name: str, argv: Sequence[str], out: str, err: str, code: int,
          deps: Sequence[str], before: tuple[tuple[int, int, int] | None, ...]) -> None:
    if any(_SEP in a or "\n" in a for a in argv):
        return
    joined = _SEP.join((name, *argv))
    key = hashlib.sha256(joined.encode()).hexdigest()[:32]
    folder = root / OUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / f"{key}.rc", f"{code}\n".encode())
    _atomic(folder / f"{key}.err", err.encode())
    _atomic(folder / f"{key}.out", out.encode())
    if _snapshot(root, deps) != before:
        # The state changed while this answer was being made: keep nothing of it (an index line
        # from earlier may still name this key).
        (folder / f"{key}.out").unlink(missing_ok=True)
        return
    deps_text = "".join(d + "\n" for d in deps).encode()
    deps_file = folder / _DEPS
    if not deps_file.exists() or deps_file.read_bytes() != deps_text:
        _atomic(deps_file, deps_text)
    index = folder / _INDEX
    try:
        lines = [line for line in index.read_text().splitlines()
                 if line.split(" ", 1)[0] != key]
    except FileNotFoundError:
        lines = []
    _atomic(index, "".join(f"{line}\n" for line in [*lines, f"{key} {joined}"]).encode())


def answer(root: Path, name: str, argv: Sequence[str], out: Out, err: Out) -> int:
    """Run one command; keep the answer of a read-only query for the wrapper to replay."""
    if not is_query(name, argv):
        forget_answers(root)
        try:
            return COMMANDS[name](root, argv, out, err)
        finally:
            forget_answers(root)
    deps = _state_files(root)
    before = _snapshot(root, deps)
    buf_out, buf_err = io.StringIO(), io.StringIO()
    code = COMMANDS[name](root, argv, buf_out, buf_err)
    out.write(buf_out.getvalue())
    err.write(buf_err.getvalue())
    _keep(root, name, argv, buf_out.getvalue(), buf_err.getvalue(), code, deps, before)
    return code


def probe_queries(root: Path) -> list[tuple[str, list[str]]]:
    """The queries `reconciler.observe.probe` runs on this host, as it spells them."""
    from reconciler.observe.probe import NVIDIA_SMI_QUERY, VGPU_SERVICE

    queries: list[tuple[str, list[str]]] = []
    bin_dir = root / "usr/bin"
    kver = hosts.running_kernel(root)
    image = f"/boot/initramfs-{kver}.img"
    if (bin_dir / "lsinitrd").exists() and (root / image.lstrip("/")).exists():
        queries.append(("lsinitrd", [image]))
        files = hosts.read_initramfs(root / image.lstrip("/"))["files"]
        assert isinstance(files, dict)
        queries += [("lsinitrd", ["-f", p, image]) for p in sorted(files)
                    if re.fullmatch(r"[^ ]*modprobe\.d/[^ ]*\.conf", p)]
    if (bin_dir / "systemctl").exists():
        queries.append(("systemctl", ["show", VGPU_SERVICE, "--no-pager", "-p", "LoadState",
                                      "-p", "ActiveState", "-p", "SubState"]))
        queries.append(("systemctl", ["is-active", VGPU_SERVICE]))
    if (bin_dir / "nvidia-smi").exists():
        queries.append(("nvidia-smi", [NVIDIA_SMI_QUERY, "--format=csv,noheader,nounits"]))
        queries.append(("nvidia-smi", ["vgpu", "-q"]))
    return queries


def prerender(root: Path) -> None:
    """Render and keep the answers to the probe's queries for the host's current state."""
    root = Path(root)
    forget_answers(root)
    for name, argv in probe_queries(root):
        try:
            answer(root, name, argv, io.StringIO(), io.StringIO())
        except (Usage, OSError, ValueError):
            continue    # left to the command itself, which reports it


def wrapper_script(cmd: str, python: str, package_parent: str) -> str:
    """The executable at <root>/usr/bin/<cmd>: replay a kept answer, else run this module."""
    q = shlex.quote
    return f"""#!/bin/sh
# lab emulation of a host command; acts on the tree named by HOST_ROOT
# A kept answer to this exact query is replayed when it is newer than every state file it was
# made from; anything else runs the emulation.
o="${{HOST_ROOT:-/nonexistent}}/{OUT_DIR}"
if [ -f "$o/{_INDEX}" ] && [ -f "$o/{_DEPS}" ]; then
  us=$(printf '\\037')
  IFS=$us
  want="{cmd}$us$*"
  unset IFS
  hit=
  while IFS= read -r line; do
    if [ "${{line#* }}" = "$want" ]; then hit=${{line%% *}}; break; fi
  done < "$o/{_INDEX}"
  if [ -n "$hit" ] && [ -f "$o/$hit.out" ] && [ -f "$o/$hit.rc" ]; then
    while IFS= read -r dep; do
      if ! [ "$o/$hit.out" -nt "$HOST_ROOT/$dep" ] && [ -e "$HOST_ROOT/$dep" ]; then
        hit=; break
      fi
    done < "$o/{_DEPS}"
  fi
  if [ -n "$hit" ]; then
    read -r rc < "$o/$hit.rc"
    cat "$o/$hit.out"
    [ -s "$o/$hit.err" ] && cat "$o/$hit.err" >&2
    exit "$rc"
  fi
fi
PYTHONPATH={q(package_parent)}${{PYTHONPATH:+:$PYTHONPATH}}
export PYTHONPATH
exec {q(python)} -m reconciler_lab.hostcmd {cmd} "$@"
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        sys.stderr.write(f"usage: hostcmd {{{','.join(COMMANDS)}}} [args...]\n")
        return 2
    name, rest = args[0], args[1:]
    root_env = os.environ.get("HOST_ROOT")
    if not root_env:
        sys.stderr.write(f"{name}: HOST_ROOT is not set; this lab command acts only on a lab "
                         "host root\n")
        return 2
    root = Path(root_env)
    if not (root / hosts.RECORD).exists():
        sys.stderr.write(f"{name}: {root} is not a lab host root\n")
        return 2
    try:
        return answer(root, name, rest, sys.stdout, sys.stderr)
    except Usage as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
