"""Run the `reconcile` CLI and SIGKILL it right after its N-th apply-journal boundary.

    python -m tests.support.killpoint N [reconcile arguments ...]

A boundary is one committed write of the apply journal (`reconciler.store`): a step begun (its row
inserted) or a step ended (its row given an outcome). The process is the real CLI in a real
process; the only addition is a count of those writes, and when the N-th has been committed the
process sends itself SIGKILL from the thread that made it, before that thread runs another line:
no later step, no `finally`, no exit handler. With N = 0 nothing is killed (the run that learns
how many boundaries an apply has).

The crash-recovery test (tests/apply/test_cli.py) runs it once per boundary, which makes each kill
point exact and each failure replayable from its N alone.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


def arm(kill_at: int) -> None:
    """Count the store's journal writes in this process; SIGKILL it at the `kill_at`-th."""
    from reconciler.store import Store

    lock = threading.Lock()
    committed = 0

    def counted(write: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(write)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal committed
            result = write(*args, **kwargs)      # returns once the transaction is committed
            with lock:
                committed += 1
                if committed == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    Store.journal_begin = counted(Store.journal_begin)  # type: ignore[method-assign]
    Store.journal_end = counted(Store.journal_end)  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    kill_at = int(argv[0])
    if kill_at:
        arm(kill_at)
    from reconciler.cli import main as reconcile
    return reconcile(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
