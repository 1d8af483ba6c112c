"""Requests the engine refuses, as the lab raises them."""
from __future__ import annotations


class EngineFault(Exception):
    """A request the engine refuses: HTTP status, fault reason and detail as the engine sends them."""

    def __init__(self, status: int, detail: str, reason: str = "Operation Failed") -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def not_found(kind: str = "entity") -> EngineFault:
    return EngineFault(404, f"Entity not found: {kind}", reason="Not Found")


__all__ = ["EngineFault", "not_found"]
