"""The terminal side: the live progress line, per-step lines, and confirmation rules."""
from __future__ import annotations

import io

import pytest

from reconciler.apply.progress import LiveLine, StepEvent, StepLines, for_stream, LogProgress
from reconciler.apply.runner import NotConfirmed, require_confirmation, tty_confirm
from reconciler.plan.result import Plan, Summary


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


EVENT = StepEvent("r-1", "5.install", "host:m60-02", "install", "host-reboot", wave=2)


def test_live_line_redraws_in_place_and_keeps_finished_steps() -> None:
    ticks = iter([0.0, 0.0, 1.5, 2.0, 2.0, 2.0])
    out = _Tty()
    line = LiveLine(out, clock=lambda: next(ticks, 2.0), refresh=3600)
    line.step_started(EVENT)
    line.step_finished(EVENT, "failed", 2.0, "host m60-02 did not return")
    line.close()
    text = out.getvalue()
    assert "\r\x1b[K" in text and "wave 2 | host:m60-02 install [host-reboot]" in text
    assert "[!!] host:m60-02 install (2.0s): host m60-02 did not return\n" in text


def test_plain_step_lines_and_stream_choice() -> None:
    out = io.StringIO()
    StepLines(out).step_finished(EVENT, "ok", 0.25, "installed")
    assert out.getvalue() == "  [ok] wave 2: host:m60-02 install (0.2s): installed\n"
    assert isinstance(for_stream(io.StringIO()), LogProgress)
    live = for_stream(_Tty())
    assert isinstance(live, LiveLine)
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
