from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model.cmdline import (CmdlineError, arg_key, edit_args, find_arg,
                                        kernel_arg_views, tokenize)

H100 = ("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 root=/dev/mapper/rhel-root ro "
        "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap "
        "rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap intel_iommu=on iommu=pt "
        "rd.driver.blacklist=nouveau modprobe.blacklist=nouveau rd.driver.pre=vfio-pci "
        "vfio-pci.ids=10de:2331")


def test_tokenize_real_line_keeps_every_token() -> None:
    toks = tokenize(H100 + "\n")
    assert [t.raw for t in toks] == H100.split()
    crash = next(t for t in toks if t.key == "crashkernel")
    assert crash.value == "1G-4G:192M,4G-64G:256M,64G-:512M"
    ro = next(t for t in toks if t.raw == "ro")
    assert ro.value is None and ro.key == "ro"
    assert [t.value for t in toks if t.key == "rd.lvm.lv"] == ["rhel/root", "rhel/swap"]


def test_values_with_equals_and_quotes() -> None:
    toks = tokenize('a=b=c dyndbg="file x.c +p" quiet')
    assert [t.raw for t in toks] == ["a=b=c", 'dyndbg="file x.c +p"', "quiet"]
    assert toks[0].key == "a" and toks[0].value == "b=c"
    assert toks[1].value == "file x.c +p"


def test_module_names_treat_dash_and_underscore_alike() -> None:
    assert arg_key("pci-stub.ids=10de:1b38") == arg_key("pci_stub.ids=10de:1b38") == "pci_stub.ids"
    assert arg_key("vfio-pci.ids") == "vfio_pci.ids"
    # only the module part is normalised; plain keys are kept as written
    assert arg_key("intel_iommu=on") == "intel_iommu"
    assert arg_key("rd.driver.blacklist=nouveau") == "rd.driver.blacklist"


def test_find_arg_last_wins_but_accumulating_keys_match_any() -> None:
    assert find_arg("iommu=off iommu=pt", "iommu") == "iommu=pt"
    line = "rd.driver.blacklist=nouveau rd.driver.blacklist=radeon"
    assert find_arg(line, "rd.driver.blacklist", "rd.driver.blacklist=nouveau") == \
        "rd.driver.blacklist=nouveau"
    assert find_arg("vfio_pci.ids=10de:2331", "vfio-pci.ids", "vfio-pci.ids=10de:2331") == \
        "vfio-pci.ids=10de:2331"
    assert find_arg("quiet", "intel_iommu") is None


def test_three_way_views_pending_reboot_and_must_be_absent() -> None:
    views = kernel_arg_views(
        {"intel_iommu": "intel_iommu=on", "rdblacklist": "rdblacklist=nouveau",
         "pci-stub.ids": None, "iommu": "iommu=pt"},
        engine_custom="intel_iommu=on rdblacklist=nouveau",
        persisted="root=/dev/x ro iommu=pt pci_stub.ids=10de:1b38",
        engine_reported="BOOT_IMAGE=/vmlinuz root=/dev/x ro",
        proc_cmdline="BOOT_IMAGE=/vmlinuz root=/dev/x ro intel_iommu=on pci-stub.ids=10de:1b38")
    by_key = {v.key: v for v in views}
    assert [v.key for v in views] == sorted(by_key)
    assert by_key["intel_iommu"].configured == "intel_iommu=on"
    assert by_key["intel_iommu"].booted == "intel_iommu=on"
    assert not by_key["intel_iommu"].waiting_for_reboot
    rd = by_key["rdblacklist"]
    assert rd.configured == "rdblacklist=nouveau" and rd.booted is None and rd.waiting_for_reboot
    stub = by_key["pci-stub.ids"]
    assert stub.desired is None
    assert stub.configured == "pci_stub.ids=10de:1b38"       # from the persisted args
    assert stub.booted == "pci-stub.ids=10de:1b38"
    assert not stub.waiting_for_reboot
    assert by_key["iommu"].configured == "iommu=pt" and by_key["iommu"].waiting_for_reboot


def test_booted_falls_back_to_engine_reported_when_not_probed() -> None:
    (view,) = kernel_arg_views({"intel_iommu": "intel_iommu=on"}, "intel_iommu=on", None,
                               "ro intel_iommu=on", None)
    assert view.booted == "intel_iommu=on" and not view.waiting_for_reboot
    (view,) = kernel_arg_views({"intel_iommu": "intel_iommu=on"}, "", None, "ro", None)
    assert view.configured is None and view.booted is None and not view.waiting_for_reboot


def test_engine_custom_wins_over_persisted() -> None:
    (view,) = kernel_arg_views({"iommu": "iommu=pt"}, "iommu=pt", "iommu=off", "", "")
    assert view.configured == "iommu=pt"


def test_edit_args_examples() -> None:
    line = "quiet  intel_iommu=off rhgb pci_stub.ids=1:2 crashkernel=auto"
    out = edit_args(line, ["intel_iommu=on", "rdblacklist=nouveau"], ["intel_iommu", "pci-stub.ids"])
    assert out == "quiet rhgb crashkernel=auto intel_iommu=on rdblacklist=nouveau"
    assert edit_args(out, ["intel_iommu=on", "rdblacklist=nouveau"], ["intel_iommu"]) == out
    # an already converged line is unchanged, its token kept in place
    assert edit_args("a intel_iommu=on b", ["intel_iommu=on"], ["intel_iommu"]) == "a intel_iommu=on b"
    assert edit_args("", ["iommu=pt"], []) == "iommu=pt"


@pytest.mark.parametrize("bad", ["", "a b", "x=\n", "=v", "a\x00b"])
def test_edit_args_rejects_bad_tokens(bad: str) -> None:
    with pytest.raises(CmdlineError):
        edit_args("quiet", [bad], [])


_key = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z_]{1,5})?", fullmatch=True)
_value = st.from_regex(r"[A-Za-z0-9:,=/_.+-]{0,10}", fullmatch=True)
_token = st.one_of(_key, st.builds(lambda k, v: f"{k}={v}", _key, _value),
                   st.builds(lambda k, v: f'{k}="{v} x"', _key, _value))


@settings(max_examples=300, deadline=None)
@given(st.lists(_token, max_size=12), st.lists(_token, max_size=3), st.lists(_key, max_size=3))
@pytest.mark.slow        # Hypothesis: 300 generated command lines
def test_edit_args_leaves_foreign_tokens_untouched(tokens: list[str], add: list[str],
                                                   remove: list[str]) -> None:
    line = " ".join(tokens)
    out = edit_args(line, add, remove)
    touched = {arg_key(k) for k in remove} | {arg_key(a) for a in add}
    foreign_before = [t for t in tokens if arg_key(t) not in touched]
    foreign_after = [t.raw for t in tokenize(out) if t.key not in touched]
    assert foreign_after == foreign_before
    # every added argument is present, removed keys keep only added values, and it is idempotent
    after = tokenize(out)
    for a in add:
        assert any(t.raw == a or (t.key == arg_key(a) and t.value == tokenize(a)[0].value)
                   for t in after)
    wanted = {(arg_key(a), tokenize(a)[0].value) for a in add}
    for t in after:
        if t.key in {arg_key(k) for k in remove}:
            assert (t.key, t.value) in wanted
    assert edit_args(out, add, remove) == out
