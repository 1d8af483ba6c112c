"""deploy/grafana/fleet-gpus.json queries only series the controller exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.bench_fleetmap import build_map
from reconciler.controller.metrics import ControllerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "fleet-gpus.json"


def test_dashboard_uses_exported_series() -> None:
    dash = json.loads(DASHBOARD.read_text())
    metrics = ControllerMetrics()
    metrics.fleet.update(build_map(10))
    families = {f.name: {k for s in f.samples for k in s.labels}
                for f in text_string_to_metric_families(metrics.render().decode())}
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    assert exprs
    for expr in exprs:
        names = set(re.findall(r"\bgpu_reconciler_\w+", expr))
        assert names, expr
        for name in names:
            assert name in families, f"{name} is not exported"
            for label in re.findall(r"(\w+)=~?\"", expr):
                assert label in families[name], f"{name} has no label {label}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
