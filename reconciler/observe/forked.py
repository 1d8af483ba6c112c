"""One function run in a forked child process, its result taken back: a second core for the
engine read of a large fleet (`reconciler.observe.engine` parses the host list there while it
parses the VM list itself).

Forked, not spawned: the child starts at once with everything already imported, where a new
interpreter spends ~0.3 s importing before it could send a request. A fork is safe only while no
other thread runs (a lock another thread holds at the fork stays held in the child for ever), so
callers ask `can_fork()` first and do the work themselves otherwise (the controller and apply run
threads; so does the embedded lab).

The child sends its result back pickled through a pipe and ends without running exit handlers
or closing anything it inherited. The parent's wait is bounded; a child that fails, dies or
overruns raises `ForkedCallFailed` in the parent and is killed.
"""
from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ForkedCallFailed(Exception):
    """The child gave no result: what it raised, or how it ended."""


def can_fork() -> bool:
    """Whether a fork is safe here: the platform has it and this process runs one thread."""
    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def _run(sender: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In the child: call `fn` and send back (True, result) or (False, what it raised)."""
    try:
        outcome: tuple[bool, Any] = (True, fn(*args))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        outcome = (False, f"{type(exc).__name__}: {exc}")
    try:
        sender.send(outcome)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled, say
        try:
            sender.send((False, f"the result could not be sent: {type(exc).__name__}: {exc}"))
        except Exception:  # noqa: BLE001,S110 - the parent is gone; it reports the missing result
            pass
    finally:
        sender.close()


class ForkedCall(Generic[T]):
    """`fn(*args)` running in a forked child from the moment this is made."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        # Buffered output would be written again by the child when it ends.
        sys.stdout.flush()
        sys.stderr.flush()
        self._process = context.Process(target=_run, args=(sender, fn, args), daemon=True,
                                        name="forked-call")
        self._process.start()
        sender.close()

    def result(self, timeout: float) -> T:
        """The child's result, waiting at most `timeout` seconds for it to begin arriving."""
        try:
            if not self._receiver.poll(timeout):
                raise ForkedCallFailed(f"no result within {timeout:g}s")
            ok, value = self._receiver.recv()
        except (EOFError, OSError):
            self._process.join(timeout=1)
            raise ForkedCallFailed("the child process ended without a result (exit code "
                                   f"{self._process.exitcode})") from None
        finally:
            self.cancel(grace=1.0)
        if not ok:
            raise ForkedCallFailed(value)
        return value  # type: ignore[no-any-return]

    def cancel(self, grace: float = 0.0) -> None:
        """Stop the child, after `grace` seconds for it to end by itself."""
        if grace:
            self._process.join(timeout=grace)
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)
        self._receiver.close()


__all__ = ["ForkedCall", "ForkedCallFailed", "can_fork"]
