"""Command-line options several commands share, declared once."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reconciler.store.db import default_state_path

STATE_DEFAULT_TEXT = ("$STATE_DIRECTORY/state.db for a systemd service, else "
                      "$XDG_STATE_HOME/gpu-reconciler/state.db (~/.local/state/...)")


def add_state(parser: Any, what: str) -> None:
    """`--state PATH`: the store; its default never depends on the working folder."""
    parser.add_argument("--state", type=Path, default=None, metavar="PATH",
                        help=f"state store ({what}; default {STATE_DEFAULT_TEXT})")


def state_path(args: argparse.Namespace) -> Path:
    """The `--state` given, or the default for this environment (read when the command runs)."""
    return args.state if args.state is not None else default_state_path()


__all__ = ["STATE_DEFAULT_TEXT", "add_state", "state_path"]
