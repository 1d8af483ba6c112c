"""/proc/cpuinfo of a simulated host: the layout the x86 kernel prints (arch/x86/kernel/cpu/proc.c),
with the vendor word and model name of the fleet host's CPU.

Only the fields a reader of the first block cares about vary; the rest are plausible fillers of
the vendor's server parts (the probe reads `vendor_id` and `model name`).
"""
from __future__ import annotations

_VENDOR_ID = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}
# (cpu family, model, stepping, microcode, flags that tell the virtualisation extension)
_PART = {
    "intel": (6, 85, 7, "0x5003604", "vmx ept vpid"),
    "amd": (25, 1, 1, "0xa0011d1", "svm npt nrip_save"),
}
_COMMON_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx "
                 "fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
                 "nonstop_tsc cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
                 "aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 erms "
                 "invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves")


def cpuinfo_text(vendor: str, model_name: str, processors: int = 2) -> str:
    family, model, stepping, microcode, virt = _PART.get(vendor, _PART["intel"])
    vendor_id = _VENDOR_ID.get(vendor, "GenuineIntel")
    blocks = []
    for i in range(processors):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: {vendor_id}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {model_name}\nstepping\t: {stepping}\nmicrocode\t: {microcode}\n"
            f"cpu MHz\t\t: 2500.000\ncache size\t: 28160 KB\nphysical id\t: 0\n"
            f"siblings\t: {processors}\ncore id\t\t: {i}\ncpu cores\t: {processors}\n"
            f"apicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\n"
            f"cpuid level\t: 22\nwp\t\t: yes\nflags\t\t: {_COMMON_FLAGS} {virt}\n"
            "bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass\nbogomips\t: 5000.00\n"
            "clflush size\t: 64\ncache_alignment\t: 64\n"
            "address sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n")
    return "".join(blocks)
