"""The spec's `prune` key: schema, defaults, building, and at most one file giving it."""
from __future__ import annotations

import pytest

from reconciler.errors import SpecError
from reconciler.spec import load_desired, validate_paths
from reconciler.spec.model import Location, PruneSpec

LAB = "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"


def test_without_prune_nothing_is_pruned(tmp_path, write) -> None:
    state = load_desired([str(write("spec.yaml", LAB))])
    assert state.prune == PruneSpec(unmanaged_vgpus=False, unmanaged_host_devices=False,
                                    vms=("*",))
    assert not state.prune.enabled


def test_empty_prune_keeps_the_defaults(tmp_path, write) -> None:
    state = load_desired([str(write("spec.yaml", LAB + "prune: {}\n"))])
    assert state.prune == PruneSpec()
    assert not state.prune.enabled


def test_prune_is_built_with_its_location(tmp_path, write) -> None:
    path = write("spec/prune.yaml", "apiVersion: gpu-reconciler/v1\nprune:\n"
                                    "  unmanagedVgpus: true\n  vms: [lab-*, 'tmp-0[12]']\n")
    write("spec/engine.yaml", LAB)
    state = load_desired([str(tmp_path / "spec")])
    assert state.prune == PruneSpec(unmanaged_vgpus=True, unmanaged_host_devices=False,
                                    vms=("lab-*", "tmp-0[12]"))
    assert state.prune.enabled
    assert state.prune.location == Location(str(path), 3, 3)


@pytest.mark.parametrize(("body", "path", "fragment"), [
    ("prune: {unmanagedVgpus: 1}\n", "prune.unmanagedVgpus", "must be true or false"),
    ("prune: {vms: []}\n", "prune.vms", "must not be empty"),
    ("prune: {vms: [a, a]}\n", "prune.vms[1]", "listed twice"),
    ("prune: {vms: [' x']}\n", "prune.vms[0]", "is not a VM name or glob"),
    ("prune: {deleteEverything: true}\n", "prune.deleteEverything", "unknown key"),
    ("prune: [unmanagedVgpus]\n", "prune", "mapping"),
    ("prune: {unmanagedHostDevices: true, unmanagedVgpus: false, vms: ['*']}\n", None, None),
])
def test_schema_accepts_and_rejects(tmp_path, write, body, path, fragment) -> None:
    issues = validate_paths([str(write("spec.yaml", LAB + body))])
    if path is None:
        assert issues == []
        return
    assert [i.path for i in issues] == [path], issues
    assert fragment in issues[0].message


def test_prune_in_two_files_names_both_places(tmp_path, write) -> None:
    first = write("s/a.yaml", LAB + "prune: {unmanagedVgpus: true}\n")
    second = write("s/b.yaml", "apiVersion: gpu-reconciler/v1\n\nprune: {unmanagedVgpus: false}\n")
    with pytest.raises(SpecError) as caught:
        load_desired([str(tmp_path / "s")])
    issues = caught.value.issues
    assert [(i.file, i.line, i.path) for i in issues] == [(str(second), 3, "prune")]
    assert f"prune is already given at {first}:3" in issues[0].message
    assert "at most one spec file" in issues[0].message
