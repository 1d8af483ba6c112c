"""The two large engine lists, fetched through the SDK's connection and parsed as they arrive.

`GET /hosts?follow=devices` and `GET /vms?follow=...` of a 1,000-host fleet are ~115 MB of XML.
The SDK's readers turn that into a complete object graph (every device carries a full `Host`
object for its `<host>` reference, a `Host` has some 80 attributes): over 10 s of CPU and 600 MB
here before a single fact was made. This module sends the same requests through the same
`ovirtsdk4.Connection` (TLS, SSO token, renewal on 401, compression and request counting stay the
SDK's), and parses each answer with the standard library's C parser while libcurl receives it,
instead of the SDK buffering the whole body first. Each top-level `<host>` / `<vm>` element is
handed over as soon as it is complete and released right after, so no list is ever in memory
whole; `reconciler.observe.engine` makes facts straight from the elements (element and attribute
names are those the SDK's readers accept, ovirtsdk4/readers.py).
"""
from __future__ import annotations

import gc
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import ovirtsdk4
import pycurl
from ovirtsdk4 import http
from ovirtsdk4.service import Future

T = TypeVar("T")


# ---- parsing as the bytes arrive ---------------------------------------------------------------

# Bytes handed to the parser at once when a whole body is parsed (`elements`): small enough that
# only a few top-level elements are ever built ahead of the one being handed over.
_PIECE = 64 * 1024


class ListStream:
    """The top-level elements of one list document, each handed to `take` once it is complete.

    Fed in pieces as they arrive; an element is released as soon as `take` returns, so the
    document is never in memory as a whole. The standard library's C parser and tree builder do
    all the work: no per-element event goes through Python (for ~1 million elements, reading
    `iterparse` events cost about as much as building the elements). After each piece, every
    child of the list element but the last is complete, because the parser has already begun its
    next sibling; the last is handed over with the next piece or at `close`.
    """

    def __init__(self, take: Callable[[ET.Element], None]) -> None:
        builder = ET.TreeBuilder()
        # The tree builder keeps the root to itself until the document ends; opened first, this
        # holder element makes the list element its child, reachable while it is being built.
        self._holder = builder.start("holder", {})
        self._parser = ET.XMLParser(target=builder)
        self._list: ET.Element | None = None
        self._take = take

    def feed(self, data: bytes | memoryview) -> None:
        self._parser.feed(data)
        items = self._list
        if items is None:
            if not len(self._holder):
                return
            items = self._list = self._holder[0]
        if len(items) > 1:
            self._hand_over(items, len(items) - 1)

    def close(self) -> None:
        """The end of the document: hand over the last element (ParseError if it is cut short)."""
        self._parser.close()
        if self._list is not None:
            self._hand_over(self._list, len(self._list))

    def _hand_over(self, items: ET.Element, count: int) -> None:
        for element in items[:count]:
            self._take(element)
        del items[:count]


def elements(body: bytes) -> Iterator[ET.Element]:
    """The list's top-level elements, in order; each is released once the caller moves on."""
    ready: list[ET.Element] = []
    stream = ListStream(ready.append)
    view = memoryview(body)
    for at in range(0, len(view), _PIECE):
        stream.feed(view[at:at + _PIECE])
        yield from ready
        ready.clear()
    stream.close()
    yield from ready


# ---- fetching ----------------------------------------------------------------------------------

def _request(path: str, query: Mapping[str, str | None]) -> http.Request:
    return http.Request(method="GET", path=path,
                        query={k: v for k, v in query.items() if v is not None})


class _Receiver:
    """curl's header and body callbacks for one list request, in place of the SDK's buffers.

    A 200 answer goes straight into a `ListStream` as libcurl hands over the decompressed bytes;
    any other answer (a fault, a 401 before the SDK logs in again) is kept in the SDK's own body
    buffer, so the SDK reads it as always. The status comes from the status line: libcurl refuses
    `getinfo` while a transfer is running.
    """

    def __init__(self, headers: io.BytesIO, body: io.BytesIO, stream: ListStream) -> None:
        self._headers = headers
        self._body = body
        self._stream = stream
        self.status = 0
        self.streamed = 0                         # bytes handed to the stream
        self.error: Exception | None = None      # what the stream raised, kept for the caller

    def header(self, line: bytes) -> None:
        self._headers.write(line)
        if line.startswith(b"HTTP/"):            # a new answer (after a 100 Continue, say)
            parts = line.split(None, 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def write(self, data: bytes) -> None:
        if self.status != 200:
            self._body.write(data)
            return
        self.streamed += len(data)
        if self.error is not None:
            return
        try:
            self._stream.feed(data)
        except Exception as exc:  # noqa: BLE001 - raised from inside libcurl it would abort the
            self.error = exc      # transfer as an unrelated write error; re-raised after it ends

    def finish(self) -> None:
        """After the whole answer arrived: what the stream raised, or the end of the document."""
        if self.error is not None:
            raise self.error
        self._stream.close()


class PendingList:
    """A list request sent at once and collected later, so the engine prepares and sends it while
    the caller is busy with an earlier answer. Its body is parsed while it is received (whichever
    answer the caller is waiting for, libcurl moves both), each top-level element made into an
    item by `take` and released. Collecting it again (a retry) sends it anew and starts over.

    Exactly what the SDK's `list()` sends, on the same connection; a fault answer is raised by the
    collection `service`'s own fault check, so callers see the SDK's exceptions. An SDK connection
    is used by one thread at a time (docs/engine.md), so its handle can be changed after sending.
    """

    def __init__(self, connection: ovirtsdk4.Connection, service: Any, path: str,
                 query: Mapping[str, str | None], take: Callable[[ET.Element], T]) -> None:
        self._connection = connection
        self._service = service
        self._request = _request(path, query)
        self._take = take
        self._sent: tuple[Any, _Receiver, list[T]] | None = self._send()

    def _send(self) -> tuple[Any, _Receiver, list[T]]:
        items: list[T] = []
        context = self._connection.send(self._request)
        curl, body, headers = context[0], context[1], context[2]
        receiver = _Receiver(headers, body, ListStream(lambda e: items.append(self._take(e))))
        curl.setopt(pycurl.HEADERFUNCTION, receiver.header)
        curl.setopt(pycurl.WRITEFUNCTION, receiver.write)
        return context, receiver, items

    def collect(self) -> list[T]:
        """The items of the whole list, in order."""
        sent, self._sent = self._sent, None
        context, receiver, items = sent if sent is not None else self._send()

        def check(response: Any) -> list[T]:
            if response.code != 200:
                self._service._check_fault(response)   # noqa: SLF001 - the SDK's fault reader
            if receiver.status != 200:
                # Answered on a new handle (the SDK logged in again after a 401): a plain body.
                body = _nonempty(self._service, response)
                self._connection.check_xml_content_type(response)
                return _parse_body(body, self._take)
            if not receiver.streamed:
                self._service._raise_error(response)   # noqa: SLF001 - as for an empty body
            self._connection.check_xml_content_type(response)
            _count_streamed(self._connection, receiver.streamed)
            receiver.finish()
            return items

        return Future(self._connection, context, check).wait()


def _nonempty(service: Any, response: Any) -> bytes:
    if not response.body:
        service._raise_error(response)   # noqa: SLF001 - the SDK's error for an empty answer
    return bytes(response.body)


def _parse_body(body: bytes, take: Callable[[ET.Element], T]) -> list[T]:
    return [take(element) for element in elements(body)]


def _count_streamed(connection: Any, count: int) -> None:
    """Streamed bytes never reach the SDK's buffer: add them to the connection's received count
    (reconciler.engine.client.CountingConnection), as a buffered answer would have been."""
    add_counts = getattr(connection, "add_counts", None)
    if add_counts is not None:
        add_counts(0, count)


def fetch_xml(connection: ovirtsdk4.Connection, service: Any, path: str,
              query: Mapping[str, str | None]) -> bytes:
    """GET `path` through the SDK connection and return the XML body, checked as the SDK does."""
    def check(response: Any) -> bytes:
        if response.code != 200:
            service._check_fault(response)   # noqa: SLF001 - the SDK's fault reader
        body = _nonempty(service, response)
        connection.check_xml_content_type(response)
        return body

    return Future(connection, connection.send(_request(path, query)), check).wait()


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while lists become facts.

    The elements and facts made here hold no reference cycles, but hundreds of thousands of new
    objects trigger repeated collections over an ever larger heap: about a third of the time of
    turning a 1,000-host list into facts. Collection resumes (as it was) right after.

    With `freeze` (the engine read), every object alive then is also frozen (`gc.freeze`): the
    facts live as long as the pass, and the first collections after the pause would otherwise walk
    all of them again, and again as they age through the generations (~0.4 s of a 1,000-host
    plan). What an earlier freezing pause froze is unfrozen and collected once when the next one
    begins, so a process that observes again and again (the controller, apply) never keeps cyclic
    garbage out of reach for longer than a pass. A pause without `freeze` (a short read whose
    elements are dropped at once, as the controller's device poll makes) leaves what is frozen
    alone: it would otherwise pay a full collection each time.
    """
    enabled = gc.isenabled()
    if freeze and enabled and gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze:
                gc.freeze()
            gc.enable()
