"""Facts survive the trip to plain JSON and back exactly, and bad data is refused by path."""
from __future__ import annotations

import json

import pytest

from reconciler.model.codec import CodecError, from_plain, to_plain
from reconciler.model.facts import Host, Observed, ProbeFacts

from .factsload import observed_from


def test_a_showcase_observation_round_trips_through_json() -> None:
    import yaml
    from pathlib import Path
    data = yaml.safe_load((Path(__file__).parent / "showcase.yaml").read_text())
    observed = observed_from(data["observed"])
    plain = json.loads(json.dumps(to_plain(observed)))
    assert from_plain(Observed, plain) == observed


def test_probe_facts_with_nested_tuples_round_trip() -> None:
    probe = ProbeFacts("gpu-01", modprobe_files=(), loaded_modules=("vfio_pci", "nvidia"),
                       initramfs_blacklist=None, iommu_enabled=True)
    assert from_plain(ProbeFacts, json.loads(json.dumps(to_plain(probe)))) == probe


@pytest.mark.parametrize("bad, where", [
    ({"id": "h", "name": "x", "cluster": "c"}, "missing field 'status'"),
    ({"id": "h", "name": "x", "cluster": "c", "status": 1}, "$.status: expected str"),
    ({"id": "h", "name": "x", "cluster": "c", "status": "up", "cpu_vendor": "arm"},
     "$.cpu_vendor"),
    ({"id": "h", "name": "x", "cluster": "c", "status": "up", "evil": True},
     "unknown field 'evil'"),
    ({"id": "h", "name": "x", "cluster": "c", "status": "up", "devices": [{"name": 3}]},
     "$.devices[0].name"),
])
def test_data_of_the_wrong_shape_is_refused_by_path(bad: dict, where: str) -> None:
    with pytest.raises(CodecError, match=where.replace("[", r"\[").replace("$", r"\$")):
        from_plain(Host, bad)
