"""`reconcile lab serve|generate|reset|drift` and the embedded lab used by lab specs."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler.cli import main
from reconciler_lab import fleet as fleet_mod
from reconciler_lab.embedded import embedded_lab, lab_state_dir
from reconciler_lab.engine import LabEngine
from reconciler_lab.fleet import LabDevice, LabHost, LabMdev, LabVm
from reconciler.spec.model import EngineSpec
from tests.lab.conftest import small_fleet

REPO = Path(__file__).resolve().parents[2]


def _fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(fleet_mod.dump_fleet(small_fleet()))
    return path


@pytest.mark.lab
def test_serve_prints_one_json_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "lab", "serve", "--fleet", str(_fleet_file(tmp_path)),
         "--state", str(state), "--time-scale", "0.005"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"url", "ca_file", "username", "password_file"}
        pw_file = Path(info["password_file"])
        assert pw_file.stat().st_mode & 0o777 == 0o600
        conn = sdk.Connection(url=info["url"], username=info["username"],
                              password=pw_file.read_text().strip(), ca_file=info["ca_file"])
        assert len(conn.system_service().hosts_service().list()) == 3
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (state / "engine.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_rejects_bad_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lab", "serve", "--fleet", "x", "--state", str(tmp_path), "--faults", "bogus=1"])
    assert code == 1
    assert "unknown fault 'bogus'" in capsys.readouterr().err


def test_generate_writes_a_loadable_fleet(tmp_path: Path) -> None:
    out = tmp_path / "gen.yaml"
    assert main(["lab", "generate", "--hosts", "3", "--gpus-per-host", "2", "--vms", "4",
                 "-o", str(out)]) == 0
    fleet = fleet_mod.load_fleet(out)
    assert len(fleet.hosts) == 3 and len(fleet.vms) == 4


def _drift_fleet() -> object:
    base = small_fleet()
    gpu = LabDevice("pci_0000_3b_00_0", iommu_group=30, product_id="1eb8")
    host = LabHost("h1", "Default", "Intel Cascadelake Server Family", "Xeon", devices=(gpu,),
                   custom_kernel_cmdline="intel_iommu=on rdblacklist=nouveau")
    vms = (LabVm("pass", "Default", pinned_hosts=("h1",), host_devices=("pci_0000_3b_00_0",)),
           LabVm("vgpu", "Default", mediated_devices=(LabMdev("nvidia-222"),)))
    return type(base)("drift", base.clusters, (host,), vms)


def test_drift_and_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    fleet = _drift_fleet()
    monkeypatch.setattr("reconciler.commands.lab._load_fleet", lambda _name: fleet)
    state = tmp_path / "st"
    base = ["lab", "drift", "--fleet", "drift", "--state", str(state)]
    assert main(base + ["--kind", "kernel-args", "--host", "h1"]) == 0
    assert main(base + ["--kind", "device-detached"]) == 0
    assert main(base + ["--kind", "vgpu-removed", "--vm", "vgpu"]) == 0
    assert main(base + ["--kind", "device-detached"]) == 1      # nothing left to detach
    assert "no VM with host devices" in capsys.readouterr().err
    engine = LabEngine(fleet, state)   # type: ignore[arg-type]
    h = engine.host_by_name("h1")
    assert h.custom_kernel_cmdline == "intel_iommu=on" and h.reinstallation_required
    assert engine.vm_by_name("pass").host_devices == {}
    assert engine.vm_by_name("vgpu").mdevs == {}
    assert main(["lab", "reset", "--state", str(state)]) == 0
    assert not state.exists()
    (tmp_path / "precious").mkdir()
    assert main(["lab", "reset", "--state", str(tmp_path / "precious")]) == 1


@pytest.mark.lab
def test_embedded_lab_continues_across_runs(tmp_path: Path) -> None:
    spec = EngineSpec(lab_fleet=str(_fleet_file(tmp_path)))
    root = tmp_path / "labs"
    assert lab_state_dir(spec, root) == root / "small"
    with embedded_lab(spec, root) as lab:
        conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                              ca_file=str(lab.ca_file))
        hosts = conn.system_service().hosts_service()
        h = hosts.list(search="name=host2")[0]
        hosts.host_service(h.id).update(types.Host(os=types.OperatingSystem(
            custom_kernel_cmdline="intel_iommu=on")))
        conn.close()
    with embedded_lab(spec, root) as lab:
        conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                              ca_file=str(lab.ca_file))
        again = conn.system_service().hosts_service().host_service(h.id).get()
        assert again.os.custom_kernel_cmdline == "intel_iommu=on"
        conn.close()
    explicit = EngineSpec(lab_fleet="demo", lab_state=tmp_path / "mine")
    assert lab_state_dir(explicit) == tmp_path / "mine"
    assert lab_state_dir(explicit, tmp_path / "mine") == tmp_path / "mine"


@pytest.mark.lab
def test_one_lab_per_state_folder_shared_by_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A second engine on the same state would save over the first one's changes: one engine per
    # folder, and a second command (a plan beside a controller) uses the running one.
    from reconciler_lab.statelock import LabStateBusy, state_lock
    fleet_file = _fleet_file(tmp_path)
    spec = EngineSpec(lab_fleet=str(fleet_file))
    root = tmp_path / "labs"
    state = lab_state_dir(spec, root)
    drift = ["lab", "drift", "--fleet", str(fleet_file), "--state", str(state),
             "--kind", "kernel-args", "--host", "host2", "--value", "intel_iommu=on"]
    with embedded_lab(spec, root) as first:
        with embedded_lab(spec, root) as second:
            assert second.shared and second.server is None and second.url == first.url
            assert second.host_root is not None
            assert second.host_root("host1") == state / "hosts" / "host1"   # made by the server
            assert (state / "hosts" / "host1").is_dir()
        # before: "the lab state ... is in use by another process"; now the change goes through
        # the running lab's API, with the engine's audit event
        assert main(drift) == 0
        assert "through the running lab" in capsys.readouterr().out
        assert first.server is not None and first.server.engine is not None
        assert first.server.engine.host_by_name("host2").custom_kernel_cmdline == \
            "intel_iommu=on"
        assert main(["lab", "reset", "--state", str(state)]) == 1       # never under a lab
        assert f"the lab state in {state} is in use by another process" in capsys.readouterr().err
        assert state.exists()
    assert not (state / "serving.json").exists()
    # A folder held by something that serves nothing (a drift, a reset) is still refused.
    with state_lock(state):
        with pytest.raises(LabStateBusy, match=r"in use by another process \(pid \d+\)"):
            with embedded_lab(spec, root):
                pass
    # Released on exit: the stopped lab's state can be drifted and reused.
    drift[-1] = "intel_iommu=on iommu=pt"
    assert main(drift) == 0
    with embedded_lab(spec, root) as lab:
        assert lab.server is not None and lab.server.engine is not None
        assert lab.server.engine.host_by_name("host2").custom_kernel_cmdline == \
            "intel_iommu=on iommu=pt"


def test_serve_refuses_bad_ports_and_unknown_fault_hosts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lab", "serve", "--fleet", "demo", "--state", str(tmp_path), "--port", "70000"])
    assert exited.value.code == 1
    assert "70000 is not a port number" in capsys.readouterr().err
    code = main(["lab", "serve", "--fleet", "demo", "--state", str(tmp_path / "s"),
                 "--faults", "never-returns=m60-01+m60-99"])
    assert code == 1
    assert "--faults never-returns: no host named m60-99 in fleet 'demo'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_serve_and_generate_report_unusable_paths(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["lab", "serve", "--fleet", "demo", "--state", str(blocker / "state")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot use {blocker / 'state'} as a lab state folder")
    assert main(["lab", "generate", "--hosts", "1", "--gpus-per-host", "1", "--vms", "1",
                 "-o", str(blocker / "fleet.yaml")]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot write {blocker / 'fleet.yaml'}")


@pytest.mark.lab
def test_state_made_from_another_fleet_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from reconciler_lab.fleetmark import LabFleetChanged
    fleet_file = _fleet_file(tmp_path)
    spec = EngineSpec(lab_fleet=str(fleet_file))
    root = tmp_path / "labs"
    state = lab_state_dir(spec, root)
    with embedded_lab(spec, root) as lab:
        assert lab.server.engine is not None and len(lab.server.engine.hosts) == 3
    with embedded_lab(spec, root):       # the same fleet again: its state goes on
        pass
    smaller = small_fleet()
    fleet_file.write_text(fleet_mod.dump_fleet(replace(smaller, hosts=smaller.hosts[:2])))
    with pytest.raises(LabFleetChanged, match=r"was made from a different fleet than .*small\.yaml"):
        with embedded_lab(spec, root):
            pass
    serve = ["lab", "serve", "--fleet", str(fleet_file), "--state", str(state)]
    assert main(serve) == 1
    assert f"run `reconcile lab reset --state {state}`" in capsys.readouterr().err
    assert main(["lab", "reset", "--state", str(state)]) == 0
    with embedded_lab(spec, root) as lab:
        assert lab.server.engine is not None and len(lab.server.engine.hosts) == 2


def test_every_lab_subcommand_and_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    # before: `reconcile lab generate --help` listed --hosts, --gpus-per-host and --vms bare
    import argparse

    from reconciler.cli import build_parser

    parser = build_parser()
    lab = next(a for a in parser._subparsers._group_actions[0].choices.values()  # noqa: SLF001
               if a.prog.endswith(" lab"))
    assert lab.description and lab.epilog and "reconcile lab serve --fleet demo" in lab.epilog
    commands = next(a for a in lab._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"serve", "generate", "reset", "drift"}
    for name, sub in commands.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"lab {name} {action.option_strings[0]} has no help"
    assert main(["lab", "generate", "--hosts", "2", "--gpus-per-host", "1", "--vms", "3",
                 "--seed", "7"]) == 0
    first = capsys.readouterr().out
    assert main(["lab", "generate", "--hosts", "2", "--gpus-per-host", "1", "--vms", "3",
                 "--seed", "7"]) == 0
    assert capsys.readouterr().out == first and "name: generated-2x1-3-s7" in first
