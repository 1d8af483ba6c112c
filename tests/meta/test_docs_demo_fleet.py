"""docs/lab-fleets.md describes the demo fleet as deploy/lab/fleets/demo.yaml has it."""
from __future__ import annotations

import re
from pathlib import Path

from reconciler_lab.fleet import load_fleet

DOC = Path(__file__).resolve().parents[2] / "docs" / "lab-fleets.md"


def _vm_lines() -> dict[str, str]:
    text = DOC.read_text()
    para = " ".join(text[text.index("VMs: `vdi-01`"):].split("\n\n")[0].split())
    return {m.group(1): m.group(2) for m in re.finditer(r"`([a-z0-9-]+)` \(([^()]*)\)", para)}


def test_the_doc_says_which_vm_holds_which_gpu() -> None:
    # before: the doc said cad-01 held the Quadro and ml-01 nothing; the fleet says the reverse
    fleet = load_fleet("demo")
    said = _vm_lines()
    assert set(said) == {vm.name for vm in fleet.vms}
    for vm in fleet.vms:
        text = said[vm.name]
        assert text.startswith(vm.status), (vm.name, text)
        if vm.host_devices:
            assert "attached" in text and "nothing attached" not in text, (vm.name, text)
        elif vm.pinned_hosts:
            assert "nothing attached" in text, (vm.name, text)
    assert "H100" in said["ml-01"] and "Quadro" not in said["ml-01"]
