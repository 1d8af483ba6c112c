"""One lab per state folder: an advisory lock held while a lab (served, embedded) or a lab
maintenance command (drift, reset) uses the folder.

Two engines on one folder would each save their own view over the other's, so a `lab drift` made
while a controller runs the embedded lab, or a `plan` started beside `lab serve`, would be lost
without a word. The lock turns that into a clear refusal. It is `flock(2)` on `<state>/lock`, so
the kernel releases it when the holder exits, however it exits.
"""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler_lab.server import LabError

LOCK_NAME = "lock"


class LabStateBusy(LabError):
    """Another process is using this lab state folder."""


@contextmanager
def state_lock(state_dir: Path) -> Iterator[Path]:
    """Hold the lock of `state_dir` (created if missing) for the body of the `with`."""
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise LabError(f"cannot use {state_dir} as a lab state folder: "
                       f"{err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LabError(f"cannot lock {state_dir / LOCK_NAME}: {err.strerror}") from None
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise LabStateBusy(
                f"the lab state in {state_dir} is in use by another process{who}: stop that "
                "lab first, or use another state folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield state_dir
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)   # closing the descriptor releases the lock


__all__ = ["LOCK_NAME", "LabStateBusy", "state_lock"]
