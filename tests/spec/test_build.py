"""load_desired: merging files and folders, path resolution, normalisation, locations."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec import load_desired, validate_paths
from reconciler.spec.load import SpecPathError
from reconciler.spec.model import Location

ENGINE = """apiVersion: gpu-reconciler/v1
engine:
  url: https://engine.example.com/ovirt-engine/api
  username: admin@internal
  passwordFrom: {file: secrets/ovirt}
  caFile: certs/ca.pem
hostAccess:
  ssh: {identityFile: keys/id_ed25519, knownHostsFile: ~/.ssh/known_hosts}
  localRoots: roots
"""
PROFILES = """apiVersion: gpu-reconciler/v1
hostProfiles:
  - name: vgpu
    selector: {cluster: gpu, names: ["gpu-*"]}
    kernel: {iommu: true, pciStub: [], extraArgs: [pci=realloc]}
    modprobe: {blacklist: [nouveau], options: {nvidia: ["NVreg_X=1"], nouveau: ["modeset=0"]}}
    vgpu: {manager: required}
"""
VMS = """apiVersion: gpu-reconciler/v1
vms:
  - name: cad-01
    passthrough: {host: gpu-01, devices: ["0000:03:00.0", "0000:AB:00.1"]}
  - name: render-01
    vgpu: {type: nvidia-22, instances: 2, secondaryDisplay: none, driverParams: enable_uvm=1}
    restart: allowed
"""


def test_directory_merges_files_sorted_with_paths_resolved(tmp_path, write) -> None:
    write("spec/00-engine.yaml", ENGINE)
    write("spec/hosts/profiles.yml", PROFILES)
    write("spec/vms.yaml", VMS)
    write("spec/notes.txt", "not a spec")
    typed = str(tmp_path / "spec")
    state = load_desired([typed])
    assert state.sources == (os.path.join(typed, "00-engine.yaml"),
                             os.path.join(typed, "hosts/profiles.yml"),
                             os.path.join(typed, "vms.yaml"))
    base = tmp_path / "spec"
    assert state.engine.ca_file == base / "certs/ca.pem"
    assert state.engine.password_file == base / "secrets/ovirt"
    assert state.engine.password_env is None and not state.engine.is_lab
    ssh = state.host_access.ssh
    assert ssh is not None and ssh.identity_file == base / "keys/id_ed25519"
    assert ssh.known_hosts_file == Path.home() / ".ssh/known_hosts"
    assert ssh.user == "root" and ssh.port == 22
    assert state.host_access.local_roots == base / "roots"


def test_values_are_normalised_and_located(tmp_path, write) -> None:
    write("spec/00-engine.yaml", ENGINE)
    write("spec/hosts/profiles.yml", PROFILES)
    write("spec/vms.yaml", VMS)
    state = load_desired([str(tmp_path / "spec")])
    cad = state.vm("cad-01")
    assert cad is not None and cad.passthrough is not None
    assert cad.passthrough.devices == ("pci_0000_03_00_0", "pci_0000_ab_00_1")
    assert cad.vgpu is None and cad.restart == "whenDown"
    assert cad.location == Location(str(tmp_path / "spec" / "vms.yaml"), 3, 5)
    render = state.vm("render-01")
    assert render is not None and render.vgpu is not None
    assert (render.vgpu.type, render.vgpu.instances, render.vgpu.secondary_display,
            render.vgpu.driver_params, render.restart) == ("nvidia-22", 2, "none",
                                                           "enable_uvm=1", "allowed")
    (profile,) = state.host_profiles
    assert profile.selector.cluster == "gpu" and profile.selector.names == ("gpu-*",)
    assert profile.kernel is not None
    assert profile.kernel.pci_stub == () and profile.kernel.iommu_passthrough is None
    assert profile.kernel.extra_args == ("pci=realloc",)
    assert profile.modprobe is not None
    assert profile.modprobe.options == (("nouveau", ("modeset=0",)), ("nvidia", ("NVreg_X=1",)))
    assert profile.vgpu is not None and profile.vgpu.manager == "required"
    assert profile.rollout.max_unavailable == 1 and profile.rollout.reboot == "allowed"
    assert profile.location is not None and profile.location.line == 3


def test_relative_paths_follow_the_file_that_named_them(tmp_path, write, monkeypatch) -> None:
    write("a/engine.yaml", ENGINE)
    write("b/vms.yaml", VMS)
    monkeypatch.chdir(tmp_path)
    state = load_desired(["a/engine.yaml", "b/vms.yaml"])
    assert state.engine.ca_file == Path("a/certs/ca.pem")
    assert state.sources == ("a/engine.yaml", "b/vms.yaml")


def test_lab_fleet_name_stays_a_name_and_paths_resolve(tmp_path, write) -> None:
    by_name = write("x/lab.yaml", "apiVersion: gpu-reconciler/v1\n"
                                  "engine: {lab: {fleet: demo, state: .lab}}\n")
    state = load_desired([str(by_name)])
    assert state.engine.is_lab and state.engine.lab_fleet == "demo"
    assert state.engine.lab_state == tmp_path / "x" / ".lab"
    by_path = write("y/lab.yaml", "apiVersion: gpu-reconciler/v1\n"
                                  "engine: {lab: {fleet: fleets/big.yaml}}\n")
    state = load_desired([str(by_path)])
    assert state.engine.lab_fleet == str(tmp_path / "y" / "fleets" / "big.yaml")
    assert state.engine.lab_state is None


def test_errors_from_several_files_are_sorted(tmp_path, write) -> None:
    write("s/b.yaml", "apiVersion: gpu-reconciler/v1\nvms:\n  - name: vm1\n"
                      "    vgpu: {type: nvidia-22, instances: 0}\n")
    write("s/a.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                      "vms:\n  - name: vm1\n    vgpu: {type: nvidia-22}\n  - name: vm2\n")
    with pytest.raises(SpecError) as caught:
        load_desired([str(tmp_path / "s")])
    got = [(os.path.basename(i.file), i.line, i.path) for i in caught.value.issues]
    assert got == [("a.yaml", 6, "vms[1]"), ("b.yaml", 3, "vms[0].name"),
                   ("b.yaml", 4, "vms[0].vgpu.instances")]
    assert "already defined at" in caught.value.issues[1].message
    assert str(tmp_path / "s" / "a.yaml") + ":4" in caught.value.issues[1].message


def test_engine_twice_names_the_first(tmp_path, write) -> None:
    lab = "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
    first, second = write("1.yaml", lab), write("2.yaml", lab)
    issues = validate_paths([str(first), str(second)])
    assert [(i.file, i.line, i.path) for i in issues] == [(str(second), 2, "engine")]
    assert f"already given at {first}:2" in issues[0].message


def test_missing_and_empty_paths_are_clear_errors(tmp_path) -> None:
    with pytest.raises(SpecPathError, match="no such file or directory"):
        validate_paths([str(tmp_path / "missing.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecPathError, match=r"no \*\.yaml or \*\.yml files"):
        validate_paths([str(tmp_path / "empty")])


def test_insecure_http_engine_is_accepted(tmp_path, write) -> None:
    spec = write("e.yaml", "apiVersion: gpu-reconciler/v1\nengine:\n"
                           "  url: http://127.0.0.1:8080/ovirt-engine/api\n  username: admin\n"
                           "  passwordFrom: {env: PW}\n  insecure: true\n  timeoutSeconds: 5\n")
    state = load_desired([str(spec)])
    assert state.engine.insecure and state.engine.ca_file is None
    assert state.engine.password_env == "PW" and state.engine.timeout_seconds == 5.0


def test_nouveau_options_with_blacklist_are_fine(tmp_path, write) -> None:
    spec = write("p.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                           "hostProfiles:\n  - name: p\n    selector: {names: [gpu-01]}\n"
                           "    kernel: {iommu: false, extraArgs: [iommu=pt]}\n"
                           "    modprobe: {blacklist: [nouveau], options: {nouveau: [modeset=0]}}\n")
    assert validate_paths([str(spec)]) == []


def test_hidden_folders_are_skipped_and_files_named_twice_count_once(tmp_path, write) -> None:
    write("spec/engine.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n")
    write("spec/.github/workflows/ci.yml", "on: push\n")
    write("spec/.reconciler/lab/demo/state.yaml", "hosts: []\n")
    vms = write("spec/vms.yaml", VMS)
    state = load_desired([str(tmp_path / "spec"), str(vms)])
    assert state.sources == (str(tmp_path / "spec" / "engine.yaml"),
                             str(tmp_path / "spec" / "vms.yaml"))
    assert len(state.vms) == 2


@pytest.mark.slow        # loads every example spec twice, once with the pure-Python YAML loader
def test_pure_python_loader_gives_the_same_answers(tmp_path, write, monkeypatch) -> None:
    import yaml

    from reconciler.spec import load as load_module
    spec = write("s.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                           "vms: [{name: a, vgpu: {type: nvidia-22}}, {name: a}]\nx: &y [1]\n"
                           "z: *y\n")
    alias = write("a.yaml", "apiVersion: gpu-reconciler/v1\nx: *y\n")

    def places() -> list[tuple[str, int, int, str]]:
        # libyaml and PyYAML word syntax errors a little differently; places must agree.
        return [(i.file, i.line, i.column, i.path) for i in
                validate_paths([str(spec)]) + validate_paths([str(alias)])]
    with_c = places()
    assert [place[1:] for place in with_c] == [(5, 4, "z"), (2, 4, "(document)")]
    monkeypatch.setattr(load_module, "_Loader", yaml.SafeLoader)
    assert places() == with_c
    deep = write("d.yaml", "apiVersion: gpu-reconciler/v1\nvms: " + "[" * 3000 + "]" * 3000 + "\n")
    (issue,) = validate_paths([str(deep)])
    assert issue.message == "nested more than 32 levels deep"


def test_whole_numbers_written_as_floats_build_as_ints(tmp_path, write) -> None:
    # JSON Schema's "integer" admits 2.0; the planner slices and counts with these values.
    spec = write("f.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                           "hostAccess: {ssh: {port: 2222.0, concurrency: 4.0}}\n"
                           "hostProfiles:\n  - name: p\n    selector: {cluster: c}\n"
                           "    rollout: {maxUnavailable: 2.0}\n"
                           "vms:\n  - name: a\n    vgpu: {type: nvidia-22, instances: 2.0}\n")
    state = load_desired([str(spec)])
    vgpu = state.vms[0].vgpu
    assert vgpu is not None and vgpu.instances == 2 and type(vgpu.instances) is int
    ssh = state.host_access.ssh
    assert ssh is not None and (ssh.port, ssh.concurrency) == (2222, 4)
    assert type(ssh.port) is int and type(ssh.concurrency) is int
    assert type(state.host_profiles[0].rollout.max_unavailable) is int
    assert list(range(vgpu.instances)) == [0, 1]


def test_lab_fleet_names_must_be_built_in_but_paths_are_not_checked(tmp_path, write) -> None:
    from reconciler.spec.fleetref import builtin_fleets
    assert "demo" in builtin_fleets()
    typo = write("t.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: dmo}}\n")
    (issue,) = validate_paths([str(typo)])
    assert (issue.line, issue.column, issue.path) == (2, 23, "engine.lab.fleet")
    assert "did you mean 'demo'?" in issue.message
    # A fleet file is read only when the lab starts: it may be generated after validation.
    by_path = write("p.yaml", "apiVersion: gpu-reconciler/v1\n"
                              "engine: {lab: {fleet: fleets/later.yaml}}\n")
    assert validate_paths([str(by_path)]) == []


def test_the_collector_is_paused_while_a_spec_is_read_and_restored_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from reconciler.spec import build, engines

    seen: list[bool] = []

    def checked(doc: object) -> list[object]:
        seen.append(gc.isenabled())
        return []

    monkeypatch.setattr(build, "check_document", checked)     # one engine's spec and several's
    spec = tmp_path / "spec.yaml"
    spec.write_text(ENGINE)
    assert gc.isenabled()
    assert load_desired([str(spec)]).engine is not None
    assert engines.load_engines([str(spec)]).engines
    assert validate_paths([str(spec)]) == []
    assert seen == [False, False, False] and gc.isenabled()
    spec.write_text("apiVersion: gpu-reconciler/v1\nvms: [\n")      # not YAML
    with pytest.raises(SpecError):
        load_desired([str(spec)])
    with pytest.raises(SpecError):
        engines.load_engines([str(spec)])
    assert validate_paths([str(spec)]) and gc.isenabled()   # restored after a failed load too
    gc.disable()
    try:
        with pytest.raises(SpecError):
            load_desired([str(spec)])
        assert not gc.isenabled()                # it was off before: stays off
    finally:
        gc.enable()
