"""Patterns the semantic checks and the builder share with the JSON Schema (the schema is the source)."""
from __future__ import annotations

import re

from reconciler.spec.schema import validator

_VM = validator().schema["properties"]["vms"]["items"]["properties"]

# A passthrough device name in either accepted spelling (pci_0000_03_00_0 or 0000:03:00.0).
DEVICE_NAME = re.compile(_VM["passthrough"]["properties"]["devices"]["items"]["pattern"])

_PROFILE = validator().schema["properties"]["hostProfiles"]["items"]["properties"]
_MODPROBE = _PROFILE["modprobe"]["properties"]

# One kernel command line token, as `kernel.extraArgs` accepts it (no whitespace, quotes or shell
# characters; not starting with '-').
KERNEL_ARG = re.compile(_PROFILE["kernel"]["properties"]["extraArgs"]["items"]["pattern"])
# A module name and a module option as `modprobe.blacklist` / `modprobe.options` accept them.
MODULE_NAME = re.compile(_MODPROBE["blacklist"]["items"]["pattern"])
MODULE_OPTION = re.compile(_MODPROBE["options"]["additionalProperties"]["items"]["pattern"])
