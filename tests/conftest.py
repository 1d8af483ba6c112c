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


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL server for the whole run, started by the first test that asks
    (mark it `postgres`); tests/support/postgres.py."""
    from tests.support.postgres import running_postgres
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    """An empty database of this test's own on the session's PostgreSQL server."""
    return str(postgres_server.create_database())
