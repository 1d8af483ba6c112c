"""What a run reports beyond its steps: the spec revision it applied, its engine request and error
counts, and the step total given to the progress hook before the first step."""
from __future__ import annotations

import io

import pytest

from reconciler.apply.progress import LogProgress, StepEvent
from reconciler.apply.runner import ApplyOptions, execute
from reconciler_lab.faults import FaultConfig
from reconciler.plan.actions import Disruption
from reconciler.spec.revision import spec_revision
from reconciler.store import Store

from .conftest import TEST_TIMEOUTS

pytestmark = pytest.mark.lab


class Counting(LogProgress):
    def __init__(self) -> None:
        super().__init__()
        self.totals: list[tuple[str, int]] = []
        self.finished: list[tuple[str, str]] = []
        self.started_before_total = 0

    def run_started(self, run_id: str, steps_total: int) -> None:
        self.totals.append((run_id, steps_total))

    def step_started(self, event: StepEvent) -> None:
        if not self.totals:
            self.started_before_total += 1

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        self.finished.append((event.step_id, outcome))


def test_run_records_revision_counts_and_step_total(served_lab) -> None:
    lab = served_lab(faults=FaultConfig(error_rate=0.1, seed=7))
    lab.server.clear_request_log()
    progress = Counting()

    options = ApplyOptions(yes=True, state=lab.store, timeouts=TEST_TIMEOUTS,
                           spec_revision="sha256:0123456789abcdef")
    outcome = execute(lab.desired(), options, lab.endpoint(), out=io.StringIO(),
                      progress=progress)

    assert outcome.exit_code == 0
    with Store(lab.store) as store:
        run = store.run(outcome.run_id)
    assert run is not None and run.spec_revision == "sha256:0123456789abcdef"
    # The step total came first and matches the steps the run reported.
    assert progress.totals == [(outcome.run_id, len(progress.finished))]
    assert progress.started_before_total == 0
    assert all(o == "ok" for _, o in progress.finished)
    # Every API request the run sent is counted (its observations, the steps, the cycles' own
    # connections); the failed ones are among the 503s the lab answered.
    api = [r for r in lab.server.request_log if r.path.startswith("/ovirt-engine/api")]
    answered_503 = sum(1 for r in api if r.status == 503)
    assert outcome.engine_requests == len(api), (outcome.engine_requests, len(api))
    assert 0 < outcome.engine_errors <= answered_503


def test_cli_run_keeps_the_spec_digest_as_revision(served_lab) -> None:
    lab = served_lab()
    outcome = lab.apply(max_disruption=Disruption.NONE)
    with Store(lab.store) as store:
        run = store.run(outcome.run_id)
    assert run is not None and run.spec_revision == spec_revision(lab.desired().sources)
