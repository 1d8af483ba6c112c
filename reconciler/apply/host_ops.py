"""Host changes over a Transport: our modprobe.d file, the initramfs and the persisted boot args.

Every value reaching the host is validated and travels as argv or stdin, never inside a shell
string. File writes go through `Transport.write_file` (temp file in the same folder, then rename).
Where a host path lives for the transport's file calls and for its shell (under a local root
tree, or as is on a remote host) is decided in one place, `_where`. Each operation reads first
and does nothing when the host is already right.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

from reconciler.errors import HostAccessError
from reconciler.log import get_logger
from reconciler.access.transport import CommandResult, Transport, validate_host_path

log = get_logger(__name__)

MODPROBE_DIR = "/etc/modprobe.d"
# modprobe and dracut read only `*.conf`, so backups ending in this suffix are inert.
BACKUP_SUFFIX = ".reconciler-backup"
DRACUT_TIMEOUT = 900.0
GRUBBY_TIMEOUT = 120.0

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}")
# A kernel argument as we manage it: key or key=value, no spaces or quotes.
_KERNEL_ARG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,:=+/@-]{0,254}")
_MAX_FILE = 1 << 20


class HostCommandFailed(HostAccessError):
    """A host command ran but exited non-zero."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class WriteResult:
    """`changed` is False when the file already had the content (or was already absent)."""

    changed: bool
    path: str
    backup_path: str | None = None


@dataclass(frozen=True)
class KernelArgsResult:
    """Outcome of `persist_kernel_args`; `entries` is each boot entry's args afterwards."""

    changed: bool
    entries: tuple[tuple[str, ...], ...]


# ---------------------------------------------------------------------------------------------
# Files

def modprobe_path(name: str) -> str:
    """`/etc/modprobe.d/<name>.conf` for one of our file names (`[A-Za-z0-9_.-]+`)."""
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name.endswith(".conf"):
        raise HostAccessError(f"invalid modprobe file name {name!r}: use letters, digits, "
                              "'_', '.', '-' and no '.conf' suffix")
    return f"{MODPROBE_DIR}/{name}.conf"


def _stamp(now: Callable[[], datetime]) -> str:
    return now().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _backup_path(path: str, now: Callable[[], datetime]) -> str:
    return f"{path}.{_stamp(now)}{BACKUP_SUFFIX}"


@dataclass(frozen=True)
class _Where:
    file: str    # what to hand to transport.read_file / write_file
    shell: str   # what a shell started by the transport must use


def _where(transport: Transport, path: str) -> _Where:
    """Where host path `path` lives: the one place that knows about host roots.

    A transport with `host_path` (local roots, lab hosts) maps paths onto its root tree in its
    own file calls, while its shell runs on this machine and needs the mapped path. Any other
    transport (SSH) takes paths as they are on the host; when it serves a tree under a root other
    than `/`, that tree's files are under the root.
    """
    plain = str(validate_host_path(path))
    host_path = getattr(transport, "host_path", None)
    if callable(host_path):
        return _Where(plain, str(host_path(plain)))
    root = transport.root
    full = plain if root in ("", "/") else str(PurePosixPath(root) / plain.lstrip("/"))
    return _Where(full, full)


def read_file(transport: Transport, path: str) -> bytes | None:
    """Content of a host file, None when it does not exist."""
    return transport.read_file(_where(transport, path).file)


def write_modprobe_file(transport: Transport, name: str, content: str | bytes,
                        backup: bool = True, *,
                        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                        ) -> WriteResult:
    """Write our `/etc/modprobe.d/<name>.conf` atomically.

    Identical content is a no-op. With `backup`, a file being replaced is first copied to
    `<path>.<UTC timestamp>.reconciler-backup`. The result is read back and compared.
    """
    path = modprobe_path(name)
    data = content.encode() if isinstance(content, str) else content
    if not isinstance(data, bytes) or len(data) > _MAX_FILE or b"\x00" in data:
        raise HostAccessError(f"invalid content for {path}: text up to {_MAX_FILE} bytes")
    target = _where(transport, path).file
    current = transport.read_file(target)
    if current == data:
        log.info("modprobe file already up to date", host=transport.describe(), path=path)
        return WriteResult(False, path)
    backup_path = None
    if backup and current is not None:
        backup_path = _backup_path(path, now)
        transport.write_file(_where(transport, backup_path).file, current, mode=0o644,
                             backup=False)
    transport.write_file(target, data, mode=0o644, backup=False)
    if transport.read_file(target) != data:
        raise HostAccessError(f"{transport.describe()}: {path} does not hold the written content")
    log.info("modprobe file written", host=transport.describe(), path=path, backup=backup_path)
    return WriteResult(True, path, backup_path)


# Moves the file aside (backup) or deletes it; paths arrive as positional parameters.
_REMOVE_SCRIPT = 'if [ -n "$2" ]; then mv -f -- "$1" "$2"; else rm -f -- "$1"; fi'


def remove_modprobe_file(transport: Transport, name: str, backup: bool = True, *,
                         now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                         ) -> WriteResult:
    """Remove our `/etc/modprobe.d/<name>.conf` (with `backup`, rename it to a backup instead)."""
    path = modprobe_path(name)
    target = _where(transport, path)
    if transport.read_file(target.file) is None:
        return WriteResult(False, path)
    backup_path = _backup_path(path, now) if backup else None
    result = transport.sh(["-c", _REMOVE_SCRIPT, "sh", target.shell,
                           _where(transport, backup_path).shell if backup_path else ""])
    if not result.ok or transport.read_file(target.file) is not None:
        raise HostCommandFailed(f"{transport.describe()}: cannot remove {path}: "
                                f"{result.stderr_text() or 'file still present'}", result)
    log.info("modprobe file removed", host=transport.describe(), path=path, backup=backup_path)
    return WriteResult(True, path, backup_path)


# ---------------------------------------------------------------------------------------------
# Commands

def _run(transport: Transport, argv: list[str], timeout: float) -> CommandResult:
    result = transport.run(argv, timeout=timeout)
    if not result.ok:
        raise HostCommandFailed(f"{transport.describe()}: {shlex.join(argv)} failed with exit "
                                f"code {result.returncode}: {result.stderr_text()}", result)
    return result


def regenerate_initramfs(transport: Transport, *, all_kernels: bool = False,
                         timeout: float = DRACUT_TIMEOUT) -> CommandResult:
    """Rebuild the initramfs (`dracut --force`) so it carries the current modprobe.d files."""
    argv = ["dracut", "--force"] + (["--regenerate-all"] if all_kernels else [])
    result = _run(transport, argv, timeout)
    log.info("initramfs regenerated", host=transport.describe(), all_kernels=all_kernels)
    return result


def _check_args(args: Sequence[str], what: str) -> list[str]:
    if isinstance(args, (str, bytes)):
        raise HostAccessError(f"{what} must be a list of kernel arguments, not one string")
    checked = []
    for arg in args:
        if not isinstance(arg, str) or not _KERNEL_ARG.fullmatch(arg):
            raise HostAccessError(f"invalid kernel argument in {what}: {arg!r}")
        if arg not in checked:
            checked.append(arg)
    return checked


def _key(arg: str) -> str:
    return arg.split("=", 1)[0]


def _removes(wanted: str, present: str) -> bool:
    """grubby semantics: `key` removes any `key[=value]`, `key=value` only that exact token."""
    return present == wanted or ("=" not in wanted and _key(present) == wanted)


def boot_entries_args(transport: Transport, timeout: float = GRUBBY_TIMEOUT
                      ) -> tuple[tuple[str, ...], ...]:
    """The `args` of every boot entry, from `grubby --info=ALL`."""
    result = _run(transport, ["grubby", "--info=ALL"], timeout)
    entries = []
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("args="):
            value = line[len("args="):].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries.append(tuple(value.split()))
    return tuple(entries)


def _satisfied(entries: tuple[tuple[str, ...], ...], add: list[str], remove: list[str]) -> bool:
    return bool(entries) and all(
        all(a in args for a in add) and not any(_removes(r, p) for r in remove for p in args)
        for args in entries)


def persist_kernel_args(transport: Transport, add: Sequence[str] = (),
                        remove: Sequence[str] = (), *,
                        timeout: float = GRUBBY_TIMEOUT) -> KernelArgsResult:
    """Add / remove kernel arguments on every boot entry (`grubby --update-kernel=ALL`).

    Reads the entries first and runs nothing when they already match; verifies afterwards.
    """
    adds, removes = _check_args(add, "add"), _check_args(remove, "remove")
    clash = [a for a in adds if any(_removes(r, a) for r in removes)]
    if clash:
        raise HostAccessError(f"kernel arguments both added and removed: {', '.join(clash)}")
    if not adds and not removes:
        return KernelArgsResult(False, boot_entries_args(transport, timeout))
    before = boot_entries_args(transport, timeout)
    if _satisfied(before, adds, removes):
        return KernelArgsResult(False, before)
    argv = ["grubby", "--update-kernel=ALL"]
    if adds:
        argv.append("--args=" + " ".join(adds))
    if removes:
        argv.append("--remove-args=" + " ".join(removes))
    _run(transport, argv, timeout)
    after = boot_entries_args(transport, timeout)
    if not _satisfied(after, adds, removes):
        raise HostAccessError(f"{transport.describe()}: boot entries do not show the kernel "
                              f"arguments after grubby (add {adds}, remove {removes})")
    log.info("kernel arguments persisted", host=transport.describe(), add=adds, remove=removes)
    return KernelArgsResult(True, after)


__all__ = [
    "BACKUP_SUFFIX", "HostCommandFailed", "KernelArgsResult", "MODPROBE_DIR", "WriteResult",
    "boot_entries_args", "modprobe_path", "persist_kernel_args", "read_file",
    "regenerate_initramfs", "remove_modprobe_file", "write_modprobe_file",
]
