"""Patterns the semantic checks and the builder share with the JSON Schema (the schema is the source)."""
from __future__ import annotations

import re

from reconciler.spec.schema import validator

_VM = validator().schema["properties"]["vms"]["items"]["properties"]

# A passthrough device name in either accepted spelling (pci_0000_03_00_0 or 0000:03:00.0).
DEVICE_NAME = re.compile(_VM["passthrough"]["properties"]["devices"]["items"]["pattern"])
