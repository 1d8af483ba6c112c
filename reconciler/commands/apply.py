"""`reconcile apply SPEC...|PLANFILE [--yes] [--max-disruption LEVEL] [--state PATH|URL]
[--force-unlock RUN-ID] [--host-timeout S] [--vm-timeout S] [--poll-interval S]`.

With specs: observe, plan, show the plan, ask (on a TTY; `--yes` otherwise), execute. With one
saved plan (`reconcile plan --out FILE`): execute exactly that plan, refused when anything it
depends on changed since. Exit 0 when every step ran and verified (pending actions above
--max-disruption included), 1 on a failure, a degraded host, a refusal, or blockers (the
unblocked actions are still applied).

SIGTERM or SIGINT (Ctrl-C) once: stop at the next safe point. Nothing new starts; a host still
moving to maintenance is put back; a cycle already past maintenance finishes (its install and
activation run to their end or timeout); VMs this run stopped are started again; exit 1, "stopped
at a safe point". The same signal again: exit at once with 143 (SIGTERM) or 130 (SIGINT),
leaving the journal open; the next apply brings back what was left down (docs/apply.md).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.commands.options import (add_max_disruption, add_specs, add_state, state_path,
                                       subcommand)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "apply", "carry out the plan: rolling, verified, journaled", __doc__, run)
    add_specs(parser, "SPEC|PLANFILE", "spec files or folders, or one saved plan (JSON)")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="do not ask for confirmation (required without a terminal)")
    add_max_disruption(parser, "host-reboot", "run only actions up to this disruption; the "
                       "rest are reported as pending (host-reboot: everything)")
    add_state(parser, "runs, journal, lock")
    parser.add_argument("--force-unlock", metavar="RUN-ID",
                        help="take over the apply lock from this run when its heartbeat is stale")
    parser.add_argument("--host-timeout", type=_seconds, default=1800.0, metavar="SECONDS",
                        help="how long a host may take to reach maintenance, reinstall and "
                             "reboot, or come up (default 1800)")
    parser.add_argument("--vm-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                        help="how long a VM may take to shut down or start (default 300)")
    parser.add_argument("--poll-interval", type=_seconds, metavar="SECONDS",
                        help="first wait between status polls, growing to 10x (default 1; "
                             "the embedded lab is polled at its own pace)")


def run(args: argparse.Namespace) -> int:
    from reconciler.apply.executor import Timeouts
    from reconciler.apply.runner import (ApplyOptions, execute, load_saved, looks_like_plan,
                                         require_confirmation, tty_confirm)
    from reconciler.commands.endpoints import open_endpoint
    from reconciler.engine.retry import Backoff
    from reconciler.errors import SpecError
    from reconciler.plan.actions import Disruption

    options = ApplyOptions(yes=args.yes, max_disruption=Disruption(args.max_disruption),
                           state=state_path(args), force_unlock=args.force_unlock,
                           timeouts=Timeouts.for_hosts(args.host_timeout, args.vm_timeout))
    saved = None
    try:
        if looks_like_plan(args.specs):
            # A saved plan was reviewed when it was made: it runs without a second prompt.
            saved, desired = load_saved(args.specs[0])
        else:
            from reconciler.spec import load_desired
            desired = load_desired(args.specs)
    except SpecError as err:
        for issue in err.issues:
            print(issue.format(), file=sys.stderr)
        return 1
    confirm = None
    if saved is None:
        require_confirmation(args.yes, sys.stdin)
        confirm = None if args.yes else tty_confirm(sys.stdin, sys.stdout)
    stop = threading.Event()
    options = replace(options, stop=stop)
    with open_endpoint(desired) as endpoint, _stop_on_signals(stop):
        if args.poll_interval is not None:
            poll = Backoff(initial=args.poll_interval, cap=args.poll_interval * 10, jitter=0.2)
            options = replace(options, timing=replace(endpoint.timing, poll=poll))
        return execute(desired, options, endpoint, saved=saved, confirm=confirm).exit_code


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT once: set `stop` (the executor ends at its next safe point); twice: exit
    now. Only the main thread can install handlers; elsewhere (tests) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            print(f"\n{name} again: exiting now. The journal keeps what was under way; the next "
                  "apply brings back what this run left down.", file=sys.stderr, flush=True)
            sys.stdout.flush()
            # Worker threads may be waiting on the engine: do not wait for them.
            os._exit(128 + signum)
        stop.set()
        print(f"\n{name}: stopping at the next safe point (a host moving to maintenance is put "
              "back, a host already rebooting finishes, VMs this run stopped are started "
              f"again). Send {name} again to exit at once.", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
