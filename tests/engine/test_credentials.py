"""Where the engine password comes from: a file only its owner can read, of a sane size; an
unverified engine is named on every run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog

from reconciler.engine.client import MAX_PASSWORD_FILE_BYTES, connect, resolve_password
from reconciler.errors import EngineError
from reconciler.spec.model import EngineSpec
from tests.support.secrets import write_secret


def _spec(path: Path) -> EngineSpec:
    return EngineSpec(url="https://e.example/ovirt-engine/api", username="admin@internal",
                      password_file=path)


def test_an_owner_only_file_is_read_and_stripped(tmp_path: Path) -> None:
    assert resolve_password(_spec(write_secret(tmp_path / "pw", "s3cret\n"))) == "s3cret"


def test_a_file_readable_by_everyone_is_refused(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "pw", "s3cret\n")
    path.chmod(0o644)
    with pytest.raises(EngineError, match="readable by every user: chmod o-r") as err:
        resolve_password(_spec(path))
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_what_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path, 0o600)      # no writer: a plain read would wait for ever
    else:
        path = tmp_path / "folder"
        path.mkdir(mode=0o700)
    with pytest.raises(EngineError, match="not a regular file|cannot read it"):
        resolve_password(_spec(path))


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = write_secret(tmp_path / "pw", "x" * (MAX_PASSWORD_FILE_BYTES + 1))
    with pytest.raises(EngineError, match="larger than 64 KiB"):
        resolve_password(_spec(path))


def test_an_unverified_engine_is_named_on_every_connection() -> None:
    engine = EngineSpec(url="https://e.example/ovirt-engine/api", username="admin@internal",
                        insecure=True)
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            connect(engine, password="x").close()
    warnings = [e for e in logs if e["event"] == "engine.tls_unverified"]
    assert len(warnings) == 2 and warnings[0]["log_level"] == "warning"
