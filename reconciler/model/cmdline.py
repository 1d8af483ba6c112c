"""Kernel command lines: tokens, argument keys, minimal edits and the three-way view.

The kernel splits its command line on whitespace, except inside double quotes (`key="a b"`).
Module parameters are written `<module>.<param>=<value>`, and module names treat `-` and `_` as the
same character (modprobe.d(5)), so `pci-stub.ids` and `pci_stub.ids` are one key.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reconciler.errors import ReconcilerError
from reconciler.model.facts import BootEntry, KernelArgView, ProbeFacts

# A token may hold any printable character except whitespace, or whitespace inside double quotes;
# control characters never belong on a kernel line and would break the files that persist it.
_TOKEN_RE = re.compile(r'(?:[^\s"]|"[^"]*")+')
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class CmdlineError(ReconcilerError):
    """A kernel argument given to an edit is not a single, printable token."""


@dataclass(frozen=True)
class Token:
    raw: str                     # exactly as written, quotes included
    key: str                     # normalised key (see arg_key)
    value: str | None            # text after the first '=', quotes removed; None for a bare flag

    def same_arg(self, other: Token) -> bool:
        """True when both tokens set the same key to the same value."""
        return self.key == other.key and self.value == other.value


def arg_key(token: str | Token) -> str:
    """The key of a token: text before the first '=', with `-` -> `_` in the module part.

    Only the module part (before the first '.') is normalised: parameter names after the dot are
    matched by the kernel in the same way, but dracut keys such as `rd.driver.blacklist` keep their
    spelling, and normalising just the module part keeps both readable.
    """
    if isinstance(token, Token):
        return token.key
    name = token.split("=", 1)[0].strip('"')
    module, dot, param = name.partition(".")
    if dot:
        return f"{module.replace('-', '_')}.{param}"
    return name


def parse_token(raw: str) -> Token:
    key = arg_key(raw)
    if "=" in raw:
        value = raw.split("=", 1)[1]
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        return Token(raw=raw, key=key, value=value)
    return Token(raw=raw, key=key, value=None)


def tokenize(cmdline: str | None) -> list[Token]:
    """Split a kernel command line into tokens, in order, repeats kept."""
    if not cmdline:
        return []
    return [parse_token(m.group(0)) for m in _TOKEN_RE.finditer(cmdline)]


def validate_token(raw: str) -> Token:
    """Check that `raw` is one printable kernel argument and return it parsed."""
    if not raw or _CONTROL_RE.search(raw):
        raise CmdlineError(f"invalid kernel argument {raw!r}: empty or contains control characters")
    found = _TOKEN_RE.findall(raw)
    if len(found) != 1 or found[0] != raw:
        raise CmdlineError(f"invalid kernel argument {raw!r}: must be a single token")
    if raw.startswith("="):
        raise CmdlineError(f"invalid kernel argument {raw!r}: no key before '='")
    return parse_token(raw)


def edit_args(current: str, add: Sequence[str], remove_keys: Collection[str]) -> str:
    """Add and remove only the named arguments; every other token stays byte-for-byte, in order.

    Tokens whose key is in `remove_keys` are dropped, except a token equal to one in `add` (it
    stays where it is, so an already converged line is returned unchanged). Each `add` token not
    present afterwards is appended. The edit is idempotent.
    """
    wanted = [validate_token(a) for a in add]
    removing = {arg_key(k) for k in remove_keys}
    kept: list[Token] = []
    for tok in tokenize(current):
        if tok.key in removing and not any(tok.same_arg(w) for w in wanted):
            continue
        kept.append(tok)
    for w in wanted:
        if not any(t.same_arg(w) for t in kept):
            kept.append(w)
    return " ".join(t.raw for t in kept)


def find_arg(cmdline: str | None, key: str, desired: str | None = None) -> str | None:
    """The token that sets `key` on `cmdline`, or None.

    When a token equal to `desired` is present it is the answer (keys such as
    `rd.driver.blacklist` accumulate, so any occurrence counts) and `desired` is returned as
    given, so that a `-`/`_` spelling difference is not reported as a difference. Otherwise the
    last token with that key wins, as it does for the kernel.
    """
    norm = arg_key(key)
    want = parse_token(desired) if desired else None
    last: Token | None = None
    for tok in tokenize(cmdline):
        if tok.key != norm:
            continue
        if want is not None and tok.same_arg(want):
            return desired
        last = tok
    return last.raw if last else None


def kernel_arg_views(managed: Mapping[str, str | None], engine_custom: str,
                     persisted: str | None, engine_reported: str | None,
                     proc_cmdline: str | None) -> tuple[KernelArgView, ...]:
    """Desired / configured / booted view of each managed argument, ordered by key.

    configured: the engine's custom cmdline wins (the engine re-applies it on the next host
    reinstall); when it does not set the key, the host's persisted boot args say what the next
    boot gets. booted: /proc/cmdline when the host was probed, else the engine's reported cmdline.
    """
    booted_line = proc_cmdline if proc_cmdline is not None else engine_reported
    views = []
    for key in sorted(managed):
        desired = managed[key]
        configured = find_arg(engine_custom, key, desired)
        if configured is None and persisted is not None:
            configured = find_arg(persisted, key, desired)
        views.append(KernelArgView(key=key, desired=desired, configured=configured,
                                   booted=find_arg(booted_line, key, desired)))
    return tuple(views)


def _version_key(entry: BootEntry) -> tuple[tuple[int, int | str], ...]:
    """Natural order of BLS ids (`<machine-id>-5.14.0-427.13.1.el9_4.x86_64`), as GRUB sorts."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in re.findall(r"\d+|[^\d.\-_]+", entry.id))


def persisted_args(probe: ProbeFacts | None) -> str | None:
    """The boot args the host's next default boot gets: the newest non-rescue boot entry.

    Entries are listed by file name, which puts `<machine-id>-0-rescue` first; the rescue entry
    is never the default and often carries stale arguments.
    """
    if probe is None or not probe.ok:
        return None
    entries = [e for e in probe.boot_entries if "rescue" not in e.id]
    if entries:
        return max(entries, key=_version_key).options
    return probe.etc_kernel_cmdline
