"""One engine error family, decided at the SDK boundary: which failures are transient (wire
errors, 5xx, a 'busy' 409), which are refusals (a precondition, not found, bad credentials)."""
from __future__ import annotations

import ovirtsdk4 as sdk
import pytest

from reconciler.engine.errors import (EngineRefused, EngineTransient, NotFoundOnEngine,
                                      PreconditionFailed, classify)


def _error(code: int | None, detail: str | None = None, cls: type = sdk.Error) -> sdk.Error:
    fault = sdk.types.Fault(reason="Operation Failed", detail=detail) if detail else None
    message = f'Fault reason is "Operation Failed". Fault detail is "{detail}". ' \
              f"HTTP response code is {code}." if detail else "failed"
    err = cls(message)
    err.code, err.fault = code, fault
    return err


@pytest.mark.parametrize("err", [
    _error(503, "Injected lab fault"),
    _error(500, "[Internal Engine Error]"),
    _error(409, "[Cannot edit Host. Related operation is currently in progress. "
                "Please try again later.]"),
    _error(409, "[Cannot run VM. The VM is locked.]"),
    sdk.ConnectionError("Error while sending HTTP request: (7, 'Failed to connect')"),
    sdk.TimeoutError("Error while sending HTTP request: (28, 'Operation timed out')"),
    sdk.Error("Failed to read response: [(<pycurl.Curl object at 0x7f>, 52, "
              "'Empty reply from server')]"),
    sdk.Error("Error while sending HTTP request: (56, 'Recv failure')"),
])
def test_transient(err: sdk.Error) -> None:
    assert isinstance(classify(err, "x"), EngineTransient)


@pytest.mark.parametrize("err", [
    _error(409, "[Cannot install Host. Please move Host to Maintenance mode first.]"),
    _error(409, "[Cannot add Host devices. VM cad-02 is not Down.]"),
    _error(409, "[Cannot add Host devices. VM x is not pinned to any host.]"),
    _error(400, "[Cannot add Host devices. Host device pci_x was not found on host h.]"),
    _error(401, "Unauthorized", sdk.AuthError),
    _error(404, None, sdk.NotFoundError),
    sdk.Error("Error while sending HTTP request: (60, 'SSL certificate problem')"),
])
def test_not_transient(err: sdk.Error) -> None:
    assert isinstance(classify(err, "x"), EngineRefused)


def test_refusals_are_typed_and_carry_the_engine_detail() -> None:
    err = classify(_error(409, "[Cannot install Host. Please move Host to Maintenance mode "
                               "first.]"), "install host gpu-01")
    assert isinstance(err, PreconditionFailed)
    assert str(err) == ("engine refused to install host gpu-01: Cannot install Host. Please move "
                        "Host to Maintenance mode first. (HTTP 409)")
    assert (err.code, err.detail) == (409, "Cannot install Host. Please move Host to Maintenance "
                                           "mode first.")
    assert type(classify(_error(400, "bad"), "x")) is EngineRefused
    assert isinstance(classify(_error(404, None, sdk.NotFoundError), "x"), NotFoundOnEngine)


def test_messages_carry_no_library_object_text() -> None:
    err = classify(sdk.Error("Failed to read response: [(<pycurl.Curl object at 0x7f3a2b1c>, 52,"
                             " 'Empty reply from server')]"), "list hosts")
    assert "pycurl" not in str(err) and "0x7f" not in str(err)
    assert "closed the connection without answering" in str(err)
