"""One apply per engine, across state files, processes and machines: a lock kept on the engine.

The lock is a quota named `gpu-reconciler-apply-lock` in the engine's first data center (by id).
The engine makes its creation atomic: quota names are unique in its database
(`quota_quota_name_unique UNIQUE (quota_name)` in ovirt-engine's schema; a second AddQuota with
the name fails validation with ACTION_TYPE_FAILED_NAME_ALREADY_USED, and two racing inserts cannot
both pass the constraint). The quota's description, which the holder alone writes, says who holds
it: run id, user, machine, pid, and when it was taken and last renewed, in the engine's own clock
(the API root's `time`), so that machines whose clocks disagree still agree on expiry. A quota has
no effect on a data center whose quota mode is disabled (the default), and none on an enforced
one either while no VM or disk is assigned to it.

The holder renews it every `ttl / 4`; a lock not renewed for `ttl` belongs to a dead holder and is
taken over: deleted by id (a delete by id cannot remove a lock someone else has taken meanwhile),
then created again, which only one contender can do.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import ovirtsdk4.types as types

from reconciler.engine.errors import EngineRefused, NotFoundOnEngine
from reconciler.engine.retry import DEFAULT_TIMING, Timing, read, retry
from reconciler.errors import EngineError, LockedError
from reconciler.log import get_logger
from reconciler.store.liveness import process_gone, process_start

log = get_logger(__name__)

LOCK_NAME = "gpu-reconciler-apply-lock"
DEFAULT_TTL = 120.0
_MAX_DESCRIPTION = 250           # the quota's description column


@dataclass(frozen=True)
class Holder:
    run_id: str
    who: str
    host: str
    pid: int
    pid_start: int | None = None  # the process's start (clock ticks), to tell a reused pid apart
    since: float = 0.0           # engine time, epoch seconds
    beat: float = 0.0

    def to_text(self) -> str:
        text = json.dumps({"run": self.run_id, "who": self.who[:32], "host": self.host[:64],
                           "pid": self.pid, "start": self.pid_start, "since": round(self.since),
                           "beat": round(self.beat)}, separators=(",", ":"))
        return text[:_MAX_DESCRIPTION]

    @staticmethod
    def from_text(text: str | None) -> Holder | None:
        try:
            data = json.loads(text or "")
            start = data.get("start")
            return Holder(str(data["run"]), str(data["who"]), str(data["host"]),
                          int(data["pid"]), int(start) if start is not None else None,
                          float(data["since"]), float(data["beat"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def at(self, since: float, beat: float) -> Holder:
        return replace(self, since=since, beat=beat)

    def gone_from_here(self) -> bool:
        """Its process ran on this machine and is provably gone (any doubt: alive)."""
        return self.host == socket.gethostname() and process_gone(self.pid, self.pid_start)

    def is_this_process(self) -> bool:
        """An earlier run of this very process (a controller) that could not release it, e.g.
        because the engine was gone at the time: one process runs one apply at a time."""
        return (self.host == socket.gethostname() and self.pid == os.getpid()
                and self.pid_start == process_start(os.getpid()))

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds")
        return (f"run {self.run_id} of {self.who} on {self.host} (pid {self.pid}), held since "
                f"{since}")


def this_holder(run_id: str) -> Holder:
    try:
        who = os.getlogin()
    except OSError:
        who = os.environ.get("USER") or str(os.getuid())
    return Holder(run_id, who, socket.gethostname(), os.getpid(), process_start(os.getpid()))


class EngineLock:
    """The lock on one engine, for one run. `hold()` is the way to use it."""

    def __init__(self, connect: Callable[[], Any], holder: Holder, *, ttl: float = DEFAULT_TTL,
                 timing: Timing = DEFAULT_TIMING) -> None:
        self._connect = connect
        self.holder = holder
        self.ttl = ttl
        self.timing = timing
        self._quota_id: str | None = None
        self._dc_id: str | None = None
        self.requests = 0              # API requests the lock sent (all its connections)
        self.failed = 0

    def _open(self) -> Any:
        return self._connect()

    def _close(self, conn: Any) -> None:
        self.requests += getattr(conn, "request_count", 0)
        self.failed += getattr(conn, "failed_count", 0)
        _close(conn)

    # ---- engine reads -------------------------------------------------------------------------

    def _now(self, conn: Any) -> float:
        api = read(lambda: conn.system_service().get(), "read the engine's time",
                   timing=self.timing)
        moment = api.time or datetime.now(timezone.utc)
        return moment.timestamp()

    def _quotas(self, conn: Any) -> Any:
        if self._dc_id is None:
            dcs = read(lambda: conn.system_service().data_centers_service().list(),
                       "list data centers", timing=self.timing)
            if not dcs:
                raise EngineError("the engine has no data center to keep the apply lock in")
            self._dc_id = sorted(dc.id for dc in dcs)[0]
        return (conn.system_service().data_centers_service().data_center_service(self._dc_id)
                .quotas_service())

    def _find(self, conn: Any) -> Any | None:
        quotas = self._quotas(conn)
        found = read(lambda: quotas.list(), "list quotas", timing=self.timing)
        return next((q for q in found or () if q.name == LOCK_NAME), None)

    # ---- the lock ---------------------------------------------------------------------------

    def acquire(self, force_unlock: str | None = None) -> Holder | None:
        """Take the lock, or raise LockedError naming its holder. Returns the holder whose dead
        (or, with `force_unlock` naming its run, unwanted) lock was taken over, if any."""
        conn = self._open()
        try:
            now = self._now(conn)
            mine = self.holder.at(now, now)
            if self._create(conn, mine):
                self.holder = mine
                return None
            existing = self._find(conn)
            if existing is None:            # released meanwhile: one more try
                if self._create(conn, mine):
                    self.holder = mine
                    return None
                existing = self._find(conn)
            held = Holder.from_text(existing.description if existing is not None else None)
            if held is None or existing is None:
                raise LockedError(f"the engine's apply lock ({LOCK_NAME}) is held by an unknown "
                                  "holder; if no apply runs, remove that quota from the engine")
            age = now - held.beat
            # Dead: not renewed for a whole ttl, or its process provably gone on this machine;
            # --force-unlock RUN-ID takes over from a holder silent for half a ttl.
            dead = age > self.ttl or held.gone_from_here() or held.is_this_process()
            forced = force_unlock == held.run_id and age > self.ttl / 2
            if not (dead or forced):
                hint = (f"; if that process is dead, wait {round(self.ttl - age)}s or use "
                        f"--force-unlock {held.run_id}" if age > self.ttl / 2 else "")
                raise LockedError(f"another apply holds this engine: {held.describe()}; last "
                                  f"renewed {round(age)}s ago (the lock expires {round(self.ttl)}s "
                                  f"after its last renewal){hint}")
            self._delete(conn, existing.id)       # by id: never a lock taken meanwhile
            if not self._create(conn, mine):
                other = Holder.from_text(getattr(self._find(conn), "description", None))
                raise LockedError("another apply took this engine's lock first: "
                                  + (other.describe() if other else "unknown holder"))
            self.holder = mine
            log.warning("apply.engine_lock_taken_over", previous=held.describe())
            return held
        finally:
            self._close(conn)

    def _create(self, conn: Any, holder: Holder) -> bool:
        quotas = self._quotas(conn)
        try:
            quota = retry(lambda: quotas.add(types.Quota(name=LOCK_NAME,
                                                         description=holder.to_text())),
                          "take the engine's apply lock", timing=self.timing,
                          landed=lambda: self._is_mine(conn, holder))
        except EngineRefused:
            return False
        if quota is None:                         # the reply was lost, but it is ours
            found = self._find(conn)
            self._quota_id = found.id if found is not None else None
        else:
            self._quota_id = quota.id
        return self._quota_id is not None

    def _is_mine(self, conn: Any, holder: Holder) -> bool:
        found = self._find(conn)
        held = Holder.from_text(found.description) if found is not None else None
        return held is not None and held.run_id == holder.run_id

    def _delete(self, conn: Any, quota_id: str) -> None:
        service = self._quotas(conn).quota_service(quota_id)
        try:
            retry(lambda: service.remove(), "remove the engine's apply lock", timing=self.timing)
        except NotFoundOnEngine:
            pass

    def renew(self) -> None:
        conn = self._open()
        try:
            if self._quota_id is None:
                return
            now = self._now(conn)
            renewed = self.holder.at(self.holder.since, now)
            service = self._quotas(conn).quota_service(self._quota_id)
            retry(lambda: service.update(types.Quota(description=renewed.to_text())),
                  "renew the engine's apply lock", timing=self.timing)
            self.holder = renewed
        finally:
            self._close(conn)

    def release(self) -> None:
        if self._quota_id is None:
            return
        conn = self._open()
        try:
            found = self._find(conn)
            held = Holder.from_text(found.description) if found is not None else None
            if found is not None and held is not None and held.run_id == self.holder.run_id:
                self._delete(conn, found.id)
            self._quota_id = None
        finally:
            self._close(conn)

    @contextmanager
    def hold(self, force_unlock: str | None = None) -> Iterator[Holder | None]:
        """Hold the lock for the `with` block, renewing it in the background."""
        taken_over = self.acquire(force_unlock)
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.ttl / 4):
                try:
                    self.renew()
                except EngineError as err:
                    # The next renewal may succeed; a lock not renewed for ttl expires.
                    log.warning("apply.engine_lock_renew_failed", error=str(err))

        thread = threading.Thread(target=renew, name="engine-lock", daemon=True)
        thread.start()
        try:
            yield taken_over
        finally:
            done.set()
            thread.join()
            try:
                self.release()
            except EngineError as err:
                log.warning("apply.engine_lock_release_failed", error=str(err),
                            expires_in=self.ttl)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a failed logout must not hide the outcome
        pass


__all__ = ["DEFAULT_TTL", "EngineLock", "Holder", "LOCK_NAME", "this_holder"]
