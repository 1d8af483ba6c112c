"""Process liveness on this host: "gone" only when provable, as the lock's take-over needs."""
from __future__ import annotations

import os
import subprocess
import sys

from reconciler.store import process_gone
from reconciler.store.liveness import process_start


def test_process_gone_is_conservative() -> None:
    assert not process_gone(os.getpid(), None)
    assert not process_gone(1, None)          # exists (maybe not ours): alive
    assert not process_gone(0, None)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_gone(proc.pid, None)


def test_a_reused_pid_is_recognised_by_its_start_time() -> None:
    mine = process_start(os.getpid())
    assert mine is not None
    assert not process_gone(os.getpid(), mine)
    assert process_gone(os.getpid(), mine + 1)
