"""Who reconciles which engine: leases in the shared store, one leader per engine.

Replicas of the controller share one store (PostgreSQL across machines; an SQLite file on one
machine works the same way). Each replica runs one `LeaseKeeper`, which every `tick` seconds:

- keeps its presence lease `replica:<id>` (how replicas count each other);
- renews the lease `engine:<engine id>` of each engine it leads;
- takes engines whose lease is free or expired, spreading them: while it leads fewer than its
  fair share (engines / live replicas, rounded up) it takes one at once; at or above its share it
  takes one only after the lease stayed free for a whole `ttl` (so no engine is ever left
  without a leader, yet a replica that just joined gets its share);
- gives one engine up per tick while it leads more than its share and that engine is idle
  (no apply running): engines move to a replica that joined, never in the middle of an apply.

Fencing by time: an engine counts as led until `sent + ttl`, where `sent` is when the renewal
that succeeded was sent (monotonic clock). The store computes the expiry from when it ran the
statement, which is later, so a leader that cannot renew (store unreachable, process frozen)
stops acting before anyone else may take over. A lease that is not renewed is taken after `ttl`:
that is the hand-over time after `kill -9` (plus at most one tick).

A clean stop releases the leases, so the other replicas take over at their next tick.
"""
from __future__ import annotations

import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reconciler import log
from reconciler.errors import ReconcilerError

DEFAULT_TTL = 10.0
ENGINE_PREFIX = "engine:"
REPLICA_PREFIX = "replica:"


def replica_id(hostname: str | None = None) -> str:
    """`<host>:<pid>:<4 hex>`: readable on /status, unique across restarts of one pid."""
    return f"{hostname or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True)
class EngineLease:
    """What a replica knows of one engine's lease (for /status and /metrics)."""

    engine: str
    leader: str | None           # holder's replica id; None: nobody
    term: int
    expires_at: float | None     # epoch seconds by the store's lease clock
    mine: bool
    taken_over_from: str | None = None


class LeaseKeeper:
    """One replica's leases. `leading(engine)` is what engine loops ask before acting."""

    def __init__(self, store: Any, replica: str, *, ttl: float = DEFAULT_TTL,
                 tick: float | None = None,
                 on_gain: Callable[[str, EngineLease], None] | None = None,
                 on_loss: Callable[[str], None] | None = None,
                 busy: Callable[[str], bool] | None = None,
                 on_view: Callable[[dict[str, EngineLease]], None] | None = None) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be more than 0")
        self.store = store
        self.replica = replica
        self.ttl = ttl
        self.tick_every = tick if tick is not None else min(1.0, ttl / 4)
        self._on_gain = on_gain or (lambda _e, _l: None)
        self._on_loss = on_loss or (lambda _e: None)
        self._busy = busy or (lambda _e: False)
        self._on_view = on_view or (lambda _v: None)
        self._lock = threading.Lock()
        self._engines: list[str] = []
        self._until: dict[str, float] = {}          # engine -> monotonic deadline
        self._free_since: dict[str, float] = {}     # engine -> monotonic time first seen free
        self._view: dict[str, EngineLease] = {}
        self.replicas = 1
        self.transitions = 0
        self.healthy = False                        # the last tick reached the store
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log.get_logger("controller.leases")

    # ---- what the engine loops and the status page read ------------------------------------

    def set_engines(self, engines: Iterable[str]) -> None:
        with self._lock:
            self._engines = list(dict.fromkeys(engines))

    def leading(self, engine: str) -> bool:
        with self._lock:
            return time.monotonic() < self._until.get(engine, 0.0)

    def led(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [e for e in self._engines if now < self._until.get(e, 0.0)]

    def view(self) -> dict[str, EngineLease]:
        with self._lock:
            return dict(self._view)

    # ---- the ticks ----------------------------------------------------------------------------

    def tick(self) -> None:
        """One round: presence, renewals, take-overs, hand-backs (see the module doc)."""
        sent = time.monotonic()
        try:
            self._tick(sent)
            self.healthy, self.error = True, None
        except ReconcilerError as exc:
            # Leases held stay valid until their deadline and then lapse on their own.
            self.healthy, self.error = False, str(exc)
            self._log.warning("controller.lease_tick_failed", error=str(exc))
        self._expire(time.monotonic())

    def _tick(self, sent: float) -> None:
        store, me, ttl = self.store, self.replica, self.ttl
        store.acquire_lease(REPLICA_PREFIX + me, me, ttl)
        now = store.lease_now()
        leases = {lease.name: lease for lease in store.leases()}
        live = [n for n, lease in leases.items()
                if n.startswith(REPLICA_PREFIX) and lease.expires_at.timestamp() > now]
        with self._lock:
            engines = list(self._engines)
        self.replicas = max(1, len(live))
        share = math.ceil(len(engines) / self.replicas) if engines else 0
        mine = [e for e in engines if self._holder(leases.get(ENGINE_PREFIX + e), now) == me]
        view: dict[str, EngineLease] = {}
        for engine in engines:
            name = ENGINE_PREFIX + engine
            lease = leases.get(name)
            holder = self._holder(lease, now)
            got = None
            if holder == me:
                got = store.acquire_lease(name, me, ttl)
                if got is None:
                    self._lost(engine)
            elif holder is None:
                first_free = self._free_since.setdefault(engine, sent)
                if len(mine) < share or sent - first_free >= ttl:
                    got = store.acquire_lease(name, me, ttl)
                    if got is not None:
                        mine.append(engine)
            else:
                self._free_since.pop(engine, None)
            if got is not None:
                self._free_since.pop(engine, None)
                gained = not self.leading(engine)
                with self._lock:
                    self._until[engine] = sent + ttl
                if gained:
                    self.transitions += 1
                    self._log.info("controller.lease_gained", engine=engine, term=got.term,
                                   taken_over_from=got.taken_over_from)
                    current = EngineLease(engine, me, got.term, got.expires_at.timestamp(), True,
                                          got.taken_over_from)
                    view[engine] = current
                    self._on_gain(engine, current)
                    continue
                lease = got
            view[engine] = EngineLease(
                engine, self._holder(lease, now) if got is None else me,
                lease.term if lease is not None else 0,
                lease.expires_at.timestamp() if lease is not None else None,
                got is not None)
        # Hand one engine back while above the fair share (engines move to a new replica).
        if len(mine) > share:
            for engine in reversed(mine):
                if not self._busy(engine) and self.leading(engine):
                    self.release(engine)
                    break
        with self._lock:
            self._view = view
        self._on_view(view)

    @staticmethod
    def _holder(lease: Any, now: float) -> str | None:
        if lease is None or lease.expires_at.timestamp() <= now:
            return None
        return str(lease.holder)

    def _lost(self, engine: str) -> None:
        with self._lock:
            was = self._until.pop(engine, 0.0) > time.monotonic()
        if was:
            self.transitions += 1
            self._log.warning("controller.lease_lost", engine=engine)
            self._on_loss(engine)

    def _expire(self, now: float) -> None:
        """Engines whose deadline passed without a renewal: no longer led by us."""
        with self._lock:
            gone = [e for e, until in self._until.items() if until <= now]
            for engine in gone:
                del self._until[engine]
        for engine in gone:
            self.transitions += 1
            self._log.warning("controller.lease_expired", engine=engine)
            self._on_loss(engine)

    def release(self, engine: str) -> None:
        with self._lock:
            self._until.pop(engine, None)
        try:
            self.store.release_lease(ENGINE_PREFIX + engine, self.replica)
        except ReconcilerError as exc:
            self._log.warning("controller.lease_release_failed", engine=engine, error=str(exc))
        self.transitions += 1
        self._log.info("controller.lease_released", engine=engine)
        self._on_loss(engine)

    # ---- the thread -----------------------------------------------------------------------------

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            self.tick()
            if self._stop.wait(max(0.0, self.tick_every - (time.monotonic() - started))):
                return

    def stop(self, release: bool = True) -> None:
        """Stop ticking; release every lease held (a clean hand-over) unless told not to."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if not release:
            return
        with self._lock:
            held = [e for e, until in self._until.items() if until > time.monotonic()]
            self._until.clear()
        for engine in held:
            try:
                self.store.release_lease(ENGINE_PREFIX + engine, self.replica)
            except ReconcilerError:
                pass
        try:
            self.store.release_lease(REPLICA_PREFIX + self.replica, self.replica)
        except ReconcilerError:
            pass


__all__ = ["DEFAULT_TTL", "EngineLease", "LeaseKeeper", "replica_id"]
