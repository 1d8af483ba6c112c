import subprocess
import sys

from reconciler.cli import main


def test_version_flag_prints_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "reconcile 0.1.0" in capsys.readouterr().out


def test_no_command_is_an_error_with_help():
    proc = subprocess.run([sys.executable, "-m", "reconciler"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "usage: reconcile" in proc.stderr
