"""The one seam between the product and an engine.

An `EngineEndpoint` says how to reach one engine: open an authenticated connection, reach the
hosts it manages, pace requests and polls (`timing`), and what the store calls it (`key`). The
composition root (`reconciler.commands`) chooses the endpoint once per engine: a real engine
(`RealEndpoint`, here), or another implementation of the same protocol (the lab package plugs its
embedded lab in). Nothing below the composition root asks which one it was given.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.access.transport import (LocalRootTransport, OpenSSHTransport, Transport,
                                         UnreachableTransport)
from reconciler.engine.client import CountingConnection, check_connection, connect
from reconciler.engine.retry import DEFAULT_TIMING, Timing
from reconciler.errors import HostAccessError
from reconciler.log import get_logger
from reconciler.spec.model import DesiredState, EngineSpec, HostAccess

_log = get_logger(__name__)


class EngineEndpoint(Protocol):
    """How the product reaches one engine and its hosts."""

    @property
    def key(self) -> str:
        """The store's name for this engine: runs, journal, lock and drift are filed under it."""

    @property
    def timing(self) -> Timing:
        """How requests are retried and states polled on this engine."""

    def connect(self, *, connections: int = 4) -> CountingConnection:
        """A new connection, already authenticated (bad credentials or CA fail here)."""

    def transports(self, names: Sequence[str],
                   addresses: Mapping[str, str]) -> dict[str, Transport]:
        """A transport per host name (`addresses`: the engine's address for each host); empty
        when hosts cannot be reached (engine facts only)."""


# What the composition root hands to code that opens endpoints itself (the controller).
OpenEndpoint = Callable[[DesiredState], AbstractContextManager[EngineEndpoint]]


def authenticated(connection: CountingConnection, timing: Timing) -> CountingConnection:
    """`connection`, authenticated now; closed again when that fails."""
    try:
        check_connection(connection, timing=timing)
    except BaseException:
        close_quietly(connection)
        raise
    return connection


def close_quietly(connection: CountingConnection) -> None:
    """Close (and log out); a failed logout must not hide the real outcome."""
    try:
        connection.close()
    except Exception as exc:  # noqa: BLE001
        _log.debug("engine.logout_failed", error=str(exc))


@dataclass(frozen=True)
class RealEndpoint:
    """An engine reached at the spec's URL, its hosts through the spec's `hostAccess`."""

    engine: EngineSpec
    host_access: HostAccess
    timing: Timing = DEFAULT_TIMING

    @property
    def key(self) -> str:
        return str(self.engine.url)

    def connect(self, *, connections: int = 4) -> CountingConnection:
        return authenticated(connect(self.engine, connections=connections), self.timing)

    def transports(self, names: Sequence[str],
                   addresses: Mapping[str, str]) -> dict[str, Transport]:
        return host_transports(self.host_access, names, addresses)


@contextmanager
def open_real_endpoint(desired: DesiredState) -> Iterator[RealEndpoint]:
    yield RealEndpoint(desired.engine, desired.host_access)


def host_transports(access: HostAccess, names: Sequence[str],
                    addresses: Mapping[str, str]) -> dict[str, Transport]:
    """Transports for `names` as `hostAccess` says: local root trees, OpenSSH, or none."""
    if access.local_roots is not None:
        return {n: LocalRootTransport(Path(access.local_roots) / n) for n in names}
    ssh = access.ssh
    if ssh is None:
        return {}
    result: dict[str, Transport] = {}
    for name in names:
        # One host the engine gives no usable address for must not stop the others.
        address = addresses.get(name)
        if not address:
            result[name] = UnreachableTransport(
                name, "the engine reports no address to reach it over SSH")
            continue
        try:
            result[name] = OpenSSHTransport(
                address, user=ssh.user, port=ssh.port, identity_file=ssh.identity_file,
                connect_timeout=min(ssh.timeout_seconds, 10.0),
                **({"known_hosts_file": ssh.known_hosts_file}
                   if ssh.known_hosts_file is not None else {}))
        except HostAccessError as exc:
            result[name] = UnreachableTransport(name, f"engine address {address!r}: {exc}")
    return result


__all__ = ["EngineEndpoint", "OpenEndpoint", "RealEndpoint", "authenticated", "close_quietly",
           "host_transports", "open_real_endpoint"]
