"""`reconcile validate PATH...`: check spec files without touching the engine or any host (and,
unless --offline, that the CA file, password and SSH files they name are there on this machine)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reconciler.errors import SpecIssue
from reconciler.spec.build import check_and_build
from reconciler.spec.load import SpecPathError, expand_paths


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate", help="check spec files (YAML, schema, semantics); no engine needed",
        description="Check spec files and report every problem as FILE:LINE:COL: path: message. "
                    "Exit 0 when valid, 1 when not.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="spec files or directories (searched for *.yaml / *.yml)")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="text: one problem per line (default); json: a list of objects")
    parser.add_argument("--each", action="store_true",
                        help="check every file on its own instead of merging them into one "
                             "desired state (a folder of independent examples)")
    parser.add_argument("--offline", action="store_true",
                        help="check the files only: do not check that the CA file, the password "
                             "variable or file and the SSH files the spec names are there on "
                             "this machine (pre-commit hooks, CI steps without secrets)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SpecPathError as err:
        # A path that is not there is a problem of the input like any other: -o json prints it
        # as JSON too, so a tool reading the output always gets a list.
        if args.output == "json":
            typed = str(err).split(": ", 1)[0]
            print(json.dumps([SpecIssue(typed, 1, 1, "(file)", str(err).split(": ", 1)[-1])
                              .as_dict()], indent=2))
        raise


def _run(args: argparse.Namespace) -> int:
    if args.each:
        return _run_each(args)
    state, issues = check_and_build(args.paths, environment=not args.offline)
    _print(issues, args.output)
    if issues or state is None:
        return 1
    print(f"{_count(len(state.sources), 'file')} valid: "
          f"{_count(len(state.host_profiles), 'host profile')}, {_count(len(state.vms), 'VM')}",
          file=sys.stderr)
    return 0


def _run_each(args: argparse.Namespace) -> int:
    issues: list[SpecIssue] = []
    profiles = vms = 0
    files = expand_paths(args.paths)
    for typed, _real in files:
        state, found = check_and_build([typed], environment=not args.offline)
        issues.extend(found)
        if state is not None:
            profiles += len(state.host_profiles)
            vms += len(state.vms)
    _print(issues, args.output)
    if issues:
        return 1
    print(f"{_count(len(files), 'file')} valid, each on its own: "
          f"{_count(profiles, 'host profile')}, {_count(vms, 'VM')}", file=sys.stderr)
    return 0


def _print(issues: list[SpecIssue], output: str) -> None:
    if output == "json":
        print(json.dumps([issue.as_dict() for issue in issues], indent=2))
    else:
        for issue in issues:
            print(issue.format())
    if issues:
        files = len({issue.file for issue in issues})
        print(f"{_count(len(issues), 'problem')} in {_count(files, 'file')}", file=sys.stderr)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
