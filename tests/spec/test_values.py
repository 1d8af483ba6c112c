"""Values that reach a host or the engine pass the spec's own rules, whatever made them."""
from __future__ import annotations

import pytest

from reconciler.plan.expand import MODPROBE_HEADER, render_modprobe
from reconciler.spec.model import ModprobeSpec
from reconciler.spec.values import kernel_cmdline_problems, modprobe_content_problems


def test_kernel_command_lines_we_write_pass() -> None:
    assert kernel_cmdline_problems("intel_iommu=on iommu=pt rdblacklist=nouveau "
                                   "pci-stub.ids=10de:11b4,10de:0e0a crashkernel=auto quiet") == []


@pytest.mark.parametrize("cmdline, bad", [
    ("amd_iommu=on ; rm -rf /", "';'"),
    ("quiet $(reboot)", "'$(reboot)'"),
    ('foo="a b"', "'foo=\"a'"),
    ("quiet\nreboot", "line break"),
])
def test_kernel_command_lines_with_shell_or_quotes_are_refused(cmdline: str, bad: str) -> None:
    assert any(bad in p for p in kernel_cmdline_problems(cmdline)), kernel_cmdline_problems(cmdline)


def test_our_modprobe_file_passes_and_anything_else_is_refused() -> None:
    ours = render_modprobe(ModprobeSpec(blacklist=("nouveau",),
                                        options=(("nouveau", ("modeset=0",)),)))
    assert modprobe_content_problems(ours, MODPROBE_HEADER) == []
    edited = ours + "install nvidia /bin/false\n"
    assert modprobe_content_problems(edited, MODPROBE_HEADER) == [
        "line 4 is not a blacklist or options line we write: 'install nvidia /bin/false'"]
    assert modprobe_content_problems("options nouveau modeset=0;reboot\n", MODPROBE_HEADER)
    assert modprobe_content_problems("# another comment\n", MODPROBE_HEADER)
