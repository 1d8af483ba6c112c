"""The two large engine lists, fetched through the SDK's connection and parsed incrementally.

`GET /hosts?follow=devices` and `GET /vms?follow=...` of a 1,000-host fleet are ~90 MB of XML.
The SDK's readers turn that into a complete object graph (every device carries a full `Host`
object for its `<host>` reference, a `Host` has some 80 attributes): about 8 s of CPU and 300 MB
here before a single fact was made. This module sends the same requests through the same
`ovirtsdk4.Connection` (TLS, SSO token, renewal on 401, compression and request counting stay the
SDK's), then parses the body with the standard library's incremental XML parser. Each top-level
`<host>` / `<vm>` element is handed over as soon as it is complete and released right after, so a
list is never in memory twice: hosts are made into facts straight from their elements
(`reconciler.observe.engine.host_fact_from_element`), VMs through small records carrying only the
attributes `engine.vm_fact` reads, spelled as the SDK names them.

A schema names every attribute a record carries: reading one not named is an AttributeError, not
a silent None. Element and attribute names are those the SDK's readers accept (ovirtsdk4/readers.py).
"""
from __future__ import annotations

import gc
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import ovirtsdk4
from ovirtsdk4 import http
from ovirtsdk4.service import Future

Convert = Callable[[ET.Element], Any]
Schema = Mapping[str, Convert]


class Record:
    """One parsed element: the attributes its schema names, nothing else."""

    def __getattr__(self, name: str) -> Any:
        # Only reached for an attribute the schema does not name.
        raise AttributeError(f"record has no attribute {name!r}: not in its schema")

    def __repr__(self) -> str:
        return f"Record({self.__dict__!r})"


def _build(element: ET.Element, schema: Schema) -> Record:
    record = Record()
    record.__dict__ = {name: convert(element) for name, convert in schema.items()}
    return record


# ---- converters: each reads one attribute of the SDK's object from the parent element ----------

def attr(name: str) -> Convert:
    """An XML attribute (`id`, `href`)."""
    return lambda e: e.get(name)


def text(name: str) -> Convert:
    """A child element's text; None when the child is missing."""
    return lambda e: e.findtext(name)


def integer(name: str) -> Convert:
    def convert(e: ET.Element) -> int | None:
        value = e.findtext(name)
        return int(value) if value else None
    return convert


def boolean(name: str) -> Convert:
    """As the SDK reads booleans: true/false or 1/0, any case."""
    def convert(e: ET.Element) -> bool | None:
        value = e.findtext(name)
        if not value:
            return None
        return value.strip().lower() in ("true", "1")
    return convert


def one(name: str, schema: Schema) -> Convert:
    def convert(e: ET.Element) -> Record | None:
        child = e.find(name)
        return _build(child, schema) if child is not None else None
    return convert


def many(name: str, schema: Schema) -> Convert:
    """A list given inline; None when only a link (or nothing) stands for it, as in the SDK,
    where an unfollowed link is not a `list`."""
    def convert(e: ET.Element) -> list[Record] | None:
        child = e.find(name)
        return [_build(c, schema) for c in child] if child is not None else None
    return convert


REF: Schema = {"id": attr("id"), "href": attr("href"), "name": text("name")}
NAMED_ID: Schema = {"id": attr("id"), "name": text("name")}
PROPERTY: Schema = {"name": text("name"), "value": text("value")}
MDEV_TYPE: Schema = {"name": text("name"), "available_instances": integer("available_instances"),
                     "human_readable_name": text("human_readable_name"),
                     "description": text("description")}
HOST_DEVICE: Schema = {
    "id": attr("id"), "href": attr("href"), "name": text("name"),
    "capability": text("capability"), "iommu_group": integer("iommu_group"),
    "driver": text("driver"), "vendor": one("vendor", NAMED_ID),
    "product": one("product", NAMED_ID), "parent_device": one("parent_device", REF),
    "physical_function": one("physical_function", REF),
    "virtual_functions": integer("virtual_functions"),
    "m_dev_types": many("m_dev_types", MDEV_TYPE), "vm": one("vm", REF),
    "host": one("host", REF), "placeholder": boolean("placeholder")}
VM: Schema = {
    "id": attr("id"), "href": attr("href"), "name": text("name"), "status": text("status"),
    "cluster": one("cluster", REF), "host": one("host", REF),
    "placement_policy": one("placement_policy", {"affinity": text("affinity"),
                                                 "hosts": many("hosts", REF)}),
    "custom_properties": many("custom_properties", PROPERTY),
    "graphics_consoles": many("graphics_consoles", {"id": attr("id"),
                                                     "protocol": text("protocol")}),
    "host_devices": many("host_devices", HOST_DEVICE),
    "mediated_devices": many("mediated_devices", {"id": attr("id"),
                                                  "spec_params": many("spec_params", PROPERTY)})}


# ---- fetching and parsing ---------------------------------------------------------------------

def _request(path: str, query: Mapping[str, str | None]) -> http.Request:
    return http.Request(method="GET", path=path,
                        query={k: v for k, v in query.items() if v is not None})


class PendingList:
    """A list request sent at once and collected later, so the engine prepares and sends it while
    the caller is busy with an earlier answer. Collecting it again (a retry) sends it anew.

    Exactly what the SDK's `list()` sends, on the same connection; a fault answer is raised by the
    collection `service`'s own fault check, so callers see the SDK's exceptions.
    """

    def __init__(self, connection: ovirtsdk4.Connection, service: Any, path: str,
                 query: Mapping[str, str | None]) -> None:
        self._connection = connection
        self._service = service
        self._request = _request(path, query)
        self._context: Any = connection.send(self._request)

    def _check(self, response: Any) -> bytes:
        if response.code != 200:
            self._service._check_fault(response)   # noqa: SLF001 - the SDK's fault reader
        if not response.body:
            self._service._raise_error(response)   # noqa: SLF001
        self._connection.check_xml_content_type(response)
        return bytes(response.body)

    def body(self) -> bytes:
        context, self._context = self._context, None
        if context is None:
            context = self._connection.send(self._request)
        return Future(self._connection, context, self._check).wait()


def fetch_xml(connection: ovirtsdk4.Connection, service: Any, path: str,
              query: Mapping[str, str | None]) -> bytes:
    """GET `path` through the SDK connection and return the XML body (see PendingList)."""
    return PendingList(connection, service, path, query).body()


def elements(body: bytes) -> Iterator[ET.Element]:
    """The list's top-level elements, in order; each is released once the caller moves on."""
    events = ET.iterparse(io.BytesIO(body), events=("start", "end"))
    _, root = next(events)
    depth = 1
    for event, element in events:
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if depth == 1:
            yield element
            root.clear()


def records(body: bytes, schema: Schema) -> Iterator[Record]:
    """A record per top-level element of the list."""
    return (_build(element, schema) for element in elements(body))


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while lists become facts.

    The elements and facts made here hold no reference cycles, but hundreds of thousands of new
    objects trigger repeated collections over an ever larger heap: about a third of the time of
    turning a 1,000-host list into facts. Collection resumes (as it was) right after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
