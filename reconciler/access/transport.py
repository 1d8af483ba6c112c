"""Host transports: how a command reaches a host.

Every command is an argv list (never a shell string built from values). Two transports:
- LocalRootTransport: this machine, reading a root tree (`/` for the machine itself, or a fixture
  host root whose commands are emulated at `<root>/usr/bin/<cmd>` with HOST_ROOT=<root>);
- OpenSSHTransport: the `ssh` binary, host keys checked strictly against a known_hosts file.
An endpoint may bring its own (the lab's simulated hosts are local roots of its own).
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from reconciler.errors import HostAccessError

DEFAULT_TIMEOUT = 60.0
# Host-side helper for write_file over a shell: atomic replace in the same directory, optional
# backup of the previous content. Values arrive as positional parameters, never spliced in.
_WRITE_SCRIPT = r'''set -e
path=$1 mode=$2 backup=$3
dir=$(dirname -- "$path")
tmp=$(mktemp "$dir/.reconciler.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod "$mode" "$tmp"
if [ "$backup" = 1 ] && [ -e "$path" ]; then cp -p -- "$path" "$path.reconciler-backup"; fi
mv -f -- "$tmp" "$path"
trap - EXIT
'''
_READ_SCRIPT = r'''if [ -e "$1" ]; then exec cat -- "$1"; else exit 44; fi'''
_MISSING_RC = 44

# What sudo -n prints when it will not run the command (no rule, or a rule that needs a password).
_SUDO_REFUSED = re.compile(r"^sudo: (a password is required|a terminal is required|.*not in the "
                           r"sudoers|.*is not allowed to)", re.MULTILINE)
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+$")
_COMMAND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stderr_text(self, limit: int = 500) -> str:
        return self.stderr.decode(errors="replace").strip()[-limit:]


@runtime_checkable
class Transport(Protocol):
    """What the probe and host operations need from a host."""

    @property
    def root(self) -> str:
        """The path on the host that holds its root tree (`/` on a real host)."""

    def run(self, argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run one host command (e.g. `["dracut", "--force"]`); its exit code is returned, not raised.
        Raises HostAccessError when the host cannot be reached or the command times out."""

    def sh(self, args: Sequence[str], stdin: bytes | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run the host's POSIX `sh` with `args` (used for the probe: `sh -s -- ROOT`)."""

    def read_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        """Content of a host file, None when it does not exist."""

    def write_file(self, path: str, content: bytes, mode: int = 0o644, backup: bool = True,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
        """Atomically replace a host file; with backup, keep the old one as `<path>.reconciler-backup`."""

    def describe(self) -> str:
        """Human-readable target, for logs and messages (no secrets)."""


def validate_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)) or not argv:
        raise HostAccessError("a host command must be a non-empty argument list")
    checked = []
    for arg in argv:
        if not isinstance(arg, str) or "\x00" in arg:
            raise HostAccessError(f"invalid host command argument {arg!r}")
        checked.append(arg)
    return checked


def validate_host_path(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or "\x00" in path or "\n" in path:
        raise HostAccessError(f"invalid host path {path!r}: must be absolute, without '..'")
    return p


def run_process(argv: Sequence[str], stdin: bytes | None, timeout: float, what: str,
                env: dict[str, str] | None = None) -> CommandResult:
    """Run argv in its own process group so that a timeout kills its children too (a command that
    forks would otherwise keep the pipes open and the wait would never end)."""
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as exc:
        raise HostAccessError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise HostAccessError(f"{what}: timed out after {timeout:g}s") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return CommandResult(proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalRootTransport:
    """Commands on this machine; the host's files are read under `root`.

    On a root other than `/`, command `c` is `<root>/usr/bin/c`, run with HOST_ROOT=<root> (lab
    hosts emulate commands there; fixture roots hold scripts printing captured output); a command
    that is not there is absent (exit 127). `sh` is always this machine's own shell.
    """

    def __init__(self, root: Path | str = "/") -> None:
        self._root = Path(root).resolve()

    @property
    def root(self) -> str:
        return str(self._root)

    @property
    def is_real_root(self) -> bool:
        return self._root == Path("/")

    def describe(self) -> str:
        return "local" if self.is_real_root else f"local root {self._root}"

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}
        if not self.is_real_root:
            env["HOST_ROOT"] = str(self._root)
        return env

    def _check_root(self) -> None:
        if not self._root.is_dir():
            raise HostAccessError(f"{self.describe()}: root does not exist")

    def run(self, argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        args = validate_argv(argv)
        self._check_root()
        if not self.is_real_root:
            if not _COMMAND_RE.match(args[0]):
                raise HostAccessError(f"{self.describe()}: invalid command name {args[0]!r}")
            exe = self._root / "usr" / "bin" / args[0]
            if not (exe.is_file() and os.access(exe, os.X_OK)):
                return CommandResult(127, b"", f"{args[0]}: command not found\n".encode())
            args[0] = str(exe)
        return run_process(args, stdin, timeout, self.describe(), self._env())

    def sh(self, args: Sequence[str], stdin: bytes | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        self._check_root()
        return run_process(["/bin/sh", *validate_argv(["sh", *args])[1:]], stdin, timeout,
                           self.describe(), self._env())

    def host_path(self, path: str) -> Path:
        """Where host path `path` lives on this machine."""
        return self._root.joinpath(*validate_host_path(path).parts[1:])

    def read_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        try:
            return self.host_path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostAccessError(f"{self.describe()}: cannot read {path}: {exc.strerror}") from exc

    def write_file(self, path: str, content: bytes, mode: int = 0o644, backup: bool = True,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
        target = self.host_path(path)
        tmp = target.with_name(f".{target.name}.reconciler-tmp")
        try:
            if backup and target.exists():
                backup_path = target.with_name(target.name + ".reconciler-backup")
                backup_path.write_bytes(target.read_bytes())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise HostAccessError(f"{self.describe()}: cannot write {path}: {exc.strerror}") from exc


class OpenSSHTransport:
    """The system `ssh` client in batch mode with strict host key checking.

    ssh joins the remote argv into one line for the remote shell, so each element is quoted with
    shlex.quote; locally ssh itself is started from an argument list, never through a shell.
    """

    def __init__(self, host: str, user: str = "root", port: int = 22,
                 identity_file: Path | str | None = None,
                 known_hosts_file: Path | str = "~/.ssh/known_hosts",
                 connect_timeout: float = 10.0, root: str = "/",
                 ssh_binary: str = "ssh") -> None:
        if not (_HOSTNAME_RE.match(host) or (":" in host and _IPV6_RE.match(host))):
            raise HostAccessError(f"invalid host name {host!r}")
        if not _USER_RE.match(user):
            raise HostAccessError(f"invalid ssh user {user!r}")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise HostAccessError(f"invalid ssh port {port!r}")
        self.host, self.user, self.port = host, user, port
        self.known_hosts_file = Path(known_hosts_file).expanduser()
        self.identity_file = Path(identity_file).expanduser() if identity_file else None
        for label, path in (("known_hosts file", self.known_hosts_file),
                            ("identity file", self.identity_file)):
            # ssh reads several file names from one option value when it holds spaces.
            if path is not None and (re.search(r"\s", str(path)) or "\x00" in str(path)):
                raise HostAccessError(f"{label} path must not contain whitespace: {path}")
        self.connect_timeout = connect_timeout
        self._root = str(validate_host_path(root))
        self.ssh_binary = ssh_binary

    @property
    def root(self) -> str:
        return self._root

    def describe(self) -> str:
        return f"ssh {self.user}@{self.host}:{self.port}"

    def ssh_argv(self, remote: Sequence[str]) -> list[str]:
        argv = [self.ssh_binary, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_file}",
                "-o", f"ConnectTimeout={max(1, int(self.connect_timeout))}",
                "-o", "IdentitiesOnly=yes"]
        if self.identity_file is not None:
            argv += ["-i", str(self.identity_file)]
        argv += ["-p", str(self.port), "--", f"{self.user}@{self.host}"]
        remote = validate_argv(remote)
        if self.user != "root":
            # A non-root login works through passwordless sudo (the spec's documented contract);
            # -n makes a missing sudo rule fail at once instead of waiting for a password.
            remote = ["sudo", "-n", "--", *remote]
        argv.append(" ".join(shlex.quote(a) for a in remote))
        return argv

    def run(self, argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        if not self.known_hosts_file.is_file():
            raise HostAccessError(f"host key for {self.host} not in known_hosts "
                                  f"{self.known_hosts_file} (file does not exist)")
        if self.identity_file is not None and not self.identity_file.is_file():
            raise HostAccessError(f"ssh identity file {self.identity_file} does not exist")
        result = run_process(self.ssh_argv(argv), stdin, timeout, self.describe())
        if result.returncode == 255:
            raise self._ssh_error(result.stderr.decode(errors="replace"))
        if self.user != "root" and result.returncode == 1 and _SUDO_REFUSED.search(
                result.stderr.decode(errors="replace")):
            raise HostAccessError(f"{self.describe()}: sudo refused to run {argv[0]} without a "
                                  f"password; give {self.user} passwordless sudo on the host or "
                                  "log in as root (hostAccess.ssh.user)")
        return result

    def _ssh_error(self, stderr: str) -> HostAccessError:
        text = stderr.lower()
        kh = self.known_hosts_file
        if "remote host identification has changed" in text or "host key has changed" in text:
            return HostAccessError(f"host key for {self.host} changed (known_hosts {kh}); "
                                   "refusing to connect")
        if "host key verification failed" in text or "no " in text and "host key is known" in text:
            return HostAccessError(f"host key for {self.host} not in known_hosts {kh}")
        if "connection refused" in text:
            return HostAccessError(f"{self.describe()}: connection refused")
        if "timed out" in text:
            return HostAccessError(f"{self.describe()}: connection timed out")
        if "permission denied" in text:
            return HostAccessError(f"{self.describe()}: authentication refused (permission denied)")
        if "could not resolve hostname" in text:
            return HostAccessError(f"{self.describe()}: host name does not resolve")
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed (exit 255)"
        return HostAccessError(f"{self.describe()}: {last[:300]}")

    def sh(self, args: Sequence[str], stdin: bytes | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        return self.run(["sh", *args], stdin=stdin, timeout=timeout)

    def read_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        result = self.sh(["-c", _READ_SCRIPT, "sh", str(validate_host_path(path))],
                         timeout=timeout)
        if result.returncode == _MISSING_RC:
            return None
        if not result.ok:
            raise HostAccessError(f"{self.describe()}: cannot read {path}: {result.stderr_text()}")
        return result.stdout

    def write_file(self, path: str, content: bytes, mode: int = 0o644, backup: bool = True,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
        result = self.sh(["-c", _WRITE_SCRIPT, "sh", str(validate_host_path(path)),
                          format(mode, "o"), "1" if backup else "0"], stdin=content,
                         timeout=timeout)
        if not result.ok:
            raise HostAccessError(f"{self.describe()}: cannot write {path}: {result.stderr_text()}")


class UnreachableTransport:
    """A host we know up front we cannot reach (no address, an address ssh would refuse).

    Every use raises HostAccessError with the reason, so the probe reports that host `unknown`
    and the others are still probed, instead of the whole run stopping on one host.
    """

    def __init__(self, host: str, reason: str) -> None:
        self.host, self.reason = host, reason

    @property
    def root(self) -> str:
        return "/"

    def describe(self) -> str:
        return f"host {self.host} (unreachable)"

    def _fail(self) -> HostAccessError:
        return HostAccessError(f"host {self.host}: {self.reason}")

    def run(self, argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        raise self._fail()

    def sh(self, args: Sequence[str], stdin: bytes | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        raise self._fail()

    def read_file(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        raise self._fail()

    def write_file(self, path: str, content: bytes, mode: int = 0o644, backup: bool = True,
                   timeout: float = DEFAULT_TIMEOUT) -> None:
        raise self._fail()
