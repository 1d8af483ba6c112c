"""modprobe.d files: their syntax (modprobe.d(5)) and which of them modprobe actually reads.

Pure: text in, `ModprobeFile` out. The host probe parses what it finds on a host with these
functions, and the test oracle that models an apply parses the file a plan writes with the same
ones, so the two can never disagree about what a file means.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from reconciler.errors import ParseError
from reconciler.model.facts import ModprobeFile

# Highest precedence first (modprobe.d(5) "CONFIGURATION DIRECTORIES AND PRECEDENCE").
MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                 "/usr/lib/modprobe.d", "/lib/modprobe.d")

_FALSE_COMMANDS = frozenset({"/bin/false", "/usr/bin/false", "/bin/true", "/usr/bin/true",
                             "false", "true"})


def module_name(name: str) -> str:
    """modprobe treats `-` and `_` in module names as the same character."""
    return name.replace("-", "_")


def modprobe_commands(text: str) -> list[list[str]]:
    """Logical lines of a modprobe.d file as word lists: comments dropped, `\\` continues a line."""
    commands: list[list[str]] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = pending + raw
        pending = ""
        words = line.split()
        if words and not words[0].startswith("#"):
            commands.append(words)
    if pending.split():
        commands.append(pending.split())
    return commands


def parse_modprobe_conf(path: str, text: str) -> ModprobeFile:
    """One modprobe.d file per modprobe.d(5): blacklist, options, install <m> /bin/false|true."""
    blacklist: list[str] = []
    options: list[tuple[str, str]] = []
    install_false: list[str] = []
    for words in modprobe_commands(text):
        cmd, args = words[0], words[1:]
        if cmd == "blacklist":
            if len(args) != 1:
                raise ParseError(f"{path}: 'blacklist' takes one module name")
            blacklist.append(module_name(args[0]))
        elif cmd == "options":
            if not args:
                raise ParseError(f"{path}: 'options' without a module name")
            options.append((module_name(args[0]), " ".join(args[1:])))
        elif cmd == "install":
            if len(args) < 2:
                raise ParseError(f"{path}: 'install' needs a module and a command")
            # Only a command that is exactly false/true (no further work) blocks the module.
            if len(args) == 2 and args[1] in _FALSE_COMMANDS:
                install_false.append(module_name(args[0]))
        elif cmd not in {"alias", "remove", "softdep", "softdeps"}:
            raise ParseError(f"{path}: unknown command {cmd!r}")
    return ModprobeFile(path=path, blacklist=tuple(blacklist), options=tuple(options),
                        install_false=tuple(install_false),
                        sha256=hashlib.sha256(text.encode()).hexdigest())


def effective_modprobe_paths(paths: Iterable[str]) -> list[str]:
    """The paths modprobe reads, in its order.

    A file name seen in a higher-precedence directory masks the same name further down; the
    survivors are read in lexicographic order of file name, whatever their directory.
    """
    listed = sorted(paths)
    chosen: dict[str, str] = {}
    for directory in MODPROBE_DIRS:
        for path in (p for p in listed if p.rsplit("/", 1)[0] == directory):
            name = path.rsplit("/", 1)[1]
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = path
    return [chosen[n] for n in sorted(chosen)]


def effective_modprobe_files(files: Mapping[str, str]) -> list[tuple[str, str]]:
    """(path, text) of the files modprobe reads, in its order (see `effective_modprobe_paths`)."""
    return [(path, files[path]) for path in effective_modprobe_paths(files)]
