"""The schema is usable by editors: titled, described and closed everywhere; examples valid."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from reconciler.spec.schema import SCHEMA_PATH


def _objects(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_schema_is_valid_2020_12() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_property_has_title_and_description_and_objects_are_closed() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    objects = list(_objects(schema))
    assert len(objects) >= 15
    for where, obj in objects:
        if "properties" in obj:
            assert obj.get("additionalProperties") is False, where
            for name, prop in obj["properties"].items():
                assert prop.get("title") and prop.get("description"), f"{where}/{name}"
        else:   # a map (module -> options): its keys are constrained instead
            assert "propertyNames" in obj and isinstance(obj["additionalProperties"], dict), where
