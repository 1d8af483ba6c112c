"""Minimal kernel cmdline edits: only managed arguments move, everything else stays as found."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.cmdline import tokenize
from reconciler.plan.kernel import KernelWant, edit_cmdline, unmet, unwanted_tokens, wants_for
from reconciler.spec.model import KernelSpec


def test_foreign_tokens_keep_order_spelling_and_quotes() -> None:
    wants = wants_for(KernelSpec(iommu=True, pci_stub=("10de:13f2",)), "intel", "x86_64").wants
    line = 'quiet pci_stub.ids=10de:0001 console="ttyS0,115200 n8" intel_iommu=off kvm-intel.nested=1'
    # replaced managed values are dropped where they stood and the wanted token appended
    assert edit_cmdline(line, wants) == (
        'quiet console="ttyS0,115200 n8" kvm-intel.nested=1 intel_iommu=on pci-stub.ids=10de:13f2')


def test_value_scoped_removal_leaves_other_values() -> None:
    wants = wants_for(KernelSpec(blacklist_nouveau=False, iommu_passthrough=False), "amd",
                      "x86_64").wants
    assert edit_cmdline("rdblacklist=nouveau rdblacklist=radeon iommu=pt iommu=soft", wants) == \
        "rdblacklist=radeon iommu=soft"


def test_s390x_and_ppc_get_no_iommu_or_nouveau_quirks() -> None:
    assert wants_for(KernelSpec(iommu=True), "ibm", "ppc64").wants == ()
    assert wants_for(KernelSpec(iommu=True, blacklist_nouveau=True), "ibms390", "s390x").wants == ()


def test_unmet_reports_missing_and_unwanted() -> None:
    wants = (KernelWant("intel_iommu", "intel_iommu=on"), KernelWant("amd_iommu", None))
    assert unmet("ro amd_iommu=on", wants) == ("intel_iommu=on", "-amd_iommu")
    assert unmet("ro intel_iommu=on", wants) == ()
    assert unmet("ro intel_iommu=on intel_iommu=off", wants) == ("intel_iommu=on",)


TOKENS = st.sampled_from(["quiet", "ro", "intel_iommu=on", "intel_iommu=off", "iommu=pt",
                          "rdblacklist=nouveau", "rdblacklist=radeon", "pci_stub.ids=1:2",
                          'x="a b"', "nosmt"])


@given(st.lists(TOKENS, max_size=8), st.sampled_from([None, True, False]),
       st.sampled_from([None, True, False]), st.sampled_from([None, (), ("10de:1",)]))
def test_edit_is_idempotent_and_satisfies_the_wants(tokens: list[str], iommu: bool | None,
                                                    nouveau: bool | None,
                                                    stub: tuple[str, ...] | None) -> None:
    wants = wants_for(KernelSpec(iommu=iommu, blacklist_nouveau=nouveau, pci_stub=stub),
                      "intel", "x86_64").wants
    once = edit_cmdline(" ".join(tokens), wants)
    assert edit_cmdline(once, wants) == once
    assert unmet(once, wants) == ()
    managed = {"intel_iommu", "amd_iommu", "rdblacklist", "pci_stub.ids", "iommu"}
    foreign = [t.raw for t in tokenize(" ".join(tokens)) if t.key not in managed]
    assert [t.raw for t in tokenize(once) if t.key not in managed] == foreign


def test_unwanted_tokens_are_those_a_reboot_must_drop() -> None:
    wants = wants_for(KernelSpec(iommu=True, blacklist_nouveau=False), "intel", "x86_64").wants
    assert unwanted_tokens("ro intel_iommu=off rdblacklist=nouveau rdblacklist=radeon "
                           "intel_iommu=on", wants) == ("intel_iommu=off", "rdblacklist=nouveau")
