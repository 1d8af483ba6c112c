import subprocess
import sys

import pytest

from reconciler.cli import main


def test_version_flag_prints_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "reconcile 0.1.0" in capsys.readouterr().out


@pytest.mark.slow        # runs the CLI in child processes
def test_no_command_is_an_error_with_help():
    proc = subprocess.run([sys.executable, "-m", "reconciler"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "usage: reconcile" in proc.stderr


@pytest.mark.slow        # runs the CLI in child processes
def test_closed_output_pipe_is_not_an_internal_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("apiVersion: gpu-reconciler/v1\n" + "".join(f"k{i}: 1\n" for i in range(3000)))
    proc = subprocess.run(f"{sys.executable} -m reconciler validate {spec} | head -c 10",
                          shell=True, capture_output=True, text=True)
    assert "internal error" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow        # runs the CLI in child processes
def test_usage_errors_exit_1_not_the_changes_code():
    for argv in (["drift", "specs", "--bogus"], ["plan"], ["no-such-command"]):
        proc = subprocess.run([sys.executable, "-m", "reconciler", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert "error:" in proc.stderr


def test_only_the_chosen_command_is_loaded():
    code = ("import sys; from reconciler.cli import build_parser; "
            "build_parser(['--log-level', 'warning', 'validate', 'x']); "
            "print(sorted(m for m in sys.modules if m.startswith('reconciler.commands.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['reconciler.commands.validate']"
