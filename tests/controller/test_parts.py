"""The controller's parts on their own: the work queue, backoff, option parsing, git source
validation, the event poller against the lab, and the loop's behaviour when the engine is down."""
from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import ovirtsdk4.types as types
import pytest
from watchfiles import Change

from reconciler.commands.controller import duration, listen_address
from reconciler.controller.gitsource import (GitSourceError, check_ref, check_subpath,
                                             check_url)
from reconciler.access.endpoint import RealEndpoint
from reconciler.engine.retry import DEFAULT_TIMING, Backoff
from reconciler.controller.loop import (Controller, ControllerConfig, running,
                                        spec_revision)
from reconciler.controller.triggers import EventPoller, SpecWatcher, WorkQueue, spec_filter
from reconciler.drift import build_report, render_json, render_markdown, render_text
from reconciler_lab.server import LabServer
from reconciler.plan.actions import Disruption
from reconciler.plan.result import DriftItem, Plan
from reconciler.store import Store

from .conftest import sdk_connection, wait_for
from tests.support.secrets import write_secret


def test_work_queue_coalesces_a_burst_into_one_item_of_work() -> None:
    queue = WorkQueue()
    def burst(reason: str) -> None:
        for _ in range(50):
            queue.put(reason)

    threads = [threading.Thread(target=burst, args=(r,))
               for r in ("spec", "engine-event", "resync")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.get(timeout=1) == {"spec", "engine-event", "resync"}
    assert queue.get(timeout=0.01) == frozenset()
    queue.close()
    assert queue.get(timeout=5) == frozenset() and queue.closed


def test_backoff_is_exponential_and_capped() -> None:
    backoff = Backoff(1.0, 30.0, jitter=0.0)
    assert backoff.delay(0) == 0
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_option_parsers() -> None:
    assert duration("60s") == 60 and duration("5m") == 300 and duration("250ms") == 0.25
    assert duration("2") == 2 and duration("1h") == 3600
    for bad in ("0s", "soon", "-1s", "5 parsecs"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    assert listen_address("127.0.0.1:9180") == ("127.0.0.1", 9180)
    assert listen_address("[::1]:0") == ("::1", 0)
    assert listen_address(":9180") == ("127.0.0.1", 9180)
    for bad in ("9180", "host:99999", "a:b:c"):
        with pytest.raises(argparse.ArgumentTypeError):
            listen_address(bad)


def test_git_inputs_are_validated() -> None:
    assert check_ref("main") == "main" and check_ref("refs/heads/release-1.2") \
        == "refs/heads/release-1.2"
    for bad in ("-x", "--upload-pack=sh", "a..b", "a b", "a/", "x.lock", "@{1}", "a;b", ""):
        with pytest.raises(GitSourceError):
            check_ref(bad)
    assert check_url("https://git.example.com/fleet.git")
    assert check_url("git@git.example.com:ops/fleet.git")
    for bad in ("-uevil", "ext::sh -c id", "fleet.git", "https://x\n"):
        with pytest.raises(GitSourceError):
            check_url(bad)
    assert str(check_subpath("specs/prod")) == "specs/prod"
    for bad in ("/etc", "../outside", "a/../../b"):
        with pytest.raises(GitSourceError):
            check_subpath(bad)


def test_spec_revision_follows_content(tmp_path: Path) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text("one")
    first = spec_revision([str(spec)])
    assert spec_revision([str(spec)]) == first
    spec.write_text("two")
    assert spec_revision([str(spec)]) != first


@pytest.mark.lab
def test_event_poller_starts_at_the_newest_event_and_skips_our_own(tmp_path: Path) -> None:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as lab:
        queue = WorkQueue()
        ours = {"r-ours-1"}
        poller = EventPoller(queue, lambda: sdk_connection(lab), ours=lambda: tuple(ours))
        conn = sdk_connection(lab)
        try:
            assert poller.poll_once(conn) == 0          # initialises the cursor, no trigger
            start = poller.cursor
            assert start is not None and start > 0      # the fleet has history; it is skipped
            assert queue.pending() == frozenset()
            hosts = conn.system_service().hosts_service()
            host = hosts.list(search="name=m60-02")[0]
            # A change made under our own correlation id is not a reason to reconcile...
            hosts.host_service(host.id).update(
                types.Host(os=types.OperatingSystem(custom_kernel_cmdline="iommu=pt")),
                query={"correlation_id": "r-ours-1"})
            assert poller.poll_once(conn) == 0
            assert poller.cursor is not None and poller.cursor > start
            assert queue.pending() == frozenset()
            # ...anyone else's is.
            hosts.host_service(host.id).update(
                types.Host(os=types.OperatingSystem(custom_kernel_cmdline="")))
            assert poller.poll_once(conn) == 1
            assert queue.get(timeout=1) == {"engine-event"}
            assert poller.poll_once(conn) == 0           # nothing new since
        finally:
            conn.close()


def test_drift_report_renderings_show_class_location_and_since() -> None:
    at = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    the_plan = Plan(drift=(
        DriftItem("host:gpu-01", "drift", "kernel args differ", "specs/a.yaml:4:3"),
        DriftItem("vm:x", "unmanaged", "vGPUs in use; no spec mentions this VM"),
    ))
    since = {("host:gpu-01", "drift", "kernel args differ"): at - timedelta(minutes=5)}
    report = build_report(the_plan, "https://engine/api", since, at=at)
    assert not report.in_sync and report.counts()["drift"] == 1
    text = render_text(report)
    assert "host:gpu-01: kernel args differ (specs/a.yaml:4:3)" in text
    assert "since 2026-11-25 08:55:00 UTC (300s ago)" not in text   # minutes past 2
    assert "since 2026-11-25 08:55:00 UTC (5m ago)" in text
    assert "first seen now" in text                                  # the unmanaged VM
    assert '"since": "2026-11-25T08:55:00Z"' in render_json(report)
    assert "| `host:gpu-01` | drift |" in render_markdown(report)
    only_unmanaged = build_report(Plan(drift=the_plan.drift[1:]), "e", {}, at=at)
    assert only_unmanaged.in_sync



def test_spec_watcher_on_a_file_sees_its_replacement_only(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text("a: 1\n")
    accept = spec_filter([spec])
    assert accept(Change.modified, str(spec))
    assert not accept(Change.modified, str(tmp_path / "other.yaml"))
    folder_accept = spec_filter([tmp_path])
    assert folder_accept(Change.added, str(tmp_path / "sub" / "more.yml"))
    assert not folder_accept(Change.added, str(tmp_path / "notes.txt"))

    queue = WorkQueue()
    watcher = SpecWatcher(queue, [spec])
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        replacement = tmp_path / "fleet.yaml.tmp"
        replacement.write_text("a: 2\n")
        os.replace(replacement, spec)                  # as editors save
        assert wait_for("the spec trigger", lambda: queue.get(timeout=0.2)) == {"spec"}
    finally:
        watcher.stop()


def test_drift_report_lists_vm_stops_under_the_host_being_cycled() -> None:
    from reconciler.plan.actions import Disruption, HostCycle, Reason, StartVm, StopVm

    stop = StopVm(target="vm:v1", before="up", after="down", description="stop v1", host="h1",
                  disruption=Disruption.VM_RESTART, reason=Reason.SPEC_CHANGE)
    start = StartVm(target="vm:v1", before="down", after="up", description="start v1",
                    host="h1", disruption=Disruption.VM_RESTART, reason=Reason.SPEC_CHANGE)
    cycle = HostCycle(target="host:h1", before="up", after="up", description="cycle h1",
                      disruption=Disruption.HOST_REBOOT, reason=Reason.DRIFT)
    report = build_report(Plan(actions=(stop, cycle, start)), "e")
    assert [e.key for e in report.entries] == ["host:h1"]      # v1 itself matches the spec
    entry = report.entries[0]
    assert entry.cls == "drift" and entry.message == "differs from the spec: host-cycle"
    assert [c.kind for c in entry.changes] == ["host-cycle", "stop-vm vm:v1", "start-vm vm:v1"]


def test_webhook_url_from_a_file(tmp_path: Path) -> None:
    from reconciler.commands.controller import webhook_url
    from reconciler.errors import ReconcilerError
    url_file = tmp_path / "hook"
    url_file.write_text("# ops channel\n\nhttps://hooks.example.com/T0/B0/tok\n")
    args = argparse.Namespace(notify_webhook=None, notify_webhook_file=url_file)
    assert webhook_url(args) == "https://hooks.example.com/T0/B0/tok"
    assert webhook_url(argparse.Namespace(notify_webhook="http://h/x",
                                          notify_webhook_file=None)) == "http://h/x"
    url_file.write_text("https://a/1\nhttps://b/2\n")
    with pytest.raises(ReconcilerError, match="exactly one URL"):
        webhook_url(args)
    with pytest.raises(ReconcilerError, match="No such file"):
        webhook_url(argparse.Namespace(notify_webhook=None,
                                       notify_webhook_file=tmp_path / "missing"))


@pytest.mark.lab
def test_a_spec_fix_ends_the_backoff_at_once(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.yaml").write_text("apiVersion: gpu-reconciler/v1\nengine: [\n")
    # A backoff long enough that only the spec edit can explain a pass within the wait below.
    config = ControllerConfig(spec_paths=(str(specs),), state=tmp_path / "state.db",
                              backoff_initial=600.0, backoff_cap=600.0, idle_beat=0.2,
                              debounce_ms=50, resync=3600.0)
    controller = Controller(config)
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as lab, running(controller):
        wait_for("the failed first pass", lambda: controller.pass_retries.failures >= 1)
        wait_for("the spec watcher", lambda: any(
            isinstance(t, SpecWatcher) and t.ready.is_set() for t in controller._triggers))
        password = tmp_path / "pw"
        write_secret(password, lab.password)
        (specs / "fleet.yaml").write_text(
            "apiVersion: gpu-reconciler/v1\nengine:\n"
            f"  url: {lab.url}\n  username: {lab.username}\n"
            f"  passwordFrom: {{file: {password}}}\n  caFile: {lab.ca_file}\n")
        wait_for("a good pass", lambda: (controller.state.snapshot()["last_pass"] or {})
                 .get("result") in ("ok", "drift"))
        assert controller.state.readiness() == (True, "ok")
        assert "spec" in controller.state.snapshot()["last_pass"]["trigger"]


class _RecordingController(Controller):
    """Records each pass as (started, finished, reasons) on the monotonic clock the loop paces
    itself by."""

    def __init__(self, config: ControllerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.passes: list[tuple[float, float, frozenset[str]]] = []

    def run_pass(self, reasons: Any = frozenset({"manual"}), **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return super().run_pass(reasons, **kwargs)
        finally:
            self.passes.append((started, time.monotonic(), frozenset(reasons)))


# The pacing checks below compare timestamps of one monotonic clock, and only ever as "the next
# pass started no earlier than the loop promised": the loop computes its promise from the same
# clock after the pass returned, so a loaded machine can only make the gaps longer. Float rounding
# of that sum is the only slack needed.
_ROUNDING = 1e-6


@pytest.mark.slow        # each failed pass waits out the engine client's own connect retries
def test_unreachable_engine_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    write_secret(secret, "x\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("apiVersion: gpu-reconciler/v1\nengine:\n"
                    "  url: https://127.0.0.1:9/ovirt-engine/api\n  username: admin@internal\n"
                    f"  passwordFrom: {{file: {secret}}}\n  insecure: true\n")
    config = ControllerConfig(spec_paths=(str(spec),), state=tmp_path / "state.db",
                              backoff_initial=0.2, backoff_cap=1.0, idle_beat=0.1)

    @contextmanager
    def quick_endpoint(desired: Any) -> Iterator[RealEndpoint]:
        # The production retry policy at a twentieth of its pace: each pass gives up in about
        # a second, so the test sees several passes back off.
        yield RealEndpoint(desired.engine, desired.host_access, DEFAULT_TIMING.scaled(0.05))
    controller = _RecordingController(config, open_endpoint=quick_endpoint)
    with running(controller) as thread:
        wait_for("four failed passes", lambda: len(controller.passes) >= 4)
    assert not thread.is_alive()
    passes = controller.passes
    # Each retry waited at least the backoff delay of the failures so far (0.2, 0.4, 0.8, 1.0,
    # ...): a tight loop would start the next pass at once.
    for failures, ((_, prev_end, _), (start, _, reasons)) in enumerate(zip(passes, passes[1:]),
                                                                        start=1):
        assert reasons == {"retry"}, passes
        delay = min(1.0, 0.2 * 2 ** (failures - 1))
        assert start - prev_end >= delay - _ROUNDING, (failures, passes)
    errors = controller.metrics.passes.labels(result="error")._value.get()
    assert errors == len(passes)
    # Each failed pass is an engine error on /metrics, not only in the log.
    assert controller.metrics.engine_errors._value.get() == errors
    snapshot = controller.state.snapshot()
    assert snapshot["last_pass"]["result"] == "error"
    assert "127.0.0.1:9" in snapshot["last_pass"]["error"]


@pytest.mark.lab
def test_an_event_storm_never_runs_passes_back_to_back(tmp_path: Path) -> None:
    from reconciler_lab.faults import FaultConfig
    with LabServer("demo", tmp_path / "lab", time_scale=0.01,
                   faults=FaultConfig(latency_ms=150)) as lab:
        password = tmp_path / "pw"
        write_secret(password, lab.password)
        spec = tmp_path / "fleet.yaml"
        spec.write_text("apiVersion: gpu-reconciler/v1\nengine:\n"
                        f"  url: {lab.url}\n  username: {lab.username}\n"
                        f"  passwordFrom: {{file: {password}}}\n  caFile: {lab.ca_file}\n")
        controller = _RecordingController(ControllerConfig(
            spec_paths=(str(spec),), state=tmp_path / "state.db", probe=False,
            events_interval=0.05, resync=3600.0, idle_beat=0.2, keep_passes=2))

        def storm() -> list[Any]:
            passes = list(controller.passes)
            return [(prev, cur) for prev, cur in zip(passes, passes[1:])
                    if cur[2] <= {"engine-event", "resync"}]

        conn = sdk_connection(lab)
        try:
            hosts = conn.system_service().hosts_service()
            host = hosts.list(search="name=m60-01")[0]
            flips = 0

            def flip_until_two_event_passes() -> bool:
                # Engine events without pause: every poll finds something new.
                nonlocal flips
                flips += 1
                hosts.host_service(host.id).update(types.Host(
                    os=types.OperatingSystem(custom_kernel_cmdline=f"quiet{flips % 2 or ''}")))
                return len(storm()) >= 2

            with running(controller):
                wait_for("the first pass", lambda: controller.passes)
                wait_for("two passes triggered by engine events", flip_until_two_event_passes,
                         every=0)
        finally:
            conn.close()
    with Store(tmp_path / "state.db") as store:          # the pass history stays bounded
        assert [r.kind for r in store.runs(limit=100)] == ["controller-pass"] * 2
    for (p_start, p_end, _), (c_start, _, _) in storm():
        # Each event-triggered pass waited at least as long as the pass before it took.
        assert c_start - p_end >= (p_end - p_start) - _ROUNDING, controller.passes


def _configmap_update(folder: Path, generation: int, text: str) -> None:
    """What Kubernetes' atomic writer does to a mounted ConfigMap: the files are symlinks through
    `..data`, which is swapped (rename over) to a new timestamped folder; the old one is deleted."""
    new = folder / f"..2026_11_25_{generation:02d}"
    new.mkdir()
    (new / "fleet.yaml").write_text(text)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    tmp = folder / "..data_tmp"
    tmp.symlink_to(new.name)
    os.replace(tmp, folder / "..data")
    if not (folder / "fleet.yaml").is_symlink():
        (folder / "fleet.yaml").symlink_to("..data/fleet.yaml")
    if old is not None:
        shutil.rmtree(folder / old)


@pytest.mark.parametrize("as_file", [False, True])
@pytest.mark.slow        # waits for the watcher to see each swap (debounced file events)
def test_spec_watcher_follows_configmap_updates(tmp_path: Path, as_file: bool) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    _configmap_update(folder, 1, "a: 1\n")
    queue = WorkQueue()
    watcher = SpecWatcher(queue, [folder / "fleet.yaml" if as_file else folder], debounce_ms=50)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        for generation in (2, 3, 4):      # every update, not only the first
            _configmap_update(folder, generation, f"a: {generation}\n")
            assert wait_for(f"update {generation}",
                            lambda: queue.get(timeout=0.2), timeout=10) == {"spec"}
    finally:
        watcher.stop()


@pytest.mark.lab
def test_an_apply_refused_by_the_lock_shows_why_on_status(tmp_path: Path) -> None:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as lab:
        password = tmp_path / "pw"
        write_secret(password, lab.password)
        spec = tmp_path / "fleet.yaml"
        # A second vGPU for vdi-01: a vm-restart change, which apply mode may make.
        spec.write_text("apiVersion: gpu-reconciler/v1\nengine:\n"
                        f"  url: {lab.url}\n  username: {lab.username}\n"
                        f"  passwordFrom: {{file: {password}}}\n  caFile: {lab.ca_file}\n"
                        "vms:\n  - name: vdi-01\n"
                        "    vgpu: {type: nvidia-18, instances: 2, secondaryDisplay: vnc}\n")
        state = tmp_path / "state.db"
        with Store(state) as holder:
            holder.acquire_lock(lab.url, "r-20261125-000000-beef", who="ops")
            controller = Controller(ControllerConfig(
                spec_paths=(str(spec),), state=state, mode="apply", resync=3600.0,
                idle_beat=0.2, max_disruption=Disruption.VM_RESTART))
            with running(controller):
                last = wait_for("the refused apply",
                                lambda: controller.state.snapshot()["last_apply"])
        assert last["outcome"] == "locked"
        assert "r-20261125-000000-beef" in last["message"] and "by ops" in last["message"]
        assert controller.state.snapshot()["applied_revision"] is None


def test_a_host_that_cannot_be_probed_keeps_its_drift(tmp_path: Path) -> None:
    from reconciler import drift
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    host_item = DriftItem("host:gpu-01", "drift", "modprobe file differs", "specs/a.yaml:4:3")
    vm_item = DriftItem("vm:x", "pending", "add 1 x vGPU nvidia-18")
    with Store(tmp_path / "state.db") as store:
        drift.record(store, "e", Plan(drift=(host_item, vm_item)), at=t0)
        # Next pass: SSH to gpu-01 fails, so its host-level items are simply not in the plan.
        later = Plan(drift=(vm_item,), desired_fingerprints={"host:gpu-01": "fp2"})
        not_seen = drift.unobserved(_observed_with_failed_probe("gpu-01"))
        assert not_seen == {"host:gpu-01"}
        kept = drift.carried(store, "e", later, not_seen)
        change, since = drift.record(store, "e", later, at=t0 + timedelta(minutes=1),
                                     not_seen=not_seen)
        assert change.resolved == () and change.new == ()
        assert since[("host:gpu-01", "drift", "modprobe file differs")] == t0
        report = drift.build_report(later, "e", since, kept=kept)
        entry = next(e for e in report.entries if e.key == "host:gpu-01")
        assert entry.since == t0 and not report.in_sync
        # Not observed, so not recorded as matching the spec either.
        assert drift.record_converged(store, "e", later, "r-1", not_seen) == 0
        assert "host:gpu-01" not in store.applied("e")
        # Once probed again and really fixed, it resolves.
        change, _ = drift.record(store, "e", later, at=t0 + timedelta(minutes=2))
        assert [r.key for r in change.resolved] == ["host:gpu-01"]
        assert drift.record_converged(store, "e", later, "r-2") == 1


def _observed_with_failed_probe(host: str) -> Any:
    from reconciler.model.facts import Observed, ProbeFacts
    return Observed(probes=(ProbeFacts(host, status="unknown", reason="ssh: timed out"),
                            ProbeFacts("gpu-02")))


def test_apply_progress_fills_the_step_total_on_status(tmp_path: Path) -> None:
    from reconciler.apply.progress import StepEvent
    from reconciler.controller.reconcile import _ApplyProgress
    controller = Controller(ControllerConfig(spec_paths=(str(tmp_path),),
                                             state=tmp_path / "state.db"))
    hook = _ApplyProgress(controller.runner)
    # A recovery step of a dead run comes before the plan's steps: it counts as done.
    recover = StepEvent("r-1", "recover.activate", "host:a", "activate", "host-reboot")
    hook.step_started(recover)
    hook.step_finished(recover, "ok", 0.1)
    hook.run_started("r-1", 4)
    status = controller.state.snapshot()["apply"]
    assert status["run_id"] == "r-1" and status["steps_total"] == 5 and status["steps_done"] == 1
    assert "r-1" in controller.own_correlation_ids
    controller.store.close()


@pytest.mark.lab
def test_an_apply_pass_counts_its_engine_requests_and_records_the_revision(
        tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families
    with LabServer("demo", tmp_path / "lab", time_scale=0.01) as lab:
        password = tmp_path / "pw"
        write_secret(password, lab.password)
        spec = tmp_path / "fleet.yaml"
        spec.write_text("apiVersion: gpu-reconciler/v1\nengine:\n"
                        f"  url: {lab.url}\n  username: {lab.username}\n"
                        f"  passwordFrom: {{file: {password}}}\n  caFile: {lab.ca_file}\n"
                        "vms:\n  - name: vdi-01\n"
                        "    vgpu: {type: nvidia-18, instances: 2, secondaryDisplay: vnc}\n")
        controller = Controller(ControllerConfig(
            spec_paths=(str(spec),), state=tmp_path / "state.db", mode="apply",
            resync=3600.0, events_interval=3600.0, max_disruption=Disruption.VM_RESTART))
        try:
            outcome = controller.run_pass({"manual"})
            assert outcome.applied and outcome.result == "ok", outcome
        finally:
            controller.close_link()
        revision = controller.state.snapshot()["revision"]
        applies = [r for r in controller.store.runs() if r.kind == "apply"]
        controller.store.close()
        api = [r for r in lab.request_log if r.path.startswith("/ovirt-engine/api")]
    assert len(applies) == 1 and applies[0].spec_revision == revision
    assert revision.startswith("sha256:")
    samples = {s.name: s.value for f in text_string_to_metric_families(
        controller.metrics.render().decode()) for s in f.samples}
    # The pass's observation, the event poller and the apply: every request is counted.
    assert samples["gpu_reconciler_engine_requests_total"] == len(api)
