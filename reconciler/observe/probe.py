"""The host probe: one read-only POSIX sh script per host, one round trip, parsed into ProbeFacts.

The script is sent on stdin (`sh -s -- ROOT`) and prints records between marker lines that carry a
per-run random nonce, so no file content or command output can forge a record. It dumps files,
symlink targets and command outputs; all meaning is given on this side by `parsers`.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from reconciler.errors import ReconcilerError
from reconciler.log import get_logger
from reconciler.observe import parsers
from reconciler.model.facts import (BootEntry, MdevParentType, ModprobeFile, NvidiaSmiSummary,
                                      PciFunction, ProbeFacts)
from reconciler.observe.cpuinfo import CpuInfo, parse_cpuinfo
from reconciler.observe.mdevs import active_mdevs
from reconciler.observe.nvidia_smi import summarize
from reconciler.observe.parsers import ParseError
from reconciler.access.transport import Transport

log = get_logger(__name__)
T = TypeVar("T")
D = TypeVar("D")

MAX_OUTPUT = 8 * 1024 * 1024      # whole probe output
MAX_FILE = 256 * 1024             # one file or command output
VGPU_SERVICE = "nvidia-vgpu-mgr.service"
NVIDIA_SMI_QUERY = ("--query-gpu=pci.bus_id,name,driver_version,memory.total,memory.used,"
                    "utilization.gpu")

# Read-only: it only reads files, lists directories, resolves symlinks and runs query commands.
# `@M@` is replaced by the run's marker; it never appears in output other than in marker lines.
PROBE_SCRIPT = r'''
ROOT=${1:-/}
M='@M@'
MAXF=@MAXF@
case $ROOT in /) R= ;; */) R=${ROOT%/} ;; *) R=$ROOT ;; esac
# Exact bytes of a file (bounded), as a `file` record.
f() {
  [ -f "$R$1" ] && [ -r "$R$1" ] || return 0
  printf '%s file %s\n' "$M" "$1"
  head -c "$MAXF" "$R$1" 2>/dev/null
  printf '\n%s end\n' "$M"
}
# A one-line sysfs attribute, read with shell builtins (hosts have many of these).
a() {
  [ -f "$R$1" ] && [ -r "$R$1" ] || return 0
  printf '%s file %s\n' "$M" "$1"
  n=0
  while IFS= read -r l || [ -n "$l" ]; do
    printf '%s\n' "$l"; n=$((n+1)); [ $n -ge 400 ] && break
  done < "$R$1" 2>/dev/null
  printf '\n%s end\n' "$M"
}
lnk() {
  [ -h "$R$1" ] || return 0
  printf '%s link %s %s\n' "$M" "$1" "$(readlink "$R$1")"
}
# Run a host command: on a root other than / the root's own emulator at usr/bin/<cmd>.
x() {
  c=$1; shift
  if [ -n "$R" ]; then
    [ -x "$R/usr/bin/$c" ] || return 127
    HOST_ROOT=$R "$R/usr/bin/$c" "$@"
  else
    command -v "$c" >/dev/null 2>&1 || return 127
    "$c" "$@"
  fi
}
# A command's stdout (bounded) and exit code, as a `cmd` record named $1.
c() {
  k=$1; shift
  out=$(x "$@" 2>/dev/null); rc=$?
  printf '%s cmd %s\n' "$M" "$k"
  printf '%s' "$out" | head -c "$MAXF"
  printf '\n%s rc %s\n' "$M" "$rc"
}
has() {
  if [ -n "$R" ]; then [ -x "$R/usr/bin/$1" ]; else command -v "$1" >/dev/null 2>&1; fi
}

main() {
  printf '%s probe 1\n' "$M"
  f /proc/cmdline
  # The CPU vendor: the first processor block says it (every core repeats it; hosts have hundreds).
  if [ -f "$R/proc/cpuinfo" ] && [ -r "$R/proc/cpuinfo" ]; then
    printf '%s file /proc/cpuinfo\n' "$M"
    n=0
    while IFS= read -r l; do
      [ -z "$l" ] && break
      printf '%s\n' "$l"; n=$((n+1)); [ $n -ge 64 ] && break
    done < "$R/proc/cpuinfo" 2>/dev/null
    printf '\n%s end\n' "$M"
  fi
  f /proc/sys/kernel/osrelease
  bls=0
  for e in "$R"/boot/loader/entries/*.conf; do [ -f "$e" ] && f "${e#"$R"}" && bls=1; done
  f /boot/grub2/grubenv
  f /etc/kernel/cmdline
  f /etc/default/grub
  # grubby only where there are no BLS snippets to read (it reads the same entries, slower).
  if [ $bls = 0 ] && has grubby; then c grubby grubby --info=ALL; fi
  for d in /etc/modprobe.d /run/modprobe.d /usr/local/lib/modprobe.d /usr/lib/modprobe.d /lib/modprobe.d; do
    [ -d "$R$d" ] || continue
    if [ "$d" = /lib/modprobe.d ] && [ "$R/lib/modprobe.d" -ef "$R/usr/lib/modprobe.d" ]; then continue; fi
    for m in "$R$d"/*.conf; do [ -f "$m" ] && f "${m#"$R"}"; done
  done
  f /proc/modules

  # The running kernel's initramfs: its modprobe.d files.
  kver=
  [ -r "$R/proc/sys/kernel/osrelease" ] && read -r kver < "$R/proc/sys/kernel/osrelease"
  if [ -z "$kver" ] && [ -r "$R/proc/cmdline" ]; then
    read -r cl < "$R/proc/cmdline"
    for t in $cl; do case $t in BOOT_IMAGE=*vmlinuz-*) kver=${t##*vmlinuz-} ;; esac; done
  fi
  if [ -n "$kver" ] && has lsinitrd && [ -f "$R/boot/initramfs-$kver.img" ]; then
    img=/boot/initramfs-$kver.img
    printf '%s initramfs %s\n' "$M" "$img"
    listing=$(x lsinitrd "$img" 2>/dev/null); lrc=$?
    printf '%s cmd lsinitrd\n' "$M"
    printf '%s\n' "$listing" | grep 'modprobe\.d/' | head -c "$MAXF"
    printf '\n%s rc %s\n' "$M" "$lrc"
    n=0
    for p in $(printf '%s\n' "$listing" | grep -o '[^ ]*modprobe\.d/[^ ]*\.conf$'); do
      n=$((n+1)); [ $n -gt 32 ] && break
      c "lsinitrd-f $p" lsinitrd -f "$p" "$img"
    done
  fi

  if has systemctl; then
    c show systemctl show @SERVICE@ --no-pager -p LoadState -p ActiveState -p SubState
    [ "$rc" = 0 ] || c is-active systemctl is-active @SERVICE@
  fi

  # PCI: display-class and NVIDIA functions, plus every member of their IOMMU groups.
  P=/sys/bus/pci/devices
  sel= groups=
  for d in "$R$P"/*; do
    [ -e "$d" ] || continue
    b=${d##*/} cls= ven=
    read -r cls < "$d/class" 2>/dev/null
    read -r ven < "$d/vendor" 2>/dev/null
    case "$cls:$ven" in
      0x03*|*:0x10de)
        sel="$sel $b"
        if [ -h "$d/iommu_group" ]; then
          g=$(readlink "$d/iommu_group"); g=${g##*/}
          case " $groups " in *" $g "*) ;; *) groups="$groups $g" ;; esac
        fi ;;
    esac
  done
  for g in $groups; do
    for m in "$R/sys/kernel/iommu_groups/$g/devices"/*; do
      [ -e "$m" ] || [ -h "$m" ] || continue
      b=${m##*/}
      case " $sel " in *" $b "*) ;; *) sel="$sel $b" ;; esac
    done
  done
  for b in $sel; do
    printf '%s pci %s\n' "$M" "$b"
    for at in class vendor device sriov_totalvfs sriov_numvfs nvidia/current_vgpu_type; do
      a "$P/$b/$at"
    done
    f "$P/$b/nvidia/creatable_vgpu_types"
    for l in driver iommu_group physfn; do lnk "$P/$b/$l"; done
  done

  for p in "$R"/sys/class/mdev_bus/*; do
    [ -d "$p/mdev_supported_types" ] || continue
    for t in "$p"/mdev_supported_types/*; do
      [ -d "$t" ] || continue
      t=${t#"$R"}
      for at in name description available_instances device_api; do a "$t/$at"; done
      for u in "$R$t"/devices/*; do [ -h "$u" ] && lnk "${u#"$R"}"; done
    done
    # Each active mdev is a child of its parent and links back to its type.
    for u in "$p"/*-*-*-*-*; do [ -h "$u/mdev_type" ] && lnk "${u#"$R"}/mdev_type"; done
  done

  if [ -d "$R/sys/kernel/iommu_groups" ]; then
    n=0
    for g in "$R"/sys/kernel/iommu_groups/*; do [ -e "$g" ] && n=$((n+1)); done
    printf '%s iommu_groups %s\n' "$M" "$n"
  fi
  # Groups alone do not prove an IOMMU: vfio gives every mdev a group of its own without one.
  if [ -d "$R/sys/class/iommu" ]; then
    n=0
    for g in "$R"/sys/class/iommu/*; do [ -e "$g" ] || [ -h "$g" ] && n=$((n+1)); done
    printf '%s iommu_units %s\n' "$M" "$n"
  fi

  if has nvidia-smi; then
    c nvidia-smi-csv nvidia-smi @QUERY@ --format=csv,noheader,nounits
    c nvidia-smi-vgpu nvidia-smi vgpu -q
  fi
  printf '%s done\n' "$M"
}
main | head -c @MAXOUT@
'''


def probe_script(marker: str) -> bytes:
    return (PROBE_SCRIPT.replace("@M@", marker).replace("@MAXF@", str(MAX_FILE))
            .replace("@MAXOUT@", str(MAX_OUTPUT)).replace("@SERVICE@", VGPU_SERVICE)
            .replace("@QUERY@", NVIDIA_SMI_QUERY).encode())


@dataclass
class ProbeDump:
    """The probe's records, keyed by host path / command name."""

    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    commands: dict[str, tuple[int, str]] = field(default_factory=dict)
    pci: list[str] = field(default_factory=list)
    initramfs: str | None = None
    iommu_groups: int | None = None
    iommu_units: int | None = None       # entries of /sys/class/iommu (dmar*, ivhd*)


def split_records(output: str, marker: str) -> ProbeDump:
    """Turn the probe's output into a ProbeDump; ParseError when it is not a complete probe run."""
    prefix = marker + " "
    dump = ProbeDump()
    lines = output.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\n") != f"{marker} probe 1":
        raise ParseError("output is not from the host probe")
    body: list[str] | None = None
    current: tuple[str, str] | None = None
    done = False
    for line in lines[1:]:
        if not line.startswith(prefix):
            if body is None:
                raise ParseError(f"unexpected probe output line {line[:80]!r}")
            body.append(line)
            continue
        kind, _, arg = line[len(prefix):].rstrip("\n").partition(" ")
        if kind in {"end", "rc"}:
            if body is None or current is None:
                raise ParseError(f"probe output: '{kind}' without a record")
            text = "".join(body)
            text = text[:-1] if text.endswith("\n") else text   # the newline the script added
            if kind == "end" and current[0] == "file":
                dump.files[current[1]] = text
            elif kind == "rc" and current[0] == "cmd":
                dump.commands[current[1]] = (int(arg) if arg.lstrip("-").isdigit() else -1, text)
            else:
                raise ParseError(f"probe output: '{kind}' closes a {current[0]} record")
            body, current = None, None
        elif body is not None:
            raise ParseError(f"probe output: record {current} not closed")
        elif kind in {"file", "cmd"}:
            body, current = [], (kind, arg)
        elif kind == "link":
            path, _, target = arg.partition(" ")
            dump.links[path] = target
        elif kind == "pci":
            dump.pci.append(arg)
        elif kind == "initramfs":
            dump.initramfs = arg
        elif kind in ("iommu_groups", "iommu_units"):
            if not arg.isdigit():
                raise ParseError(f"probe output: bad {kind} count {arg[:20]!r}")
            setattr(dump, kind, int(arg))
        elif kind == "done":
            done = True
        else:
            raise ParseError(f"probe output: unknown record {kind!r}")
    if not done or body is not None:
        raise ParseError("probe output incomplete (cut off or exceeded the size bound)")
    return dump


class _Facts:
    """Builds ProbeFacts from a dump; a sub-fact whose parser fails is left unknown and noted."""

    def __init__(self, host: str, dump: ProbeDump) -> None:
        self.host, self.dump = host, dump
        self.notes: list[str] = []
        self.vgpu_type_names: dict[int, str] = {}   # vendor type number -> name, any VF's list

    def guard(self, what: str, build: Callable[[], T], default: D = None) -> T | D:  # type: ignore[assignment]
        try:
            return build()
        except (ParseError, ValueError, KeyError) as exc:
            self.unknown(what, exc)
            return default

    def unknown(self, what: str, exc: Exception) -> None:
        self.notes.append(f"{what}: {exc}")
        log.warning("probe.subfact_unknown", host=self.host, fact=what, reason=str(exc))

    def boot_entries(self) -> tuple[BootEntry, ...]:
        d = self.dump
        grubenv = parsers.parse_grubenv(d.files["/boot/grub2/grubenv"]) \
            if "/boot/grub2/grubenv" in d.files else {}
        bls = []
        for path in sorted(p for p in d.files if p.startswith("/boot/loader/entries/")):
            entry_id = path.rsplit("/", 1)[1].removesuffix(".conf")
            bls.append(parsers.parse_bls_entry(entry_id, d.files[path], grubenv))
        if bls:
            return tuple(bls)
        rc, out = d.commands.get("grubby", (127, ""))
        return parsers.parse_grubby_info(out, grubenv) if rc == 0 else ()

    def modprobe_files(self) -> tuple[ModprobeFile, ...]:
        confs = {p: t for p, t in self.dump.files.items() if "/modprobe.d/" in p}
        result = []
        for path, text in parsers.effective_modprobe_files(confs):
            parsed = self.guard(f"modprobe file {path}", lambda: parsers.parse_modprobe_conf(path, text))
            if isinstance(parsed, ModprobeFile):
                result.append(parsed)
        return tuple(result)

    def initramfs_blacklist(self) -> tuple[str, ...] | None:
        d = self.dump
        if d.initramfs is None:
            return None
        rc, listing = d.commands.get("lsinitrd", (127, ""))
        if rc != 0:
            raise ParseError(f"lsinitrd {d.initramfs} failed (exit {rc})")
        contents = []
        for path in parsers.parse_lsinitrd_listing(listing):
            frc, text = d.commands.get(f"lsinitrd-f {path}", (127, ""))
            if frc != 0:
                raise ParseError(f"lsinitrd -f {path} failed (exit {frc})")
            contents.append((path, text))
        return parsers.initramfs_blacklist(contents)

    def service(self) -> str | None:
        d = self.dump
        if "is-active" not in d.commands and "show" not in d.commands:
            return None
        active = d.commands.get("is-active", (127, ""))[1] or None
        show = d.commands.get("show", (127, ""))
        return parsers.service_state(active, show[1] if show[0] == 0 else None)

    def pci_function(self, address: str) -> PciFunction:
        base = f"/sys/bus/pci/devices/{address}"
        files, links = self.dump.files, self.dump.links

        def attr(name: str, parse: Callable[[str], T]) -> T | None:
            text = files.get(f"{base}/{name}")
            if text is None or not text.strip():
                return None
            return self.guard(f"{address} {name}", lambda: parse(text))

        def link(name: str) -> str | None:
            target = links.get(f"{base}/{name}")
            return target.rstrip("/").rsplit("/", 1)[-1] if target else None

        group = link("iommu_group")
        creatable: tuple[str, ...] = ()
        if f"{base}/nvidia/creatable_vgpu_types" in files:
            offers = self.guard(f"{address} creatable_vgpu_types",
                                lambda: parsers.parse_creatable_vgpu_types(
                                    files[f"{base}/nvidia/creatable_vgpu_types"]), ())
            creatable = tuple(f"nvidia-{type_id}" for type_id, _ in offers)
            self.vgpu_type_names.update(offers)
        return PciFunction(
            address=address,
            class_code=attr("class", lambda t: parsers.parse_sysfs_hex(t, 6)),
            # "10de", without 0x, as the engine's HostDevice spells PCI ids
            vendor_id=attr("vendor", lambda t: parsers.parse_sysfs_hex(t, 4)[2:]),
            device_id=attr("device", lambda t: parsers.parse_sysfs_hex(t, 4)[2:]),
            driver=link("driver"),
            iommu_group=int(group) if group and group.isdigit() else None,
            sriov_totalvfs=attr("sriov_totalvfs", parsers.parse_sysfs_int),
            sriov_numvfs=attr("sriov_numvfs", parsers.parse_sysfs_int),
            physfn=link("physfn"),
            current_vgpu_type=attr("nvidia/current_vgpu_type", parsers.parse_sysfs_int),
            creatable_vgpu_types=creatable)

    def mdev_types(self) -> tuple[MdevParentType, ...]:
        by_type: dict[tuple[str, str], dict[str, str]] = {}
        for path, text in self.dump.files.items():
            if not path.startswith("/sys/class/mdev_bus/"):
                continue
            parts = path.split("/")     # ['', sys, class, mdev_bus, PARENT, mdev_supported_types, T, attr]
            if len(parts) != 8 or parts[5] != "mdev_supported_types":
                continue
            by_type.setdefault((parts[4], parts[6]), {})[parts[7]] = text
        result = []
        for (parent, name), attrs in sorted(by_type.items()):
            parsed = self.guard(f"mdev type {parent}/{name}",
                                lambda: parsers.parse_mdev_type(parent, name, attrs))
            if parsed is not None:
                result.append(parsed)
        return tuple(result)

    def nvidia_smi(self) -> NvidiaSmiSummary | None:
        """The figures nvidia-smi gives; None (and a note saying why) when there are none.

        A missing or failing nvidia-smi is normal (passthrough hosts carry no host driver; a
        manager that did not load makes it fail), so it is "unknown", never a probe error."""
        d = self.dump
        rc, csv = d.commands.get("nvidia-smi-csv", (127, ""))
        if rc == 127:
            self.nvidia_smi_note = "nvidia-smi is not installed"
            return None
        if rc != 0:
            first = csv.strip().splitlines()[0][:160] if csv.strip() else ""
            self.nvidia_smi_note = f"nvidia-smi failed (exit {rc})" + (f": {first}" if first else "")
            raise ParseError(self.nvidia_smi_note)
        vrc, vgpu = d.commands.get("nvidia-smi-vgpu", (127, ""))
        if vrc == 0:
            try:
                return summarize(csv, vgpu)
            except ParseError as exc:
                # The vGPU report alone is unreadable: keep the GPUs, leave the vGPUs unknown.
                self.unknown("nvidia-smi vgpu", exc)
        return summarize(csv, None)

    def cpu(self) -> CpuInfo | None:
        text = self.dump.files.get("/proc/cpuinfo")
        return parse_cpuinfo(text) if text is not None else None

    def vf_type_names(self, functions: tuple[PciFunction, ...]) -> tuple[PciFunction, ...]:
        """Name each VF's current vGPU type from any creatable list on the host that names it."""
        names = self.vgpu_type_names
        return tuple(replace(f, current_vgpu_name=names.get(f.current_vgpu_type or 0))
                     if f.current_vgpu_type and f.current_vgpu_type in names else f
                     for f in functions)

    def build(self, seconds: float) -> ProbeFacts:
        d = self.dump
        g = self.guard
        proc = d.files.get("/proc/cmdline")
        self.nvidia_smi_note: str | None = None
        cpu = g("/proc/cpuinfo", self.cpu)
        functions = self.vf_type_names(tuple(self.pci_function(a) for a in sorted(set(d.pci))))
        return ProbeFacts(
            host=self.host,
            proc_cmdline=g("/proc/cmdline", lambda: parsers.parse_proc_cmdline(proc or ""))
            if proc else None,
            boot_entries=g("boot entries", self.boot_entries, ()),
            etc_kernel_cmdline=parsers.parse_etc_kernel_cmdline(d.files["/etc/kernel/cmdline"])
            if "/etc/kernel/cmdline" in d.files else None,
            grub_cmdline_linux=g("/etc/default/grub", lambda: parsers.parse_default_grub(
                d.files["/etc/default/grub"])) if "/etc/default/grub" in d.files else None,
            modprobe_files=self.modprobe_files(),
            initramfs_blacklist=g("initramfs", self.initramfs_blacklist),
            loaded_modules=g("/proc/modules", lambda: parsers.parse_proc_modules(
                d.files.get("/proc/modules", "")), ()),
            vgpu_manager_service=g(VGPU_SERVICE, self.service),
            pci_functions=functions,
            mdev_types=self.mdev_types(),
            iommu_enabled=None if d.iommu_groups is None
            else d.iommu_groups > 0 and (d.iommu_units is None or d.iommu_units > 0),
            nvidia_smi=g("nvidia-smi", self.nvidia_smi),
            seconds=seconds,
            mdevs=active_mdevs(d.links),
            cpu_vendor=cpu.vendor if cpu else None,
            cpu_vendor_id=cpu.vendor_id if cpu else None,
            cpu_model=cpu.model if cpu else None,
            nvidia_smi_note=self.nvidia_smi_note)


def parse_probe_output(host: str, output: bytes, marker: str, seconds: float = 0.0) -> ProbeFacts:
    dump = split_records(output.decode(errors="replace"), marker)
    return _Facts(host, dump).build(seconds)


def unknown(host: str, reason: str, seconds: float = 0.0) -> ProbeFacts:
    return ProbeFacts(host=host, status="unknown", reason=reason, seconds=seconds)


def probe_host(transport: Transport, host_name: str, timeout: float = 60.0) -> ProbeFacts:
    """Probe one host in one round trip. Never raises for host trouble: returns status 'unknown'."""
    marker = "@@" + secrets.token_hex(12) + "@@"
    start = time.monotonic()
    try:
        result = transport.sh(["-s", "--", transport.root], stdin=probe_script(marker),
                              timeout=timeout)
        seconds = time.monotonic() - start
        if result.returncode != 0 and not result.stdout:
            return unknown(host_name, f"probe failed on {transport.describe()} (exit "
                                      f"{result.returncode}): {result.stderr_text(300)}", seconds)
        facts = parse_probe_output(host_name, result.stdout, marker, seconds)
    except ReconcilerError as exc:
        seconds = time.monotonic() - start
        log.warning("probe.host_unknown", host=host_name, reason=str(exc))
        return unknown(host_name, str(exc), seconds)
    log.debug("probe.host_ok", host=host_name, seconds=round(facts.seconds, 3))
    return facts


def probe_hosts(targets: Mapping[str, Transport], concurrency: int = 8,
                timeout: float = 60.0) -> tuple[ProbeFacts, ...]:
    """Probe hosts in parallel (at most `concurrency` at once), results ordered by host name."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    names = sorted(targets)
    if not names:
        return ()
    with ThreadPoolExecutor(max_workers=min(concurrency, len(names)),
                            thread_name_prefix="probe") as pool:
        futures = {n: pool.submit(_probe_safely, targets[n], n, timeout) for n in names}
        return tuple(futures[n].result() for n in names)


def _probe_safely(transport: Transport, host: str, timeout: float) -> ProbeFacts:
    try:
        return probe_host(transport, host, timeout)
    except Exception as exc:   # one host's unexpected failure must not abort the whole run
        log.error("probe.host_error", host=host, error=f"{type(exc).__name__}: {exc}")
        return unknown(host, f"probe failed: {type(exc).__name__}: {exc}")
