"""The terminal side: the live progress line, per-step lines, and confirmation rules."""
from __future__ import annotations

import io
import re
import sys
import time

import pytest

from reconciler.apply.progress import LiveProgress, StepEvent, StepLines, for_stream, LogProgress
from reconciler.log import configure, get_logger
from reconciler.apply.runner import NotConfirmed, require_confirmation, tty_confirm
from reconciler.plan.result import Plan, Summary


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


EVENT = StepEvent("r-1", "5.install", "host:m60-02", "install", "host-reboot", wave=2)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|38;[25];[0-9;]+|9[0-7])m")


def _screen_lines(text: str) -> list[str]:
    """What a terminal would show line by line: ANSI codes dropped, `\r` starts a new line."""
    return [part for line in _ANSI.sub("", text).split("\n") for part in line.split("\r")]


def test_live_progress_says_step_n_of_m_and_prints_logs_above_it(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    configure("info", "console")
    out = _Tty()
    live = LiveProgress(out, refresh_per_second=50)
    live.run_started("r-1", 3)
    live.step_started(EVENT)
    time.sleep(0.1)                          # let the display draw the running step
    get_logger("reconciler.apply").info("engine change applied", summary="installed")
    live.step_finished(EVENT, "failed", 2.0, "host m60-02 did not return")
    live.close()
    lines = _screen_lines(out.getvalue())
    assert any("step 1 of 3" in ln and "wave 2 | host:m60-02 install [host-reboot]" in ln
               and "elapsed" in ln and "left" in ln for ln in lines), lines
    # before: "... install [host-reboot]   0.0s2026-12-04T19:21:27Z [info ] engine change applied"
    logged = [ln for ln in lines if "engine change applied" in ln]
    assert logged and all("install [host-reboot]" not in ln for ln in logged), logged
    assert "[!!] host:m60-02 install (2.0s): host m60-02 did not return" in lines
    assert _COLOUR.search(out.getvalue())    # colour on a terminal...


def test_no_color_is_honoured_by_the_progress_and_the_logs(monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    configure("info", "console")
    out = _Tty()
    live = LiveProgress(out, refresh_per_second=50)
    live.run_started("r-1", 2)
    live.step_started(EVENT)
    time.sleep(0.1)
    get_logger("reconciler.apply").warning("engine.retry", attempt=1)
    live.step_finished(EVENT, "failed", 1.0, "no")
    live.close()
    assert not _COLOUR.search(out.getvalue()), out.getvalue()   # ...and none with NO_COLOR


def test_console_logs_are_plain_without_a_terminal_or_with_no_color(monkeypatch, capsys) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", _Tty())
    configure("info", "console")
    get_logger("x").warning("engine.retry", attempt=1)
    text = sys.stderr.getvalue()
    assert "engine.retry" in text and "\x1b[" not in text


def test_plain_step_lines_and_stream_choice() -> None:
    out = io.StringIO()
    StepLines(out).step_finished(EVENT, "ok", 0.25, "installed")
    assert out.getvalue() == "  [ok] wave 2: host:m60-02 install (0.2s): installed\n"
    assert isinstance(for_stream(io.StringIO()), LogProgress)
    live = for_stream(_Tty())
    assert isinstance(live, LiveProgress)
    live.close()


def test_confirmation_needs_a_terminal_or_yes() -> None:
    with pytest.raises(NotConfirmed, match="--yes"):
        require_confirmation(False, io.StringIO("yes\n"))
    require_confirmation(True, io.StringIO())
    require_confirmation(False, _Tty())
    plan = Plan(summary=Summary(changes=3))
    shown = io.StringIO()
    assert tty_confirm(io.StringIO("yes\n"), shown)(plan) is True
    assert "Apply 3 change(s)?" in shown.getvalue()
    assert tty_confirm(io.StringIO("y\n"), io.StringIO())(plan) is False
    assert tty_confirm(io.StringIO(""), io.StringIO())(plan) is False
