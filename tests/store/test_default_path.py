"""The default store never depends on the working folder."""
from __future__ import annotations

from pathlib import Path

from reconciler.store.db import default_state_path


def test_the_default_follows_systemd_then_xdg_then_home(tmp_path: Path) -> None:
    assert default_state_path({"STATE_DIRECTORY": "/var/lib/gpu-reconciler"}) == \
        Path("/var/lib/gpu-reconciler/state.db")
    assert default_state_path({"XDG_STATE_HOME": str(tmp_path)}) == \
        tmp_path / "gpu-reconciler" / "state.db"
    # A relative XDG_STATE_HOME is invalid (XDG spec): it would make the path depend on the cwd.
    assert default_state_path({"XDG_STATE_HOME": "rel"}) == \
        Path.home() / ".local/state/gpu-reconciler/state.db"
    assert default_state_path({}).is_absolute()
