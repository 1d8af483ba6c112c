"""Which engine failures are retried: wire errors, 5xx and a 'busy' 409, never a precondition."""
from __future__ import annotations

import ovirtsdk4 as sdk
import pytest

from reconciler.apply import engine_ops as ops


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
])
def test_transient(err: sdk.Error) -> None:
    assert ops.is_transient(err)


@pytest.mark.parametrize("err", [
    _error(409, "[Cannot install Host. Please move Host to Maintenance mode first.]"),
    _error(409, "[Cannot add Host devices. VM cad-02 is not Down.]"),
    _error(409, "[Cannot add Host devices. VM x is not pinned to any host.]"),
    _error(400, "[Cannot add Host devices. Host device pci_x was not found on host h.]"),
    _error(401, "Unauthorized", sdk.AuthError),
    _error(404, None, sdk.NotFoundError),
])
def test_not_transient(err: sdk.Error) -> None:
    assert not ops.is_transient(err)


def test_refusals_are_typed_and_carry_the_engine_detail() -> None:
    err = ops._refusal(_error(409, "[Cannot install Host. Please move Host to Maintenance mode "
                                   "first.]"), "install host gpu-01")
    assert isinstance(err, ops.PreconditionFailed)
    assert str(err) == ("engine refused to install host gpu-01: Cannot install Host. Please move "
                        "Host to Maintenance mode first. (HTTP 409)")
    assert (err.code, err.detail) == (409, "Cannot install Host. Please move Host to Maintenance "
                                           "mode first.")
    assert isinstance(ops._refusal(_error(400, "bad"), "x"), ops.EngineRefused)
    assert not isinstance(ops._refusal(_error(400, "bad"), "x"), ops.PreconditionFailed)
    assert isinstance(ops._refusal(_error(404, None, sdk.NotFoundError), "x"),
                      ops.NotFoundOnEngine)
