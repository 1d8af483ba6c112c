"""Progress of an apply: a live display on a terminal (`rich`: step N of M, elapsed, time left;
finished steps and logs above it), one structured log event per step otherwise (run id, target,
action, disruption, outcome, duration).

The executor only calls `step_started` / `step_finished` / `message`; which form is shown is
decided here, from whether the stream is a TTY.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Protocol, TextIO

from reconciler.log import get_logger, use_color

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
    """`run_started(run_id, steps_total)` and `run_finished()` are optional: the executor calls
    them, when present, before the first step and after the last."""

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


class LiveProgress:
    """A live progress display on a terminal, drawn by `rich`: the step running now, "step N of
    M", a bar, the time elapsed and an estimate of the time left. Finished steps, messages and
    every log line (structlog writes to `sys.stderr`, which the display takes over while it runs)
    are printed above it as whole lines, never glued to it. Colour follows the terminal and
    NO_COLOR, as everywhere else."""

    def __init__(self, stream: TextIO, *, refresh_per_second: float = 4.0) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = Console(file=stream, highlight=False, soft_wrap=True,
                               force_terminal=True, no_color=not use_color(stream))
        stdout_tty = getattr(sys.stdout, "isatty", None)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[step]}", markup=False),
            TextColumn("{task.description}", markup=False),      # "[host-reboot]" is text
            BarColumn(bar_width=20),
            TextColumn("elapsed"), TimeElapsedColumn(),
            TextColumn("left"), TimeRemainingColumn(),
            console=self.console, transient=True, refresh_per_second=refresh_per_second,
            redirect_stderr=True,
            # Output a pipe reads must stay on that pipe, not move to the terminal.
            redirect_stdout=bool(stdout_tty and stdout_tty()))
        self._lock = threading.Lock()
        self._running: dict[str, StepEvent] = {}
        self._done = 0
        self._task = self._progress.add_task("", total=None, step="")
        self._live = False

    def _start(self) -> None:
        # Drawn only while steps run: what the run prints before and after (the plan, the
        # summary) goes straight to the stream, and must not meet a half-drawn display.
        if not self._live:
            self._live = True
            self._progress.start()

    def run_started(self, run_id: str, steps_total: int) -> None:
        with self._lock:
            self._progress.update(self._task, total=max(steps_total, 1))
            self._show()
            self._start()

    def run_finished(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._live:
            self._live = False
            self._progress.stop()

    def _show(self) -> None:
        task = self._progress.tasks[0]
        number = min(self._done + max(len(self._running), 1), int(task.total or 0) or 10**9)
        step = (f"step {number} of {int(task.total)}" if task.total else f"step {number}")
        if self._running:
            event = list(self._running.values())[-1]
            wave = f"wave {event.wave} | " if event.wave else ""
            more = f" (+{len(self._running) - 1} more)" if len(self._running) > 1 else ""
            text = f"{wave}{event.target} {event.action} [{event.disruption}]{more}"
        else:
            text = ""
        self._progress.update(self._task, description=text, step=step)

    def step_started(self, event: StepEvent) -> None:
        with self._lock:
            self._running[event.step_id] = event
            self._show()
            self._start()

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        with self._lock:
            self._start()
            self._running.pop(event.step_id, None)
            self._done += 1
            mark = {"ok": "ok", "skipped": "--", "pending": "..", "failed": "!!"}.get(outcome,
                                                                                    outcome)
            line = f"[{mark}] {event.target} {event.action} ({seconds:.1f}s)"
            if message and outcome != "ok":
                line += f": {message}"
            style = "red" if outcome == "failed" else None
            self._progress.console.print(line, style=style, markup=False)
            self._progress.update(self._task, completed=self._done)
            self._show()

    def message(self, text: str) -> None:
        with self._lock:
            self._progress.console.print(text, markup=False)

    def close(self) -> None:
        with self._lock:
            self._stop()


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
        return LiveProgress(stream)
    return LogProgress(stream)


__all__ = ["LiveProgress", "LogProgress", "Progress", "StepEvent", "StepLines", "for_stream"]
