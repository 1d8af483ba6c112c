"""The spec's rules for values that reach a host or the engine, applied to a value of any origin.

A value that came from a saved plan file, the engine (foreign kernel arguments kept on a command
line) or a git checkout passes the same checks as one written in a spec before it is sent
anywhere: `apply` calls these right before a step, whatever made the action.
"""
from __future__ import annotations

from reconciler.spec.patterns import KERNEL_ARG, MODULE_NAME, MODULE_OPTION

# The longest kernel command line the engine keeps (os.custom_kernel_cmdline is one text field).
MAX_CMDLINE = 4096


def kernel_cmdline_problems(cmdline: str) -> list[str]:
    """Why a kernel command line may not be set ([] when it may)."""
    if len(cmdline) > MAX_CMDLINE:
        return [f"longer than {MAX_CMDLINE} characters"]
    if any(ch in cmdline for ch in "\r\n\x00"):
        return ["holds a line break or NUL"]
    return [f"{token!r} is not a kernel argument (no quotes, shell characters or leading '-')"
            for token in cmdline.split() if not KERNEL_ARG.fullmatch(token)]


def modprobe_content_problems(content: str, header: str) -> list[str]:
    """Why a modprobe.d file we would write is not ours to write ([] when it is): only our
    header comment, `blacklist MODULE` and `options MODULE key=value...` lines."""
    problems = []
    for number, line in enumerate(content.splitlines(), 1):
        words = line.split()
        if not words or line.rstrip("\n") == header.rstrip("\n"):
            continue
        if words[0] == "blacklist" and len(words) == 2 and MODULE_NAME.fullmatch(words[1]):
            continue
        if (words[0] == "options" and len(words) >= 3 and MODULE_NAME.fullmatch(words[1])
                and all(MODULE_OPTION.fullmatch(w) for w in words[2:])):
            continue
        problems.append(f"line {number} is not a blacklist or options line we write: "
                        f"{line[:80]!r}")
    return problems


__all__ = ["MAX_CMDLINE", "kernel_cmdline_problems", "modprobe_content_problems"]
