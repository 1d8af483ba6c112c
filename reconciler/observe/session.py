"""Opening the fleet: the engine connection, the host transports, and one observation.

`open_fleet(desired)` is the entry every command uses: for a lab engine spec it starts the embedded
lab and connects to it, otherwise it connects to the real engine. The session then hands out the
transports of the spec-managed hosts and observes engine + hosts into one `Observed`.
"""
from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reconciler.engine.client import CountingConnection, check_connection, connect
from reconciler.errors import EngineError, HostAccessError
from reconciler.log import get_logger
from reconciler.observe.engine import EngineRead, read_engine
from reconciler.model.facts import Host, Observed, ObserveStats, ProbeFacts
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

    def __init__(self, desired: DesiredState, connection: CountingConnection,
                 lab: Any | None = None) -> None:
        self.desired = desired
        self.connection = connection
        self.lab = lab                        # the embedded LabServer, or None
        self._engine: EngineRead | None = None

    @property
    def request_count(self) -> int:
        """API requests sent on this session's connection so far."""
        return self.connection.request_count

    @property
    def bytes_received(self) -> int:
        return self.connection.bytes_received

    def read_engine(self) -> EngineRead:
        """A fresh engine read (also kept for `transports`)."""
        self._engine = read_engine(self.connection, self.desired)
        return self._engine

    def _engine_read(self) -> EngineRead:
        return self._engine if self._engine is not None else self.read_engine()

    def transports(self) -> dict[str, Any]:
        """Transport per spec-managed host name; empty when the spec gives no way to reach hosts."""
        engine = self._engine_read()
        names = [h.name for h in managed_hosts(self.desired, engine.hosts)]
        access = self.desired.host_access
        if self.lab is not None:
            from reconciler.observe.transport import LabTransport
            return {n: LabTransport(self.lab.host_root, n) for n in names}
        if access.local_roots is not None:
            from reconciler.observe.transport import LocalRootTransport
            return {n: LocalRootTransport(Path(access.local_roots) / n) for n in names}
        if access.ssh is not None:
            from reconciler.observe.transport import OpenSSHTransport, UnreachableTransport
            ssh = access.ssh
            result: dict[str, Any] = {}
            for n in names:
                # One host the engine gives no usable address for must not stop the others.
                address = engine.addresses.get(n)
                if not address:
                    result[n] = UnreachableTransport(
                        n, "the engine reports no address to reach it over SSH")
                    continue
                extra: dict[str, Any] = {}
                if ssh.known_hosts_file is not None:
                    extra["known_hosts_file"] = ssh.known_hosts_file
                try:
                    result[n] = OpenSSHTransport(
                        address, user=ssh.user, port=ssh.port, identity_file=ssh.identity_file,
                        connect_timeout=min(ssh.timeout_seconds, 10.0), **extra)
                except HostAccessError as exc:
                    result[n] = UnreachableTransport(n, f"engine address {address!r}: {exc}")
            return result
        return {}

    def probe(self, transports: Mapping[str, Any]) -> tuple[ProbeFacts, ...]:
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
        _log.info("observed", hosts=len(engine.hosts), vms=len(engine.vms),
                  engine_requests=stats.engine_requests, hosts_probed=stats.hosts_probed,
                  probe_failures=stats.probe_failures, seconds=stats.seconds)
        return Observed(clusters=engine.clusters, hosts=engine.hosts, vms=engine.vms,
                        probes=probes, stats=stats)


@contextmanager
def open_fleet(desired: DesiredState, *, state_root: Path | None = None) -> Iterator[FleetSession]:
    """Connect to the spec's engine (starting the embedded lab for a lab spec) and yield a session.

    `state_root` overrides where the embedded lab keeps its state (otherwise the spec's
    `engine.lab.state`, else the lab's default).
    """
    with ExitStack() as stack:
        lab_server = None
        if desired.engine.is_lab:
            from reconciler_lab.embedded import embedded_lab
            kwargs: dict[str, Any] = {}
            root = state_root or desired.engine.lab_state
            if root is not None:
                kwargs["state_root"] = Path(root)
            lab = stack.enter_context(embedded_lab(desired.engine, **kwargs))
            lab_server = lab.server
            connection = connect(desired.engine, url=lab.url, ca_file=lab.ca_file,
                                 username=lab.username, password=lab.password)
        else:
            connection = connect(desired.engine)
        stack.callback(_close, connection)
        check_connection(connection)
        yield FleetSession(desired, connection, lab_server)


def _close(connection: CountingConnection) -> None:
    try:
        connection.close()
    except Exception as exc:  # noqa: BLE001 - a failed logout must not hide the real outcome
        _log.debug("engine_logout_failed", error=str(exc))


__all__ = ["FleetSession", "open_fleet", "managed_hosts", "profile_selects", "EngineError"]
