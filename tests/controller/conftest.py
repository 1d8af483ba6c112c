"""Fixtures for the controller tests: the demo fleet served by the lab engine in this process (real
HTTPS, real ovirtsdk4, and its request log to prove what the controller sent), specs that point at
it like a production spec points at an engine (url, CA file, password file), and the controller
itself run as `reconcile controller` in a subprocess, read through its /status and /metrics."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
import yaml

from reconciler_lab.server import LabServer
from tests.support import waiting
from tests.support.secrets import write_secret

REPO = Path(__file__).resolve().parents[2]
MUTATING = ("POST", "PUT", "DELETE")
WAIT = waiting.CEILING   # a ceiling for conditions, never a speed claim

# In sync with the demo fleet as it starts: m60-01 boots what its profile asks for, vdi-01 runs
# its one GRID M60-2Q with a VNC console.
IN_SYNC = {
    "hostProfiles": [
        {"name": "m60", "selector": {"cluster": "gpu-intel", "names": ["m60-01"]},
         "kernel": {"iommu": True, "blacklistNouveau": True},
         "vgpu": {"placement": "consolidated"}},
    ],
    "vms": [
        {"name": "vdi-01", "vgpu": {"type": "nvidia-18", "instances": 1,
                                    "secondaryDisplay": "vnc"}, "restart": "whenDown"},
    ],
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as server:
        yield server


@pytest.fixture
def slow_lab(tmp_path: Path) -> Iterator[LabServer]:
    """Engine operations take seconds (a host cycle ~7 s), so a signal can land mid-apply."""
    with LabServer("demo", tmp_path / "lab", time_scale=0.1) as server:
        yield server


def engine_block(lab: LabServer, folder: Path) -> dict[str, Any]:
    password = folder / "engine-password"
    write_secret(password, lab.password + "\n")
    return {"url": lab.url, "username": lab.username,
            "passwordFrom": {"file": str(password)}, "caFile": str(lab.ca_file)}


# t4-01 has its args configured but never booted them: converging it needs a host cycle.
T4_NEEDS_A_CYCLE: dict[str, Any] = {
    "hostProfiles": [{"name": "t4", "selector": {"names": ["t4-01"]},
                      "kernel": {"iommu": True, "blacklistNouveau": True}}]}


def spec_text(lab: LabServer, folder: Path, body: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"apiVersion": "gpu-reconciler/v1",
                           "engine": engine_block(lab, folder)}
    doc.update(body if body is not None else IN_SYNC)
    return yaml.safe_dump(doc, sort_keys=False)


def write_spec(lab: LabServer, folder: Path, body: dict[str, Any] | None = None,
               name: str = "fleet.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(spec_text(lab, folder, body))
    os.replace(tmp, path)            # as editors and git do: never a half-written spec
    return path


def sdk_connection(lab: LabServer) -> sdk.Connection:
    return sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))


def remove_vgpus(conn: sdk.Connection, vm_name: str) -> int:
    """The out-of-band change: delete a VM's mediated devices through the API."""
    vms = conn.system_service().vms_service()
    vm = vms.list(search=f"name={vm_name}")[0]
    mdevs = vms.vm_service(vm.id).mediated_devices_service()
    found = mdevs.list()
    for device in found:
        mdevs.device_service(device.id).remove()
    return len(found)


def vgpu_count(conn: sdk.Connection, vm_name: str) -> int:
    vms = conn.system_service().vms_service()
    vm = vms.list(search=f"name={vm_name}")[0]
    return len(vms.vm_service(vm.id).mediated_devices_service().list())


def set_kernel_cmdline(conn: sdk.Connection, host_name: str, cmdline: str) -> None:
    hosts = conn.system_service().hosts_service()
    host = hosts.list(search=f"name={host_name}")[0]
    hosts.host_service(host.id).update(
        types.Host(os=types.OperatingSystem(custom_kernel_cmdline=cmdline)))


def mutating_requests(lab: LabServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in lab.request_log
            if r.method in MUTATING and r.path.startswith("/ovirt-engine/api")]


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT,
             every: float = 0.1) -> Any:
    return waiting.wait_for(check, timeout, every=every, what=what)


class ControllerProcess:
    """`reconcile controller ...` in a subprocess; logs (JSON lines) go to a file."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--log-format", "json", "--log-level", "debug",
             "controller", *args, "--listen", "127.0.0.1:0"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        self.url = wait_for("the status server", self._url, timeout=20)

    def _url(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.logs()}")
        match = re.search(r'"url": "(http://127\.0\.0\.1:\d+)"', self.logs())
        return match.group(1) if match else None

    def logs(self) -> str:
        return self.log_path.read_text()

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200, body
        return json.loads(body)

    def metrics(self) -> str:
        code, body = self.get("/metrics")
        assert code == 200
        return body

    def wait_ready(self) -> dict[str, Any]:
        wait_for("/readyz", lambda: self.get("/readyz")[0] == 200)
        return self.status()

    def drift_keys(self) -> set[str]:
        return {i["key"] for i in self.status()["drift"]["items"]}

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_controller(tmp_path: Path) -> Iterator[Callable[..., ControllerProcess]]:
    started: list[ControllerProcess] = []

    def start(*args: str, name: str = "controller") -> ControllerProcess:
        proc = ControllerProcess(list(args), tmp_path / f"{name}-{len(started)}.log", tmp_path)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)
