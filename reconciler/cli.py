"""`reconcile`: the command-line front. Subcommands live in `reconciler.commands.<name>`."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from reconciler import __version__, log
from reconciler.commands import COMMANDS
from reconciler.errors import ReconcilerError, SpecError


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit 2 means "changes / out of sync" for plan and drift."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line, if any: only its module needs importing."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-") and (i == 0 or args[i - 1] not in ("--log-level",
                                                                        "--log-format")):
            return None  # an unknown word: let argparse report it with the full list
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, only the chosen subcommand's module is imported (start-up time:
    the commands pull in the SDK, jsonschema and the planner)."""
    parser = _Parser(
        prog="reconcile",
        description="Declarative GPU passthrough and vGPU management for oVirt / RHV.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="log verbosity")
    parser.add_argument("--log-format", default="auto", choices=["auto", "console", "json"],
                        help="console on a TTY, JSON otherwise (auto)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv) if argv is not None else None
    for name in (chosen,) if chosen else COMMANDS:
        try:
            module = importlib.import_module(f"reconciler.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"reconciler.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    log.configure(args.log_level, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(args.func(args) or 0)
    except SpecError as err:
        # One problem per line, FILE:LINE:COL first, as `validate` prints them.
        for issue in err.issues:
            print(issue.format(), file=sys.stderr)
        return err.exit_code
    except ReconcilerError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`reconcile plan ... | head`): stop quietly, as a shell tool does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as err:  # noqa: BLE001 - last line of defence: no traceback for users
        if args.log_level == "debug":
            raise
        print(f"internal error: {type(err).__name__}: {err} (rerun with --log-level debug "
              "for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
