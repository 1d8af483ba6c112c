"""Helpers shared by the benchmark scripts and the harness: JSON output, peak RSS, percentiles,
the machine description, and running a Python module in a fresh process with its own rusage."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the figures as a JSON object to FILE")


def write_json(path: Path | None, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` (nothing when `path` is None); atomic so a reader never sees half."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": mem_gib,
            "python": platform.python_version(), "platform": platform.platform()}


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: exit code, wall seconds, its own peak RSS and its output."""

    returncode: int
    seconds: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool
    cpu_seconds: float = 0.0     # its own user + system time: steadier than wall on a busy box


def run_module(module: str, args: Sequence[str], *, timeout: float,
               env: Mapping[str, str] | None = None) -> ChildRun:
    """Run `python -m module args...` in a fresh process; peak RSS is that process's alone.

    The child is started by a small launcher process (`python -m benchmarks.common`), never
    forked from the caller directly: Linux counts the memory a child inherits at fork into its
    ru_maxrss, so a child forked from a process holding a 1,000-host lab would report the lab's
    size. The launcher waits with `os.wait4` (the child's own rusage) and reports it in a file.
    Output goes through temporary files so a chatty child can never block on a full pipe.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = str(REPO) + os.pathsep + child_env.get("PYTHONPATH", "")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        report = Path(tmp) / "rusage.json"
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.common", str(report), "--",
             sys.executable, "-m", module, *args],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env, cwd=REPO,
            start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
        wall = time.perf_counter() - started
        usage = read_json(report) or {}
        out.seek(0)
        err.seek(0)
        code = usage.get("returncode", proc.returncode)
        return ChildRun(int(code) if code is not None else -1,
                        float(usage.get("seconds", wall)), float(usage.get("peak_rss_mib", 0.0)),
                        out.read().decode("utf-8", "replace"),
                        err.read().decode("utf-8", "replace"), timed_out,
                        float(usage.get("cpu_seconds", 0.0)))


def _launch(report: Path, argv: Sequence[str]) -> int:
    """Run argv as a child of this small process and write its own wall time and rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    write_json(report, {"returncode": code, "seconds": seconds,
                        "peak_rss_mib": usage.ru_maxrss / 1024,
                        "cpu_seconds": usage.ru_utime + usage.ru_stime})
    return code


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


if __name__ == "__main__":
    # python -m benchmarks.common REPORT -- COMMAND...   (the launcher of run_module)
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m benchmarks.common REPORT -- COMMAND...")
    sys.exit(_launch(Path(sys.argv[1]), sys.argv[3:]))
