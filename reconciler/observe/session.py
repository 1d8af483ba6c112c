"""Opening the fleet: the engine connection, the host transports, and one observation.

`open_fleet(desired, endpoint)` is the entry every command uses: it connects through the engine
endpoint the composition root chose (a real engine or the lab: this module does not know which),
hands out the transports of the spec-managed hosts and observes engine + hosts into one `Observed`.
"""
from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from reconciler.access.endpoint import EngineEndpoint, close_quietly
from reconciler.access.transport import Transport
from reconciler.engine.client import CountingConnection
from reconciler.errors import EngineError
from reconciler.log import get_logger
from reconciler.engine.retry import read
from reconciler.model.facts import (EngineIdentity, Host, Observed, ObserveStats,
                                     ProbeFacts)
from reconciler.observe.engine import EngineRead, read_engine
from reconciler.spec.model import DesiredState, HostProfile

_log = get_logger(__name__)

DEFAULT_CONCURRENCY = 16
DEFAULT_PROBE_TIMEOUT = 30.0


def profile_selects(profile: HostProfile, host: Host) -> bool:
    """True when the profile's selector matches the host (cluster, then name globs)."""
    sel = profile.selector
    if sel.cluster is not None and sel.cluster != host.cluster:
        return False
    return not sel.names or any(fnmatch.fnmatchcase(host.name, g) for g in sel.names)


def managed_hosts(desired: DesiredState, hosts: tuple[Host, ...]) -> tuple[Host, ...]:
    """Hosts selected by at least one profile, or pinned by a passthrough VM of the spec."""
    pinned = {v.passthrough.host for v in desired.vms if v.passthrough is not None}
    return tuple(h for h in hosts
                 if h.name in pinned or any(profile_selects(p, h) for p in desired.host_profiles))


class FleetSession:
    """An open fleet: one engine connection (one SSO token), transports, observations."""

    def __init__(self, desired: DesiredState, endpoint: EngineEndpoint,
                 connection: CountingConnection) -> None:
        self.desired = desired
        self.endpoint = endpoint
        self.connection = connection
        self._engine: EngineRead | None = None
        self._identity: EngineIdentity | None = None

    def engine_identity(self) -> EngineIdentity:
        """The engine's own id for its installation (read once: GET of the API root)."""
        if self._identity is None:
            api = read(lambda: self.connection.system_service().get(), "read the API root",
                       timing=self.endpoint.timing, url=self.connection.url)
            info = api.product_info
            version = info.version.full_version if info is not None and info.version else None
            self._identity = EngineIdentity(str(self.connection.url),
                                            info.instance_id if info is not None else None,
                                            version)
        return self._identity

    @property
    def request_count(self) -> int:
        """API requests sent on this session's connection so far."""
        return self.connection.request_count

    @property
    def bytes_received(self) -> int:
        return self.connection.bytes_received

    def read_engine(self) -> EngineRead:
        """A fresh engine read (also kept for `transports`)."""
        self._engine = read_engine(self.connection, self.desired, timing=self.endpoint.timing)
        return self._engine

    def _engine_read(self) -> EngineRead:
        return self._engine if self._engine is not None else self.read_engine()

    def transports(self) -> dict[str, Transport]:
        """Transport per spec-managed host name; empty when the spec gives no way to reach hosts."""
        engine = self._engine_read()
        names = [h.name for h in managed_hosts(self.desired, engine.hosts)]
        return self.endpoint.transports(names, engine.addresses)

    def probe(self, transports: Mapping[str, Transport]) -> tuple[ProbeFacts, ...]:
        from reconciler.observe.probe import probe_hosts
        ssh = self.desired.host_access.ssh
        concurrency = ssh.concurrency if ssh else DEFAULT_CONCURRENCY
        timeout = ssh.timeout_seconds if ssh else DEFAULT_PROBE_TIMEOUT
        return tuple(probe_hosts(transports, concurrency=concurrency, timeout=timeout))

    def observe(self, probe: bool = True) -> Observed:
        """Engine facts plus probes of the spec-managed hosts (in parallel, bounded)."""
        started = time.perf_counter()
        before = self.request_count
        engine = self.read_engine()
        probes: tuple[ProbeFacts, ...] = ()
        if probe:
            transports = self.transports()
            if transports:
                probes = self.probe(transports)
        stats = ObserveStats(engine_requests=self.request_count - before,
                             hosts_probed=len(probes),
                             probe_failures=sum(1 for p in probes if not p.ok),
                             seconds=round(time.perf_counter() - started, 3))
        _log.info("observe.finished", hosts=len(engine.hosts), vms=len(engine.vms),
                  engine_requests=stats.engine_requests, hosts_probed=stats.hosts_probed,
                  probe_failures=stats.probe_failures, seconds=stats.seconds)
        return Observed(clusters=engine.clusters, hosts=engine.hosts, vms=engine.vms,
                        probes=probes, stats=stats)


@contextmanager
def open_fleet(desired: DesiredState, endpoint: EngineEndpoint) -> Iterator[FleetSession]:
    """Connect through `endpoint` (authenticating at once) and yield a session; log out after."""
    connection = endpoint.connect()
    try:
        yield FleetSession(desired, endpoint, connection)
    finally:
        close_quietly(connection)


__all__ = ["FleetSession", "open_fleet", "managed_hosts", "profile_selects", "EngineError"]
