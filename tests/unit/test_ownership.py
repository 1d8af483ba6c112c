"""The record of the kernel args we wrote, kept in the host's comment beside the admin's text."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.ownership import owned_kernel_args, with_owned_kernel_args


def test_record_round_trips_and_keeps_the_admins_text() -> None:
    assert owned_kernel_args("") == () and owned_kernel_args(None) == ()
    comment = with_owned_kernel_args("rack 4, owner: cad team", ["pci=realloc", "iommu=pt"])
    assert comment == "rack 4, owner: cad team [gpu-reconciler kernel-args: pci=realloc iommu=pt]"
    assert owned_kernel_args(comment) == ("pci=realloc", "iommu=pt")
    assert with_owned_kernel_args(comment, ["iommu=pt"]) == (
        "rack 4, owner: cad team [gpu-reconciler kernel-args: iommu=pt]")
    assert with_owned_kernel_args(comment, []) == "rack 4, owner: cad team"
    assert with_owned_kernel_args("", ["a=1"]) == "[gpu-reconciler kernel-args: a=1]"
    assert with_owned_kernel_args("[gpu-reconciler kernel-args: a=1] note", []) == "note"
    # an admin's own brackets are not ours
    assert owned_kernel_args("[kernel-args: x]") == ()


_TEXT = st.text(st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)),
                max_size=30)
_ARG = st.from_regex(r"[a-z][a-z0-9_.]{0,8}(=[a-z0-9,:]{1,6})?", fullmatch=True)


@given(_TEXT, st.lists(_ARG, max_size=4), st.lists(_ARG, max_size=4))
def test_setting_twice_is_setting_once_and_clearing_restores_the_text(text, first, second):
    once = with_owned_kernel_args(text, first)
    assert owned_kernel_args(once) == tuple(dict.fromkeys(first))
    twice = with_owned_kernel_args(once, second)
    assert twice == with_owned_kernel_args(text, second)
    assert with_owned_kernel_args(twice, []) == text
