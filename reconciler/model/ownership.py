"""What gpu-reconciler wrote on a host, so that it can remove it when it leaves the spec and never
touch what it did not write (OpenShift's MCO keeps the same record for the kernel arguments it set).

Two records, each kept where the thing it records lives, so that both outlive a lost state store:

* **Kernel arguments** live in the engine's `custom_kernel_cmdline`, which the engine re-applies
  to the host at every reinstall. Their record lives next to them in the engine: a marker in the
  host's `comment`, ``[gpu-reconciler kernel-args: pci=realloc iommu=pt]``, written in the same
  PUT as the command line, so the two never disagree. A reinstalled host (or a rebuilt state
  store) changes neither; a host removed from the engine and added again loses both together.
  The rest of the comment is the administrator's and is kept byte for byte.
* **modprobe lines** live in our own file, `/etc/modprobe.d/gpu-reconciler.conf`: the file is its
  own record. Every line in it is ours; no other file is ever written or removed.

Only arguments this tool *added* to the engine line are recorded: an argument that was there
already when a spec first asked for it (an adopted fleet) stays the administrator's.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

OUR_MODPROBE_PATH = "/etc/modprobe.d/gpu-reconciler.conf"

_MARK = re.compile(r"(?:^|(?<=\s))\[gpu-reconciler kernel-args:(?P<args>[^\]]*)\]")
_SEPARATOR = " "


def owned_kernel_args(comment: str | None) -> tuple[str, ...]:
    """The kernel arguments the host's comment records as ours (empty: none recorded)."""
    if not comment:
        return ()
    found = _MARK.search(comment)
    if found is None:
        return ()
    return tuple(dict.fromkeys(found.group("args").split()))


def with_owned_kernel_args(comment: str | None, args: Sequence[str]) -> str:
    """`comment` with its record set to `args` (dropped when empty); other text is kept."""
    text = comment or ""
    found = _MARK.search(text)
    if found is not None:
        start, end = found.span()
        if start > 0 and text[start - 1] == _SEPARATOR:
            start -= 1                       # the separator we put before the marker
        elif start == 0 and text[end:end + 1] == _SEPARATOR:
            end += 1
        text = text[:start] + text[end:]
    unique = list(dict.fromkeys(args))
    if not unique:
        return text
    mark = f"[gpu-reconciler kernel-args: {' '.join(unique)}]"
    return f"{text}{_SEPARATOR}{mark}" if text else mark


__all__ = ["OUR_MODPROBE_PATH", "owned_kernel_args", "with_owned_kernel_args"]
