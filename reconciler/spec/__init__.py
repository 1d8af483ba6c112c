"""The spec language: loading, validation and the desired-state model."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.spec.build import load_desired, validate_paths

__all__ = ["load_desired", "validate_paths"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing `reconciler.spec.model` does not load YAML and JSON Schema machinery.
    if name in __all__:
        from reconciler.spec import build
        return getattr(build, name)
    raise AttributeError(name)
