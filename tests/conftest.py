"""Suite-wide setup: the skip guard (a skip not on the reviewed allow-list fails the run), the
marker guard (a test that starts the lab engine or sshd without its marker fails), and property
tests that print how to replay a failure."""
from hypothesis import settings

pytest_plugins = ["tests.support.skipguard", "tests.support.markguard"]

# A failing property test prints its falsifying example and a @reproduce_failure blob that
# replays it exactly: the randomness of the suite's generated cases is never lost.
settings.register_profile("suite", print_blob=True)
settings.load_profile("suite")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's default state store (and its children's) is its own: the default no longer
    depends on the working folder, so without this every test would share one journal and lock."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
