"""A git ref as the spec source: a private clone under the state folder, fetched on a timer.

Only the `git` CLI is used, always as argv (never a shell), with the URL and ref validated first.
The poller thread only *fetches* (objects and one private ref) and enqueues "git" when the ref moved;
the loop thread checks the new revision out before it loads the spec, so the work tree never
changes under a pass that is reading it.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from reconciler import log
from reconciler.controller.triggers import WorkQueue, _Trigger
from reconciler.errors import ReconcilerError

WATCHED = "refs/gpu-reconciler/watched"
GIT_TIMEOUT = 120.0
# A branch, tag or full ref name; what `git check-ref-format` accepts, minus anything odd.
_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/-]*(?<![./])$")
_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")


class GitSourceError(ReconcilerError):
    """The git source is misconfigured or git failed."""


def check_url(url: str) -> str:
    if not url or url.startswith("-") or any(c in url for c in "\n\r\0"):
        raise GitSourceError(f"--git: not a usable repository URL: {url!r}")
    if url.startswith(_SCHEMES) or _SCP_LIKE.match(url):
        return url
    path = Path(url)
    if path.is_absolute() or url.startswith("."):
        return str(path.resolve())
    raise GitSourceError(f"--git {url!r}: give an https://, ssh://, git://, file:// URL, "
                         "user@host:path, or an absolute or ./relative path")


def check_ref(ref: str) -> str:
    if not _REF.match(ref) or ref.endswith(".lock") or "@{" in ref:
        raise GitSourceError(f"--ref {ref!r} is not a valid branch, tag or ref name")
    return ref


def check_subpath(path: str) -> PurePosixPath:
    sub = PurePosixPath(path)
    if sub.is_absolute() or ".." in sub.parts:
        raise GitSourceError(f"with --git, the spec path {path!r} must be a relative path inside "
                             "the repository")
    return sub


class GitSource:
    """`url`'s `ref`, fetched into a private repository in `workdir` and checked out there."""

    def __init__(self, url: str, ref: str, workdir: Path, timeout: float = GIT_TIMEOUT) -> None:
        self.url = check_url(url)
        self.ref = check_ref(ref)
        self.workdir = workdir
        self.timeout = timeout
        self._lock = threading.Lock()
        self.fetched: str | None = None          # newest revision fetched
        self.checked_out: str | None = None      # revision in the work tree
        if shutil.which("git") is None:
            raise GitSourceError("--git needs the git command, which is not installed")

    @staticmethod
    def default_workdir(state_dir: Path, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return state_dir / "git" / digest

    def _git(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1"})
        argv: Sequence[str] = ["git", "-C", str(self.workdir), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                  env=env, check=False)
        except subprocess.TimeoutExpired:
            raise GitSourceError(f"git {args[0]} timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise GitSourceError(f"cannot run git: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise GitSourceError(f"git {args[0]} failed: {detail[-1] if detail else done.returncode}")
        return done.stdout.strip()

    def _ensure_repo(self) -> None:
        if (self.workdir / ".git").is_dir():
            if self._git("config", "--get", "remote.origin.url") != self.url:
                self._git("config", "remote.origin.url", self.url)
            return
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._git("init", "--quiet")
        self._git("config", "remote.origin.url", self.url)

    def fetch(self) -> str:
        """Fetch the ref; returns the revision it points to now."""
        with self._lock:
            self._ensure_repo()
            self._git("fetch", "--quiet", "--no-tags", "--force", "origin",
                      f"+{self.ref}:{WATCHED}")
            rev = self._git("rev-parse", "--verify", "--quiet", f"{WATCHED}^{{commit}}")
            self.fetched = rev
            return rev

    def checkout(self, rev: str | None = None) -> str:
        """Put `rev` (default: the newest fetched) in the work tree; returns it."""
        with self._lock:
            target = rev or self.fetched
            if target is None:
                raise GitSourceError("nothing fetched yet")
            if target != self.checked_out:
                self._git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--force",
                          "--detach", target)
                self._git("clean", "-ffdxq")
                self.checked_out = target
            return target

    def path(self, sub: PurePosixPath) -> Path:
        return self.workdir / sub


class GitPoller(_Trigger):
    """Fetches every `interval` seconds and enqueues "git" when the ref moved."""

    name = "git-poller"

    def __init__(self, queue: WorkQueue, source: GitSource, interval: float) -> None:
        super().__init__(queue)
        self.source = source
        self.interval = interval
        self._log = log.get_logger("controller.git")

    def _run(self) -> None:
        failures = 0
        delay = self.interval
        while not self._stop.wait(delay):
            before = self.source.fetched
            try:
                rev = self.source.fetch()
                failures = 0
                delay = self.interval
            except GitSourceError as exc:
                failures += 1
                delay = min(600.0, self.interval * 2 ** min(failures, 6))
                self._log.warning("git.fetch_failed", error=str(exc), retry_in=delay)
                continue
            if rev != before:
                self._log.info("git.ref_moved", ref=self.source.ref, revision=rev[:12])
                self.queue.put("git")


__all__ = ["GitPoller", "GitSource", "GitSourceError", "check_ref", "check_subpath", "check_url"]
