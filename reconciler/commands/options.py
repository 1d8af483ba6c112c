"""Command-line options several commands share, declared once."""
from __future__ import annotations

import argparse
from pathlib import Path
from collections.abc import Callable
from typing import Any

from reconciler.store.db import default_state_path

STATE_DEFAULT_TEXT = ("$STATE_DIRECTORY/state.db for a systemd service, else "
                      "$XDG_STATE_HOME/gpu-reconciler/state.db (~/.local/state/...)")

# A store location: an SQLite file, or a PostgreSQL URL kept as text (a Path would fold its `//`).
StateLocation = Path | str


def state_location(text: str) -> StateLocation:
    """`--state`'s value: a `postgresql://` URL as given, anything else a file path."""
    if text.startswith(("postgresql://", "postgres://")):
        return text
    return Path(text)


def add_state(parser: Any, what: str) -> None:
    """`--state PATH|URL`: the store; its default never depends on the working folder."""
    parser.add_argument("--state", type=state_location, default=None, metavar="PATH|URL",
                        help=f"state store: an SQLite file or a postgresql:// URL ({what}; "
                             f"default {STATE_DEFAULT_TEXT})")


def state_path(args: argparse.Namespace) -> StateLocation:
    """The `--state` given, or the default for this environment (read when the command runs)."""
    return args.state if args.state is not None else default_state_path()


def subcommand(subparsers: Any, name: str, summary: str, doc: str | None,
               run: Callable[[argparse.Namespace], int]) -> Any:
    """A subcommand whose `--help` text is its module's docstring: the usage line first, then
    what it does (written once, for the reader of the code and of `--help` alike)."""
    paragraphs = [p.strip() for p in (doc or "").split("\n\n") if p.strip()]
    usage, _, rest = (paragraphs[0] if paragraphs else "").partition("`:")
    description = " ".join(paragraphs[1:]) or rest.strip() or summary
    parser = subparsers.add_parser(name, help=summary, description=description)
    parser.set_defaults(func=run)
    return parser


def add_specs(parser: Any, metavar: str = "SPEC", what: str = "spec files or folders") -> None:
    parser.add_argument("specs", nargs="+", metavar=metavar, help=what)


def add_output(parser: Any, choices: dict[str, str]) -> None:
    """`-o/--output` with the first choice as default; `choices`: format -> what it is."""
    names = list(choices)
    described = ", ".join(f"{name}: {what}" for name, what in choices.items())
    parser.add_argument("-o", "--output", choices=names, default=names[0],
                        help=f"{described} (default {names[0]})")


def add_no_probe(parser: Any, effect: str = "do not probe the hosts") -> None:
    parser.add_argument("--no-probe", action="store_true", help=f"engine facts only; {effect}")


def add_max_disruption(parser: Any, default: str, what: str) -> None:
    parser.add_argument("--max-disruption", choices=["none", "vm-restart", "host-reboot"],
                        default=default, help=f"{what} (default {default})")


__all__ = ["STATE_DEFAULT_TEXT", "StateLocation", "subcommand", "add_max_disruption", "add_no_probe",
           "add_output", "add_specs", "add_state", "state_location", "state_path"]
