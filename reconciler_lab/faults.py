"""Fault injection for the lab engine: errors, latency, dropped and stalled connections, token
expiry, bad hosts."""
from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

from reconciler.errors import ReconcilerError


class FaultSpecError(ReconcilerError):
    """A --faults string could not be parsed."""


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0          # share of API requests answered 503 with a fault body
    latency_ms: float = 0.0          # added to every request
    drop_rate: float = 0.0           # share of API requests whose connection is closed unanswered
    stall_rate: float = 0.0          # share of API requests held open and never answered
    sso_stall: bool = False          # SSO logins and logouts are held open and never answered
    token_ttl: float | None = None   # seconds an SSO token lives (None: one hour)
    never_returns: tuple[str, ...] = ()   # hosts that stay down after a reboot
    install_fails: tuple[str, ...] = ()   # hosts whose install ends in install_failed
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> FaultConfig:
        """`error-rate=0.1,latency-ms=5,drop-rate=0.01,stall-rate=0.01,sso-stall=1,token-ttl=30,
        never-returns=h1,install-fails=h2`.

        Host lists take `+` between names (h1+h2), or further comma-separated names after the key
        (never-returns=h1,h2).
        """
        values: dict[str, object] = {}
        last_key = ""
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = item.partition("=")
            if not sep:
                if last_key in ("never_returns", "install_fails"):
                    values[last_key] = (*values[last_key], item)  # type: ignore[misc]
                    continue
                raise FaultSpecError(f"fault {item!r}: expected KEY=VALUE")
            key = key.strip().replace("-", "_")
            raw = raw.strip()
            last_key = key
            try:
                if key in ("error_rate", "drop_rate", "stall_rate"):
                    rate = float(raw)
                    if not 0.0 <= rate <= 1.0:
                        raise ValueError
                    values[key] = rate
                elif key in ("latency_ms", "token_ttl"):
                    number = float(raw)
                    if not math.isfinite(number) or number < 0:
                        raise ValueError
                    values[key] = number
                elif key == "seed":
                    values[key] = int(raw)
                elif key == "sso_stall":
                    if raw not in ("0", "1", "true", "false"):
                        raise ValueError
                    values[key] = raw in ("1", "true")
                elif key in ("never_returns", "install_fails"):
                    values[key] = tuple(n for n in raw.split("+") if n)
                else:
                    raise FaultSpecError(
                        f"unknown fault {key.replace('_', '-')!r} (known: error-rate, latency-ms, "
                        "drop-rate, stall-rate, sso-stall, token-ttl, never-returns, install-fails, "
                        "seed)")
            except ValueError:
                raise FaultSpecError(f"fault {item!r}: bad value {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]


class FaultDice:
    """The seeded random source shared by the server's threads."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()

    def roll(self) -> str | None:
        """'drop', 'stall', 'error' or None for one API request."""
        c = self.config
        if not c.error_rate and not c.drop_rate and not c.stall_rate:
            return None
        with self._lock:
            x = self._rng.random()
        if x < c.drop_rate:
            return "drop"
        if x < c.drop_rate + c.stall_rate:
            return "stall"
        if x < c.drop_rate + c.stall_rate + c.error_rate:
            return "error"
        return None
