"""Is a process on this host provably gone? (Linux, /proc)

The apply lock takes over from a holder on this host without asking only when its process is
provably gone, so these answers lean one way: any doubt (no permission to look, /proc hidden by
a container or systemd's ProtectProc=invisible, an unreadable stat line) counts as *alive*. A
lock that waits for an operator is an annoyance; two applies on one fleet are an outage.

Nothing here touches a database: every backend asks the same questions about the same host.
"""
from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    return stat[stat.rfind(")") + 2:].split()


def process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a pid's reuse apart."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, D, Z, X, ...), or None when it cannot be read."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def process_gone(pid: int, pid_start: int | None) -> bool:
    """True only when the process is provably gone on this host; any doubt counts as alive."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if process_state(pid) in ("Z", "X"):
        return True   # killed but not yet reaped by its parent
    if pid_start is not None:
        current = process_start(pid)
        if current is not None and current != pid_start:
            return True  # the pid now belongs to a different process
    return False
