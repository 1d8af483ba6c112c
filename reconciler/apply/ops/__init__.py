"""What the executor does to the engine and reads back, behind one narrow protocol.

    protocol.py   `EngineOps`: today's engine operations (engine_ops.py) and the reads the
                  executor makes, on one connection; `OpenOps` opens one per worker thread
    sdk.py        `SdkEngineOps`: the real thing over an ovirtsdk4 connection

The executor only sees `EngineOps`, so its state machine runs the same against the real engine,
the lab, or a recording fake in the tests (tests/support/fake_engine.py).
"""
from __future__ import annotations

from reconciler.apply.ops.protocol import EngineOps, OpenOps
from reconciler.apply.ops.sdk import SdkEngineOps, sdk_worker_ops

__all__ = ["EngineOps", "OpenOps", "SdkEngineOps", "sdk_worker_ops"]
