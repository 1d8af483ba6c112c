"""Spec folders keep their files inside: links out of the folder (or the repository) and broken
links are errors naming the link, and the target is never read or echoed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.spec import load_desired
from reconciler.spec.load import MAX_SPEC_FILES, SpecPathError, expand_paths

SPEC = ("apiVersion: gpu-reconciler/v1\nengine:\n  url: https://e.example/ovirt-engine/api\n"
        "  username: admin@internal\n  passwordFrom: {env: PW}\n  caFile: ca.pem\n")
SECRET = "root:$6$not-a-spec:19000:0:99999:7:::\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "engine.yaml").write_text(SPEC)
    return specs


def test_a_link_out_of_the_folder_is_refused_and_never_read(folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    (folder / "evil.yaml").symlink_to(secret)
    with pytest.raises(SpecPathError, match="evil.yaml: a link that leads out of") as err:
        expand_paths([str(folder)])
    assert "not-a-spec" not in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "reconciler", "validate", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "leads out of" in proc.stderr and "not-a-spec" not in proc.stdout + proc.stderr


def test_a_linked_folder_is_not_walked(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.yaml").write_text(SECRET)
    (folder / "more").symlink_to(outside, target_is_directory=True)
    assert [p.name for _, p in expand_paths([str(folder)])] == ["engine.yaml"]


@pytest.mark.parametrize("make", ["dangling", "loop"])
def test_a_broken_link_is_an_error(folder: Path, make: str) -> None:
    link = folder / "broken.yaml"
    if make == "dangling":
        link.symlink_to(folder / "gone.yaml")
    else:
        link.symlink_to(folder / "broken.yaml")
    with pytest.raises(SpecPathError, match="broken.yaml: a broken link"):
        load_desired([str(folder)])


def test_a_link_inside_the_folder_is_followed(folder: Path) -> None:
    """A Kubernetes ConfigMap mount: visible files link into a hidden, timestamped folder."""
    data = folder / "..2026_12_04"
    data.mkdir()
    (data / "vms.yaml").write_text("apiVersion: gpu-reconciler/v1\nvms: []\n")
    (folder / "..data").symlink_to(data.name, target_is_directory=True)
    (folder / "vms.yaml").symlink_to("..data/vms.yaml")
    assert sorted(p.name for _, p in expand_paths([str(folder)])) == ["engine.yaml", "vms.yaml"]


def test_in_git_mode_links_stay_inside_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "engine.yaml").write_text(SPEC)
    (repo / "shared.yaml").write_text("apiVersion: gpu-reconciler/v1\nvms: []\n")
    (repo / "specs" / "shared.yaml").symlink_to("../shared.yaml")
    # Inside the repository: fine in git mode; outside the named folder otherwise.
    assert len(expand_paths([str(repo / "specs")], within=repo)) == 2
    with pytest.raises(SpecPathError, match="leads out of"):
        expand_paths([str(repo / "specs")])
    (tmp_path / "host.yaml").write_text(SECRET)
    (repo / "specs" / "host.yaml").symlink_to(tmp_path / "host.yaml")
    with pytest.raises(SpecPathError, match="host.yaml: a link that leads out of"):
        expand_paths([str(repo / "specs")], within=repo)


def test_hidden_folders_are_pruned_and_the_file_count_is_bounded(folder: Path) -> None:
    hidden = folder / ".git" / "objects"
    hidden.mkdir(parents=True)
    (hidden / "x.yaml").write_text(SECRET)
    assert [p.name for _, p in expand_paths([str(folder)])] == ["engine.yaml"]
    many = folder / "generated"
    many.mkdir()
    for i in range(MAX_SPEC_FILES + 1):
        (many / f"{i}.yaml").touch()
    with pytest.raises(SpecPathError, match=f"more than {MAX_SPEC_FILES} spec files"):
        expand_paths([str(folder)])


def test_a_named_broken_link_is_an_error(tmp_path: Path) -> None:
    link = tmp_path / "spec.yaml"
    os.symlink(tmp_path / "nowhere.yaml", link)
    with pytest.raises(SpecPathError, match="broken link"):
        expand_paths([str(link)])
