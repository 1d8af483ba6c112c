"""Progress of an apply: a live one-line view on a terminal, one structured log event per step
otherwise (run id, target, action, disruption, outcome, duration).

The executor only calls `step_started` / `step_finished` / `message`; which form is shown is
decided here, from whether the stream is a TTY.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

from reconciler.log import get_logger

log = get_logger("reconciler.apply")


@dataclass(frozen=True)
class StepEvent:
    run_id: str
    step_id: str
    target: str
    action: str
    disruption: str
    wave: int | None = None


class Progress(Protocol):
    """`run_started(run_id, steps_total)` is optional: the executor calls it when present."""

    def step_started(self, event: StepEvent) -> None: ...

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class LogProgress:
    """One structured event per finished step (JSON lines when not on a TTY)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def run_started(self, run_id: str, steps_total: int) -> None:
        log.debug("apply.run_started", run_id=run_id, steps_total=steps_total)

    def step_started(self, event: StepEvent) -> None:
        log.debug("apply.step_started", run_id=event.run_id, step=event.step_id,
                  target=event.target, action=event.action, disruption=event.disruption,
                  wave=event.wave)

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        emit = log.info if outcome in ("ok", "skipped", "pending") else log.error
        emit("apply.step", run_id=event.run_id, step=event.step_id, target=event.target,
             action=event.action, disruption=event.disruption, wave=event.wave, outcome=outcome,
             duration=round(seconds, 3), message=message)

    def message(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveLine:
    """`\\r`-updated status line: wave, step and elapsed time, refreshed while a step runs;
    finished steps are printed as permanent lines above it."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic,
                 refresh: float = 0.5) -> None:
        self.stream = stream
        self.clock = clock
        self.refresh = refresh
        self._lock = threading.Lock()
        self._current: StepEvent | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="apply-progress", daemon=True)
        self._thread.start()

    def _width(self) -> int:
        return max(40, shutil.get_terminal_size((100, 20)).columns - 1)

    def _draw(self) -> None:
        event = self._current
        if event is None:
            return
        wave = f"wave {event.wave} | " if event.wave else ""
        text = (f"{wave}{event.target} {event.action} [{event.disruption}] "
                f"{self.clock() - self._since:5.1f}s")
        self.stream.write("\r\x1b[K" + text[: self._width()])
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh):
            with self._lock:
                self._draw()

    def step_started(self, event: StepEvent) -> None:
        with self._lock:
            self._current, self._since = event, self.clock()
            self._draw()

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        with self._lock:
            self._current = None
            mark = {"ok": "ok", "skipped": "--", "pending": "..", "failed": "!!"}.get(outcome,
                                                                                    outcome)
            line = f"[{mark}] {event.target} {event.action} ({seconds:.1f}s)"
            if message and outcome != "ok":
                line += f": {message}"
            self.stream.write("\r\x1b[K" + line + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        with self._lock:
            self.stream.write("\r\x1b[K" + text + "\n")
            self.stream.flush()
            self._draw()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class StepLines(LogProgress):
    """One plain line per finished step on `stream` (plus the structured log event), for a
    reader following along without a terminal, such as `reconcile demo` in a pipe."""

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        super().step_finished(event, outcome, seconds, message)
        if self.stream is not None:
            wave = f"wave {event.wave}: " if event.wave else ""
            line = f"  [{outcome}] {wave}{event.target} {event.action} ({seconds:.1f}s)"
            if message:
                line += f": {message}"
            print(line, file=self.stream, flush=True)


def for_stream(stream: TextIO) -> Progress:
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return LiveLine(stream)
    return LogProgress(stream)


__all__ = ["LiveLine", "LogProgress", "Progress", "StepEvent", "StepLines", "for_stream"]
