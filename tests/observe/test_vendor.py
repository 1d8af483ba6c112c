from __future__ import annotations

import pytest

from reconciler.observe.vendor import derive_vendor, vendor_in


@pytest.mark.parametrize(("text", "vendor"), [
    ("Intel Cascadelake Server Family", "intel"),
    ("Secure Intel Skylake Server Family", "intel"),
    ("Secure AMD EPYC", "amd"),
    ("AMD EPYC-Milan", "amd"),
    ("Intel(R) Xeon(R) E-2176G CPU @ 3.70GHz", "intel"),
    ("AMD EPYC 7763 64-Core Processor", "amd"),
    ("IBM POWER9", None),
    ("", None),
    (None, None),
    ("Intel or AMD", None),
])
def test_vendor_word_anywhere_in_the_name(text, vendor):
    assert vendor_in(text) == vendor


def test_cluster_type_decides_and_host_type_agrees():
    v = derive_vendor("Secure AMD EPYC", "x86_64", "AMD EPYC-Rome", "AMD EPYC 7502")
    assert (v.vendor, v.note) == ("amd", None)


def test_disagreement_gives_no_vendor_and_a_note():
    v = derive_vendor("Intel Cascadelake Server Family", "x86_64", "AMD EPYC-Milan", "x")
    assert v.vendor is None
    assert "Intel Cascadelake" in v.note and "AMD EPYC-Milan" in v.note


def test_falls_back_to_host_type_then_name():
    assert derive_vendor(None, "x86_64", "Intel Skylake Server IBRS SSBD Family", None).vendor \
        == "intel"
    v = derive_vendor(None, None, None, "AMD Ryzen 9 7950X")
    assert v.vendor == "amd" and "model name" in v.note


def test_power_and_z_take_no_iommu_vendor_word():
    assert derive_vendor("IBM POWER9", "ppc64", None, "POWER9").vendor == "ibm"
    assert derive_vendor("IBM z14", "s390x", None, None).vendor == "ibms390"


def test_nothing_known():
    v = derive_vendor(None, None, None, "QEMU Virtual CPU")
    assert v.vendor is None and v.note
