"""Property: with a record of the kernel args we wrote, a plan removes exactly ours that left the
spec, never a token nobody recorded (unless the spec itself manages that key), converges in one
round, and leaves the record naming exactly our args on the line."""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.model.cmdline import parse_token, tokenize
from reconciler.model.ownership import owned_kernel_args
from reconciler.plan import plan
from reconciler.plan.kernel import wants_for
from tests.plan.factsload import desired_from, observed_from
from tests.support.model_apply import apply_to_facts

POOL = ["intel_iommu=on", "nosmt", "pci=realloc", "pci=noaer", "iommu=pt", "rdblacklist=nouveau",
        "quiet", "kvm-intel.nested=1", "vfio_iommu_type1.allow_unsafe_interrupts=1"]
EXTRA = ["pci=realloc", "nosmt", "kvm-intel.nested=1", "iommu.strict=1"]
CLUSTERS = [{"id": "c1", "name": "gpu", "cpu_type": "Intel Cascadelake Server Family",
             "architecture": "x86_64"}]


@st.composite
def scenario(draw: Any) -> tuple[dict[str, Any], dict[str, Any], list[str], list[str]]:
    line = draw(st.lists(st.sampled_from(POOL), max_size=6, unique=True))
    ours = [t for t in line if draw(st.booleans())]
    comment = draw(st.sampled_from(["", "rack 4"]))
    if ours:
        comment = (comment + " " if comment else "") + \
            f"[gpu-reconciler kernel-args: {' '.join(ours)}]"
    kernel = draw(st.one_of(st.none(), st.fixed_dictionaries({
        "iommu": st.sampled_from([None, True, False]),
        "iommu_passthrough": st.sampled_from([None, True, False]),
        "extra_args": st.lists(st.sampled_from(EXTRA), max_size=3, unique=True)})))
    profile: dict[str, Any] = {"name": "p", "selector": {"cluster": "gpu"}}
    if kernel is not None:
        profile["kernel"] = kernel
    host = {"id": "h1", "name": "gpu-01", "cluster": "gpu", "status": "up",
            "cpu_vendor": "intel", "custom_kernel_cmdline": " ".join(line),
            "reported_kernel_cmdline": " ".join(["ro"] + line), "comment": comment}
    observed = {"clusters": CLUSTERS, "hosts": [host],
                "probes": [{"host": "gpu-01", "proc_cmdline": " ".join(["ro"] + line)}]}
    return {"host_profiles": [profile]}, observed, line, ours


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_only_our_args_leave_and_the_plan_converges(data: Any) -> None:
    desired_data, observed_data, line, ours = data
    desired = desired_from(desired_data)
    observed = observed_from(observed_data)
    first = plan(desired, observed)
    after = apply_to_facts(first, observed)
    second = plan(desired, after)
    assert [a.kind for a in second.actions] == []

    host = after.hosts[0]
    final = [t.raw for t in tokenize(host.custom_kernel_cmdline)]
    kernel = desired.host_profiles[0].kernel
    managed = {w.key for w in wants_for(kernel, "intel", "x86_64").wants} if kernel else set()
    wanted = set(wants_for(kernel, "intel", "x86_64").add_tokens) if kernel else set()
    for token in line:
        key = parse_token(token).key
        if token not in ours and key not in managed:
            assert token in final, f"{token} (nobody's record, no spec key) was touched"
        if token in ours and token not in wanted and key not in managed:
            assert token not in final, f"{token} (ours, left the spec) is still there"
    # the record names what we wrote and is still there: ours kept, plus what the plan added
    record = set(owned_kernel_args(host.comment))
    assert record <= set(final)
    assert record == {t for t in final if t in ours or t not in line}
    # the administrator's text in the comment is kept
    assert host.comment.startswith("rack 4") == observed.hosts[0].comment.startswith("rack 4")
