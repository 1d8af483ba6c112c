"""What the state store hands out, whichever database is behind it.

Every backend returns these same frozen records, so callers never see a row, a cursor or a column
order. Times cross the boundary as aware UTC datetimes; inside, the schema keeps them as epoch
seconds (`to_datetime` / `to_epoch` convert), which sorts and compares the same in every SQL
database and needs no time-zone handling there.

Run ids and the default "who" are made here too: a run started through any backend must look the
same in history, in lock messages and on /status.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

# What a caller may end a journal step with.
StepOutcome = Literal["ok", "failed", "skipped"]
STEP_OUTCOMES = frozenset({"ok", "failed", "skipped"})
# Set by the store itself, never by a caller: the step's run died before it ended.
ABANDONED = "abandoned"

# Where a store reads "now" (epoch seconds): time.time, or a test's clock that it moves itself, so
# lock expiry is tested by moving time instead of sleeping through a TTL.
Clock = Callable[[], float]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str                       # apply | plan | drift | controller-pass | ...
    engine_key: str
    spec_revision: str | None
    plan_digest: str | None
    who: str
    host: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None             # None while running (or after a crash, until abandoned)
    message: str | None


@dataclass(frozen=True)
class JournalEntry:
    entry_id: int
    run_id: str
    step_id: str
    target: str
    action: str
    disruption: str
    detail: Mapping[str, Any]
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None             # ok | failed | skipped | abandoned; None = never ended
    message: str | None
    duration: float | None


@dataclass(frozen=True)
class LockInfo:
    engine_key: str
    run_id: str
    who: str
    host: str
    pid: int
    acquired_at: datetime
    heartbeat_at: datetime
    taken_over_from: str | None = None   # run id of the dead holder this lock replaced


@dataclass(frozen=True)
class LeaseInfo:
    """Who leads `name` until when (lease.py)."""

    name: str                       # e.g. "engine:https://engine.example.com/ovirt-engine/api"
    holder: str                     # the holder's own id, e.g. "ctl-a:4242:ab12"
    term: int                       # grows by one at each change of holder (a fencing token)
    acquired_at: datetime           # when this holder took it
    renewed_at: datetime
    expires_at: datetime
    taken_over_from: str | None = None   # the holder whose expired lease this one replaced


@dataclass(frozen=True)
class DriftItemRecord:
    key: str                        # object key, e.g. "host:gpu-01" or "vm:cad-ws-01"
    cls: str                        # drift class, e.g. "kernel-cmdline", "vm-devices"
    message: str


@dataclass(frozen=True)
class DriftRecord:
    key: str
    cls: str
    message: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class DriftChange:
    """What one `record_drift` call changed: items seen for the first time and items gone."""

    new: tuple[DriftItemRecord, ...]
    resolved: tuple[DriftItemRecord, ...]


def to_datetime(value: float | None) -> datetime | None:
    """A stored epoch time as an aware UTC datetime (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def to_epoch(at: datetime | float | None, clock: Clock = time.time) -> float:
    """A caller's time as epoch seconds; None means now. Naive datetimes are refused: guessing
    their zone would shift first-seen times by hours without anyone noticing."""
    if at is None:
        return clock()
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("naive datetime: give times in UTC with tzinfo")
        return at.timestamp()
    return float(at)


def new_run_id(now: float | None = None) -> str:
    """`r-YYYYMMDD-HHMMSS-xxxx`: sortable by start time, readable in a log line, and the 4 random
    hex digits keep runs started in the same second apart."""
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    return f"r-{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def default_who() -> str:
    """The user a run or a lock is recorded for when the caller names none."""
    try:
        import getpass
        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return f"uid {os.getuid()}"
