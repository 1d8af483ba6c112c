"""The fleet GPU map: per cluster, host and physical GPU what runs where and what is left.

A view over Observed (engine and host probe facts) and, optionally, the Plan made from them (its
drift items and blockers are shown on the GPUs and hosts they concern). Pure: building and
rendering do no I/O, so the CLI (`reconcile fleet`), the controller (`/`, `/metrics`) and the
benchmark share one model.
"""
from reconciler.fleetmap.build import build_fleet_map
from reconciler.fleetmap.model import FleetMap

__all__ = ["FleetMap", "build_fleet_map"]
