"""A spec folder that also receives a large tree (a build, a checkout) does not starve the loop:
the watcher looks at spec files only and the folder walk skips what is not a spec."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reconciler.controller.loop import Controller, ControllerConfig, running
from reconciler_lab.server import LabServer

from .conftest import wait_for, write_spec

pytestmark = pytest.mark.lab

FILES = 40_000


def _write_tree(root: Path, start: int, stop: threading.Event | None = None) -> None:
    """Many small files, as a checkout or a build writes them: in plain and hidden folders."""
    for n in range(start, start + FILES):
        if stop is not None and stop.is_set():
            return
        folder = root / ("build" if n % 2 else ".cache") / f"d{n // 500}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n}.{'yaml' if n % 2 == 0 else 'o'}").write_text("x")


def test_the_first_pass_runs_while_a_large_tree_is_written(lab: LabServer,
                                                            tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write_spec(lab, specs)
    _write_tree(specs, 0)
    controller = Controller(ControllerConfig(spec_paths=(str(specs),), state=tmp_path / "db",
                                             probe=False, resync=3600.0, idle_beat=0.2))
    stop = threading.Event()
    writer = threading.Thread(target=_write_tree, args=(specs, FILES, stop), daemon=True)
    with running(controller):
        writer.start()
        try:
            # Generous ceilings: a pass takes well under a second here.
            wait_for("the first pass", lambda: controller.state.snapshot()["last_pass"],
                     timeout=60)
            write_spec(lab, specs, {"vms": []})
            wait_for("a pass for the edited spec", lambda: "spec" in (
                controller.state.snapshot()["last_pass"] or {}).get("trigger", ""), timeout=60)
        finally:
            stop.set()
            writer.join()
    assert controller.state.snapshot()["last_pass"]["result"] in ("ok", "drift")
