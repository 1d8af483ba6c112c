"""How one step of an apply ended: `StepOutcome`, now with the project's other shared
vocabularies in `reconciler/model/vocab.py`; it stays importable from here."""
from __future__ import annotations

from reconciler.model.vocab import StepOutcome

__all__ = ["StepOutcome"]
