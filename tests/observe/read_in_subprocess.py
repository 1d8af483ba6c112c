"""Run by tests/observe/test_forked_read.py in a process of its own (one thread, so the engine
read may fork): reads a lab engine twice, with the VM list read by a forked child and with it
read here, and prints what the test compares as one JSON line.

argv: URL CA_FILE USERNAME PASSWORD_FILE [broken-sibling]
"""
from __future__ import annotations

import json
import resource
import sys
import threading
from pathlib import Path

from reconciler.engine.client import CountingConnection, SiblingConnection, connect
from reconciler.observe.engine import EngineRead, read_engine
from reconciler.observe.forked import can_fork
from reconciler.spec.model import EngineSpec


class BrokenSibling(CountingConnection):
    """Hands the child a token the engine refuses: the child fails, the parent must read."""

    def sibling(self) -> SiblingConnection:
        return SiblingConnection(dict(self._settings), "not-a-token")


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def difference(one: object, other: object) -> str | None:
    """The first fact that differs, shown both ways (for the test's message)."""
    for a, b in zip(repr(one).split("), "), repr(other).split("), "), strict=False):
        if a != b:
            return f"{a}  !=  {b}"
    return None


def facts(read: EngineRead) -> str:
    """What a read found (not how many requests it took), as text."""
    return repr((read.clusters, read.hosts, read.vms, read.addresses))


def main() -> None:
    url, ca_file, username, password_file = sys.argv[1:5]
    broken = sys.argv[5:] == ["broken-sibling"]
    password = Path(password_file).read_text().strip()
    connection = (BrokenSibling(url=url, username=username, password=password, ca_file=ca_file,
                                timeout=60, compress=True) if broken
                  else connect(EngineSpec(url=url, username=username, ca_file=Path(ca_file)),
                               password=password))
    forked_before = can_fork()
    cpu = child_cpu()
    forked = read_engine(connection)
    forked_child_cpu = child_cpu() - cpu
    # A second thread alive: no fork, the VM list is read in this process.
    stop = threading.Event()
    waiter = threading.Thread(target=stop.wait, daemon=True)
    waiter.start()
    forked_during = can_fork()
    cpu = child_cpu()
    here = read_engine(connection)
    here_child_cpu = child_cpu() - cpu
    stop.set()
    waiter.join()
    connection.close(logout=False)
    print(json.dumps({
        "could_fork": forked_before, "could_fork_with_a_thread": forked_during,
        "forked_child_cpu": forked_child_cpu, "here_child_cpu": here_child_cpu,
        "same": facts(forked) == facts(here),
        "difference": difference(facts(forked), facts(here)),
        "hosts": len(forked.hosts), "vms": len(forked.vms),
        "devices": sum(len(h.devices) for h in forked.hosts),
        "requests": [forked.requests, here.requests],
        "counted": connection.request_count}))


if __name__ == "__main__":
    main()
