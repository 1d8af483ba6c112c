"""What makes the controller reconcile: a coalescing work queue and the triggers that feed it.

Triggers only decide *when* a pass runs, never *what* it does (level-triggered): each one puts a
reason in the `WorkQueue`, and however many arrive while a pass runs, the loop takes them all as
one next pass. Triggers here: spec file changes (`SpecWatcher`, watchfiles, debounced), new engine
events (`EventPoller`, `/events?from=<cursor>` through the SDK), and a periodic full resync
(`ResyncTimer`). The git source's poller lives in `gitsource.py`.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import watchfiles

from reconciler import log
from reconciler.engine.errors import classify
from reconciler.engine.retry import Backoff

SPEC_SUFFIXES = (".yaml", ".yml")


class WorkQueue:
    """Reasons to reconcile, coalesced: `get()` hands out everything queued since the last get."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: dict[str, int] = {}
        self._closed = False

    def put(self, reason: str) -> None:
        with self._cond:
            self._reasons[reason] = self._reasons.get(reason, 0) + 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> frozenset[str]:
        """Wait up to `timeout` for work; empty when nothing came (or the queue is closed)."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._reasons) or self._closed, timeout)
            reasons = frozenset(self._reasons)
            self._reasons.clear()
            return reasons

    def wait_for_any(self, reasons: Iterable[str], timeout: float) -> bool:
        """Wait up to `timeout` until one of `reasons` is queued (left queued); True if so."""
        wanted = frozenset(reasons)
        with self._cond:
            return self._cond.wait_for(
                lambda: bool(wanted & self._reasons.keys()) or self._closed, timeout) \
                and bool(wanted & self._reasons.keys())

    def pending(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._reasons)

    def close(self) -> None:
        """Wake every waiter for good (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed


class _Trigger:
    """A background thread that feeds the queue until `stop()`."""

    name = "trigger"

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> _Trigger:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _EnginePoller(_Trigger):
    """A trigger that polls the engine on a connection of its own (an SDK connection is not safe
    to share between threads) every `interval` seconds; after an error it backs off (capped),
    reconnects and polls again. Subclasses give `poll_once` and set `_connect`, `_backoff`,
    `_log` and `interval`."""

    failure_event = "controller.poll_failed"
    doing = "poll the engine"
    _connect: Callable[[], Any]
    _backoff: Backoff
    interval: float

    def poll_once(self, conn: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _failed(self, failures: int) -> None:
        """After a failed poll (the `failures`-th in a row)."""

    def _run(self) -> None:
        conn: Any = None
        failures = 0
        delay = 0.0
        try:
            while not self._stop.wait(delay):
                started = time.monotonic()
                try:
                    if conn is None:
                        conn = self._connect()
                    self.poll_once(conn)
                    failures = 0
                    delay = max(0.0, self.interval - (time.monotonic() - started))
                except Exception as exc:  # noqa: BLE001 - the SDK raises its own and pycurl's
                    failures += 1
                    delay = self._backoff.delay(failures)
                    self._log.warning(self.failure_event, error=str(classify(exc, self.doing)),
                                      retry_in=round(delay, 1))
                    self._failed(failures)
                    _close_quietly(conn)
                    conn = None
        finally:
            _close_quietly(conn)


class ResyncTimer(_Trigger):
    """A full pass every `interval` seconds, whatever else happens (missed events, host drift
    that raises no engine event)."""

    name = "resync-timer"

    def __init__(self, queue: WorkQueue, interval: float) -> None:
        super().__init__(queue)
        self.interval = interval

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.queue.put("resync")


def spec_filter(paths: Iterable[Path]) -> Callable[[watchfiles.Change, str], bool]:
    """Only spec files count: the named files, and YAML files under the named folders outside
    hidden folders (where `expand_paths` never looks either).

    A named file may be a symlink whose target moves: Kubernetes mounts a ConfigMap as
    `fleet.yaml -> ..data/fleet.yaml` and updates it by swapping the `..data` symlink to a new
    `..<timestamp>` folder, so the swap itself (a `..` entry beside the file) counts, and the
    file's target is resolved afresh for every change.

    The filter runs once per changed path, possibly for a whole tree being written into a spec
    folder: it decides on strings first and touches the file system only for named files."""
    paths = list(paths)
    named = [Path(os.path.abspath(p)) for p in paths if not p.is_dir()]
    files = {p.resolve() for p in named}
    parents = {p.parent for p in named} | {p.parent.resolve() for p in named}
    dirs = [str(p.resolve()) + os.sep for p in paths if p.is_dir()]
    default = watchfiles.DefaultFilter()

    def in_spec_folder(path: str) -> bool:
        for d in dirs:
            if path.startswith(d):
                parts = path[len(d):].split(os.sep)
                # `..data` and `..<timestamp>/`: a ConfigMap's atomic writer swapping the
                # folder's content; other hidden folders never hold specs.
                return parts[0].startswith("..") or not any(p.startswith(".") for p in parts)
        return False

    def accept(change: watchfiles.Change, path: str) -> bool:
        if named:
            changed = Path(path)
            if changed.parent in parents and changed.name.startswith(".."):
                return True
            resolved = changed.resolve()
            if resolved in files or changed in named or any(resolved == p.resolve()
                                                            for p in named):
                return True
        if not in_spec_folder(path):
            return False
        if os.path.basename(path).startswith("..") and path[:path.rfind(os.sep) + 1] in dirs:
            return True
        return path.endswith(SPEC_SUFFIXES) and default(change, path)
    return accept


class SpecWatcher(_Trigger):
    """Enqueues "spec" when a spec file changes. Files are watched through their folder, since
    editors and `git checkout` replace files by renaming (a watch on the old inode would go deaf).
    watchfiles groups a burst of writes: it yields once no change came for `step_ms`, and at the
    latest after `debounce_ms`."""

    name = "spec-watcher"

    def __init__(self, queue: WorkQueue, paths: Iterable[str | Path], debounce_ms: int = 200,
                 step_ms: int = 50) -> None:
        super().__init__(queue)
        self.paths = [Path(p) for p in paths]
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self._log = log.get_logger("controller.triggers")
        self.ready = threading.Event()

    def _roots(self) -> list[Path]:
        roots = {(p if p.is_dir() else p.parent).resolve() for p in self.paths}
        return sorted(r for r in roots if r.exists())

    def _run(self) -> None:
        accept = spec_filter(self.paths)
        while not self._stop.is_set():
            roots = self._roots()
            if not roots:
                self.ready.set()
                self._stop.wait(1.0)
                continue
            try:
                # yield_on_timeout: an empty set every rust_timeout, which marks the watch as set
                # up (tests and the benchmark wait for it) and lets the thread notice stop().
                for changes in watchfiles.watch(
                        *roots, watch_filter=accept, debounce=self.debounce_ms, step=self.step_ms,
                        stop_event=self._stop, rust_timeout=200, yield_on_timeout=True,
                        raise_interrupt=False):
                    self.ready.set()
                    if changes:
                        self._log.info("controller.spec_changed", files=sorted({c[1] for c in changes}))
                        self.queue.put("spec")
            except (OSError, RuntimeError) as exc:
                # A watched folder removed or replaced: watch again after a pause.
                self._log.warning("controller.spec_watch_failed", error=str(exc))
                self._stop.wait(1.0)


def event_is_ours(event: Any, correlation_ids: Callable[[], Iterable[str]]) -> bool:
    cid = getattr(event, "correlation_id", None)
    return bool(cid) and cid in set(correlation_ids())


class EventPoller(_EnginePoller):
    """Polls the engine's audit log incrementally and enqueues "engine-event" when anything new
    appears that our own applies did not cause.

    The cursor starts at the newest event (`max=1`), so history never triggers; the engine lists
    newest first, so the highest index of each answer becomes the next cursor. The poller has its
    own connection (an SDK connection is not safe to share between threads); on errors it backs
    off (capped) and reconnects, and the periodic resync covers what it misses meanwhile.
    """

    name = "event-poller"
    failure_event = "controller.event_poll_failed"
    doing = "poll engine events"

    def __init__(self, queue: WorkQueue, connect: Callable[[], Any], interval: float = 1.0,
                 ours: Callable[[], Iterable[str]] = lambda: (),
                 on_request: Callable[[bool], None] | None = None,
                 backoff_cap: float = 30.0) -> None:
        super().__init__(queue)
        self._connect = connect
        self.interval = interval
        self._ours = ours
        self._on_request = on_request or (lambda _failed: None)
        self._backoff = Backoff(initial=2 * interval, cap=max(backoff_cap, 2 * interval),
                                jitter=0.0)
        self.cursor: int | None = None
        self.ready = threading.Event()
        self._log = log.get_logger("controller.triggers")

    def _list(self, conn: Any, **kwargs: Any) -> list[Any]:
        try:
            events = conn.system_service().events_service().list(**kwargs)
        except Exception:
            self._on_request(True)
            raise
        self._on_request(False)
        return list(events)

    def poll_once(self, conn: Any) -> int:
        """One poll; returns how many new events not caused by us it saw."""
        if self.cursor is None:
            latest = self._list(conn, max=1)
            self.cursor = max((int(e.index) for e in latest), default=0)
            self.ready.set()
            return 0
        events = self._list(conn, from_=self.cursor)
        if not events:
            return 0
        self.cursor = max(self.cursor, max(int(e.index) for e in events))
        foreign = [e for e in events if not event_is_ours(e, self._ours)]
        if foreign:
            self._log.debug("controller.engine_events", count=len(foreign), cursor=self.cursor,
                            codes=sorted({int(e.code) for e in foreign if e.code is not None}))
            self.queue.put("engine-event")
        return len(foreign)


def _close_quietly(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - logout failures do not matter here
        pass


__all__ = ["EventPoller", "ResyncTimer", "SpecWatcher", "WorkQueue", "event_is_ours",
           "spec_filter"]
