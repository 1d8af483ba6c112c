"""Specs for several engines in one folder: which file belongs to which engine, and the errors
that name FILE:LINE when a file cannot be assigned."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec.engines import check_and_build_engines, engine_of, load_engines


def _engine(url: str) -> str:
    return (f"engine:\n  url: {url}\n  username: admin@internal\n"
            "  passwordFrom: {env: OVIRT_PASSWORD}\n  insecure: true\n")


VM = "vms:\n  - name: {name}\n    vgpu: {{type: nvidia-18, instances: 1}}\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("apiVersion: gpu-reconciler/v1\n" + text)


def test_a_single_engine_spec_reads_as_before(tmp_path: Path) -> None:
    _write(tmp_path / "engine.yaml", _engine("https://a.example.com/ovirt-engine/api"))
    _write(tmp_path / "vms" / "vdi.yaml", VM.format(name="vdi-01"))
    specs = load_engines([str(tmp_path)])
    (desired,) = specs.engines.values()
    assert [v.name for v in desired.vms] == ["vdi-01"]
    assert engine_of(desired) == "https://a.example.com/ovirt-engine/api"


def test_one_self_contained_file_per_engine(tmp_path: Path) -> None:
    _write(tmp_path / "dc1.yaml", _engine("https://a.example.com/ovirt-engine/api")
           + VM.format(name="vdi-01"))
    _write(tmp_path / "dc2.yaml", _engine("https://b.example.com/ovirt-engine/api")
           + VM.format(name="vdi-01"))          # the same VM name on another engine is fine
    specs = load_engines([str(tmp_path)])
    assert list(specs.engines) == ["https://a.example.com/ovirt-engine/api",
                                   "https://b.example.com/ovirt-engine/api"]
    for desired in specs.engines.values():
        assert [v.name for v in desired.vms] == ["vdi-01"]
        assert len(desired.sources) == 1


def test_one_folder_per_engine(tmp_path: Path) -> None:
    _write(tmp_path / "dc1" / "engine.yaml", _engine("https://a.example.com/ovirt-engine/api"))
    _write(tmp_path / "dc1" / "vms" / "a.yaml", VM.format(name="a-01"))
    _write(tmp_path / "dc2" / "engine.yaml", _engine("https://b.example.com/ovirt-engine/api"))
    _write(tmp_path / "dc2" / "b.yaml", VM.format(name="b-01"))
    specs = load_engines([str(tmp_path)])
    names = {e: [v.name for v in d.vms] for e, d in specs.engines.items()}
    assert names == {"https://a.example.com/ovirt-engine/api": ["a-01"],
                     "https://b.example.com/ovirt-engine/api": ["b-01"]}


def test_a_file_in_a_folder_of_two_engines_is_ambiguous(tmp_path: Path) -> None:
    _write(tmp_path / "dc1.yaml", _engine("https://a.example.com/ovirt-engine/api"))
    _write(tmp_path / "dc2.yaml", _engine("https://b.example.com/ovirt-engine/api"))
    _write(tmp_path / "vms.yaml", VM.format(name="vdi-01"))
    specs, issues = check_and_build_engines([str(tmp_path)])
    assert specs is None
    (issue,) = issues
    assert issue.file.endswith("vms.yaml") and issue.line == 1
    assert "gives 2 engines" in issue.message and "dc1.yaml" in issue.message


def test_the_same_engine_given_twice_names_both_places(tmp_path: Path) -> None:
    _write(tmp_path / "dc1" / "engine.yaml", _engine("https://a.example.com/ovirt-engine/api"))
    _write(tmp_path / "dc1b" / "engine.yaml", _engine("https://a.example.com/ovirt-engine/api/"))
    with pytest.raises(SpecError) as err:
        load_engines([str(tmp_path)])
    (issue,) = err.value.issues
    assert issue.file.endswith("dc1b/engine.yaml") and issue.line == 2
    assert "already given at" in issue.message and "dc1/engine.yaml:2" in issue.message


def test_each_engine_gets_the_single_engine_checks(tmp_path: Path) -> None:
    _write(tmp_path / "dc1.yaml", _engine("https://a.example.com/ovirt-engine/api")
           + VM.format(name="vdi-01") + "  - name: vdi-01\n")
    _write(tmp_path / "dc2.yaml", _engine("https://b.example.com/ovirt-engine/api"))
    _, issues = check_and_build_engines([str(tmp_path)])
    assert issues and all(i.file.endswith("dc1.yaml") for i in issues)
    assert any("vdi-01" in i.message for i in issues)


def test_no_engine_at_all_is_reported_as_before(tmp_path: Path) -> None:
    _write(tmp_path / "vms.yaml", VM.format(name="vdi-01"))
    _, issues = check_and_build_engines([str(tmp_path)])
    assert any("no spec file gives 'engine'" in i.message for i in issues)
