"""Suite-wide setup: the skip guard (a skip not on the reviewed allow-list fails the run)."""
pytest_plugins = ["tests.support.skipguard"]
