"""Transport-level behaviour: TLS, SSO, tokens, API root, 404s, request log, concurrency."""
from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import pytest

from reconciler_lab.server import LabServer
from reconciler_lab.tls import ensure_tls
from tests.lab.conftest import connect, small_fleet

pytestmark = pytest.mark.lab


def test_tls_verified_with_lab_ca(lab: LabServer) -> None:
    assert lab.url.startswith("https://127.0.0.1:")
    with connect(lab) as c:
        assert c.test(raise_exception=True)


def test_tls_refused_without_the_lab_ca(lab: LabServer, tmp_path: Path) -> None:
    c = connect(lab, ca_file=None)   # system CA store: does not know the lab CA
    with pytest.raises(sdk.Error):
        c.test(raise_exception=True)
    other = ensure_tls(tmp_path / "other")
    c2 = connect(lab, ca_file=str(other.ca_cert))
    with pytest.raises(sdk.Error):
        c2.test(raise_exception=True)


def test_server_cert_names_localhost_and_ip(lab: LabServer) -> None:
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    for host in ("127.0.0.1", "localhost"):
        url = f"https://{host}:{lab.port}/ovirt-engine/api"
        with pytest.raises(urllib.error.HTTPError) as err:   # verified TLS, then 401: no token
            urllib.request.urlopen(url, context=ctx, timeout=5)
        assert err.value.code == 401
        assert err.value.headers["Content-Type"].startswith("application/xml")


def test_bad_credentials_raise_auth_error(lab: LabServer) -> None:
    c = connect(lab, password="wrong")
    with pytest.raises(sdk.AuthError, match="access_denied"):
        c.test(raise_exception=True)


def test_sso_reply_is_engine_json(lab: LabServer) -> None:
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    data = (f"grant_type=password&scope=ovirt-app-api&username={lab.username}"
            f"&password={lab.password}").encode()
    req = urllib.request.Request(f"https://127.0.0.1:{lab.port}/ovirt-engine/sso/oauth/token",
                                 data=data, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        body = json.loads(resp.read())
    assert set(body) == {"access_token", "scope", "exp", "token_type"}
    assert body["token_type"] == "bearer"


def test_plain_http_on_request(tmp_path: Path) -> None:
    with LabServer(small_fleet(), tmp_path / "s", tls=False) as lab:
        assert lab.url.startswith("http://") and lab.ca_file is None
        with connect(lab) as c:
            assert c.system_service().get().product_info.name == "oVirt Engine"


def test_api_root_product_info(conn: sdk.Connection) -> None:
    api = conn.system_service().get()
    assert api.product_info.version.major == 4
    assert api.product_info.version.full_version.startswith("4.5.6")
    assert api.summary.hosts.total == 3


def test_unknown_ids_are_404(conn: sdk.Connection) -> None:
    system = conn.system_service()
    for call in (lambda: system.hosts_service().host_service("nope").get(),
                 lambda: system.vms_service().vm_service("nope").get(),
                 lambda: system.clusters_service().cluster_service("nope").get(),
                 lambda: system.events_service().event_service("999999").get()):
        with pytest.raises(sdk.NotFoundError):
            call()
    host = system.hosts_service().list(search="name=host1")[0]
    with pytest.raises(sdk.NotFoundError):
        system.hosts_service().host_service(host.id).devices_service().device_service("00").get()
    vm = system.vms_service().list(search="name=vm-vgpu")[0]
    with pytest.raises(sdk.NotFoundError):
        system.vms_service().vm_service(vm.id).mediated_devices_service().device_service(
            "00000000-0000-0000-0000-000000000000").get()


def _status_with_token(lab: LabServer, token: str) -> int:
    """The lab's answer to a bare API request that presents `token` (no SDK, no re-login)."""
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    req = urllib.request.Request(lab.url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/xml"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_logout_revokes_token(lab: LabServer) -> None:
    c = connect(lab)
    token = c.authenticate()
    assert _status_with_token(lab, token) == 200           # the token works before the logout
    c.close()
    assert any(r.path == "/ovirt-engine/services/sso-logout" and r.status == 200
               for r in lab.request_log)
    assert _status_with_token(lab, token) == 401           # and is refused after it
    with connect(lab) as again:                            # a new login still works
        assert again.test(raise_exception=True)


def test_request_log_records_each_request(lab: LabServer, conn: sdk.Connection) -> None:
    conn.authenticate()   # the SDK logs in lazily; keep the login out of the log
    lab.clear_request_log()
    conn.system_service().hosts_service().list(search="cluster=Default")
    log = lab.request_log
    assert [(r.method, r.path, r.status) for r in log] == [("GET", "/ovirt-engine/api/hosts", 200)]
    assert "search=cluster%3DDefault" in log[0].query
    assert log[0].bytes_sent > 0 and log[0].seconds >= 0


def test_ten_concurrent_clients(lab: LabServer) -> None:
    errors: list[BaseException] = []
    counts: list[int] = []

    def worker() -> None:
        try:
            with connect(lab) as c:
                for _ in range(5):
                    counts.append(len(c.system_service().vms_service().list(
                        follow="host_devices,mediated_devices")))
                    c.system_service().hosts_service().list(follow="devices")
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert counts == [4] * 50


def test_large_answers_are_compressed_a_slice_at_a_time_to_the_same_bytes() -> None:
    import gzip

    from reconciler_lab import server
    from reconciler_lab.xmlform import DECLARATION

    big = "<vms>" + "<vm><name>\u00e9 \u2713</name></vm>" * 100_000 + "</vms>"   # > one slice
    for text in (big, "\u00e9" * 3000):          # the second: < 4,096 characters, > 4,096 bytes
        data, compressed = server._encode((DECLARATION, text), True)
        assert compressed and gzip.decompress(data) == (DECLARATION + text).encode("utf-8")
        assert server._encode((DECLARATION, text), False) == \
            ((DECLARATION + text).encode("utf-8"), False)
    assert server._encode((DECLARATION, "<vms/>"), True) == ((DECLARATION + "<vms/>").encode(),
                                                             False)
    assert server._encode(("",), True) == (b"", False)


def test_dropping_what_was_serialised_changes_no_answer(lab: LabServer) -> None:
    def answers() -> list[str]:
        return [lab.api.handle("GET", path, query, b"").body for path, query in (
            ("/hosts", {"follow": "devices"}),
            ("/vms", {"follow": "host_devices,mediated_devices,graphics_consoles"}))]

    before, renderer = answers(), lab.api.render
    lab.drop_cache()
    assert lab.api.render is not renderer       # written anew: what a cold read pays for
    assert answers() == before


def test_a_large_gzip_answer_is_streamed_in_chunks_to_the_same_document(tmp_path: Path) -> None:
    import gzip

    from reconciler_lab.fleet import generate_fleet

    with LabServer(generate_fleet(30, 8, 60), tmp_path / "big") as lab, connect(lab) as c:
        ctx = ssl.create_default_context(cafile=str(lab.ca_file))

        def get(headers: dict[str, str]) -> tuple[Any, bytes]:
            req = urllib.request.Request(
                lab.url + "/hosts?follow=devices",
                headers={"Authorization": f"Bearer {c.authenticate()}", **headers})
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return resp.headers, resp.read()

        lab.clear_request_log()
        streamed_headers, streamed = get({"Accept-Encoding": "gzip"})
        record = lab.request_log[-1]
        plain_headers, plain = get({})
        assert streamed_headers["Transfer-Encoding"] == "chunked"
        assert streamed_headers["Content-Encoding"] == "gzip"
        assert "Content-Length" not in streamed_headers
        assert plain_headers["Content-Length"] == str(len(plain)) and len(plain) > 2**20
        assert gzip.decompress(streamed) == plain
        assert (record.status, record.bytes_sent) == (200, len(streamed))
        # the SDK (libcurl) reads it as any other answer
        assert len(c.system_service().hosts_service().list(follow="devices")) == 30
