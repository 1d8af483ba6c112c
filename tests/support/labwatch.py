"""Record every start of the lab engine or of a throwaway sshd in a file, for the marker guard.

Self-contained on purpose (standard library only, no `tests` imports): the marker guard
(tests/support/markguard.py) also copies this file as `sitecustomize.py` onto the PYTHONPATH of
the run, so Python child processes -- the `reconcile` CLI with an embedded or served lab --
record their lab starts too. Nothing is recorded, and nothing is hooked, unless the environment
names the record file.
"""
from __future__ import annotations

import functools
import importlib.machinery
import os
import sys
from typing import Any

LOG_ENV = "GPU_RECONCILER_TEST_STARTS"
_LAB_MODULE = "reconciler_lab.server"


def record(kind: str) -> None:
    """Append `<kind> <pid>` to the record file, when there is one (one short O_APPEND write)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _watch(module: Any) -> None:
    server = module.LabServer
    if getattr(server.start, "_labwatch", False):
        return
    start = server.start

    @functools.wraps(start)
    def watched(self: Any) -> Any:
        already = getattr(self, "_httpd", None) is not None
        result = start(self)
        if not already:
            record("lab")
        return result

    watched._labwatch = True  # type: ignore[attr-defined]
    server.start = watched


class _Finder:
    """Wraps `LabServer.start` as soon as the lab's server module is loaded."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _LAB_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _watch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    if not os.environ.get(LOG_ENV):
        return
    if _LAB_MODULE in sys.modules:
        _watch(sys.modules[_LAB_MODULE])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
