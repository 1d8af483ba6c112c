"""One lab, several processes: a running lab publishes how to reach it, and a command whose spec
names the same state folder uses that lab instead of refusing to start (statelock.py keeps it to
one engine per folder).

The lab holding a state folder's lock (`lab serve`, or the embedded lab of a controller or any
command) writes `<state>/serving.json` (mode 0600: it holds the lab's password) with its URL, CA
file, credentials, time scale, pid and the digest of its fleet file, and removes it when it stops.
Another process that finds the folder locked reads it and talks to that lab over its API, as to any
engine. Host root trees stay the serving lab's to create: a client that needs one asks it with
`POST /ovirt-engine/lab/host-roots/<host>` (a lab extension beside the oVirt API, bearer token
required), so the engine's own bookkeeping of a new root happens in the one process that owns it.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from reconciler_lab.server import LAB_HOST_ROOTS as HOST_ROOTS
from reconciler_lab.server import LabError

SERVING_NAME = "serving.json"


@dataclass(frozen=True)
class ServingLab:
    """A lab another process serves on a state folder."""

    state_dir: Path
    url: str
    ca_file: Path | None
    username: str
    password: str
    time_scale: float
    pid: int
    fleet_sha256: str | None = None

    def host_root(self, name: str) -> Path:
        """The host's root tree, created by the serving lab when it does not exist yet."""
        root = self.state_dir / "hosts" / name
        if (root / ".lab" / "host.json").exists():      # materialised (hosts.RECORD)
            return root
        base = self.url.split("/ovirt-engine/", 1)[0]
        token = self._token(base)
        request = urllib.request.Request(base + HOST_ROOTS + urllib.parse.quote(name), data=b"",
                                         method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=120, context=self._tls()) as answer:
                return Path(json.loads(answer.read())["root"])
        except urllib.error.HTTPError as err:
            raise LabError(f"the lab serving {self.state_dir} has no host root for {name!r} "
                           f"(HTTP {err.code})") from None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def _token(self, base: str) -> str:
        form = urllib.parse.urlencode({"grant_type": "password", "scope": "ovirt-app-api",
                                       "username": self.username,
                                       "password": self.password}).encode()
        request = urllib.request.Request(base + "/ovirt-engine/sso/oauth/token", data=form,
                                         headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30, context=self._tls()) as answer:
            return str(json.loads(answer.read())["access_token"])


def publish(state_dir: Path, *, url: str, ca_file: Path | None, username: str, password: str,
            time_scale: float, fleet_sha256: str | None) -> None:
    """Say how to reach the lab that holds `state_dir` (call while holding its lock)."""
    data = {"url": url, "ca_file": str(ca_file) if ca_file else None, "username": username,
            "password": password, "time_scale": time_scale, "pid": os.getpid(),
            "fleet_sha256": fleet_sha256}
    path = Path(state_dir) / SERVING_NAME
    tmp = path.with_name(SERVING_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def withdraw(state_dir: Path) -> None:
    try:
        (Path(state_dir) / SERVING_NAME).unlink()
    except FileNotFoundError:
        pass


def serving_lab(state_dir: Path) -> ServingLab | None:
    """The lab serving `state_dir` in another process (or this one), or None when none says so
    (a `lab drift` or `lab reset` holds the folder, or a lab that died without withdrawing)."""
    try:
        data = json.loads((Path(state_dir) / SERVING_NAME).read_text(encoding="utf-8"))
        pid = int(data["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ServingLab(Path(state_dir), str(data["url"]),
                      Path(data["ca_file"]) if data.get("ca_file") else None,
                      str(data["username"]), str(data["password"]), float(data["time_scale"]),
                      pid, data.get("fleet_sha256"))


__all__ = ["HOST_ROOTS", "ServingLab", "publish", "serving_lab", "withdraw"]
