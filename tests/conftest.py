"""Suite-wide setup: the skip guard (a skip not on the reviewed allow-list fails the run), the
marker guard (a test that starts the lab engine or sshd without its marker fails), and property
tests that print how to replay a failure."""
from hypothesis import settings

pytest_plugins = ["tests.support.skipguard", "tests.support.markguard"]

# A failing property test prints its falsifying example and a @reproduce_failure blob that
# replays it exactly: the randomness of the suite's generated cases is never lost.
settings.register_profile("suite", print_blob=True)
settings.load_profile("suite")
