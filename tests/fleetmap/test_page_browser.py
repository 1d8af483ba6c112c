"""The fleet map page in headless Chromium: the demo fleet's page from `reconcile fleet -o html`,
the page at 1,000 hosts x 8 GPUs, and the controller's live page at `/`."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import expect

from benchmarks.bench_fleetmap import build_map
from reconciler.controller.metrics import ControllerMetrics
from reconciler.controller.server import ControllerServer, ControllerState
from reconciler.fleetmap.model import FleetMap
from reconciler.fleetmap.render_html import render_html
from tests.support.browser import open_page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def child_pythonpath() -> str:
    """This checkout for the child, after what the run put first (the mark guard's watcher)."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
SCREENSHOT = REPO / "docs" / "fleet-map.png"


def demo_page(tmp_path: Path) -> Path:
    """`reconcile fleet specs/examples/lab.yaml -o html` against the embedded lab."""
    out = tmp_path / "fleet.html"
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "--log-level", "warning", "fleet",
         str(REPO / "specs/examples/lab.yaml"), "-o", "html", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": child_pythonpath(), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.lab
def test_demo_fleet_page_renders_and_finds_vms(tmp_path: Path) -> None:
    path = demo_page(tmp_path)
    with open_page() as (page, log):
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert "12 GPUs" in page.inner_text("#summary")
        assert page.locator(".gpu").count() == 12
        page.fill("#f-vm", "vdi-01")
        assert page.inner_text("#vm-result") == "m60-01 0000:05:00.0"
        hit = page.locator(".gpu.hit")
        assert hit.count() == 1 and "vdi-01" in (hit.get_attribute("title") or "")
        assert "GRID M60-2Q, 1 of 4 seats" in page.inner_text("#detail")
        page.fill("#f-vm", "ml-01")
        assert page.inner_text("#vm-result") == "amd-01 0000:e1:00.0"
        assert "passthrough" in (page.locator(".gpu.hit").get_attribute("class") or "")
        page.fill("#f-vm", "no-such-vm")
        assert page.inner_text("#vm-result") == "no GPU holds a VM named like that"
        page.fill("#f-vm", "")
        # filters: a cluster, then a type
        page.select_option("#f-cluster", label="gpu-amd")
        assert page.locator(".host:not([hidden])").count() == 1
        page.select_option("#f-cluster", "")
        page.select_option("#f-type", "nvidia-231")
        visible = page.locator(".gpu:not([hidden])")
        assert visible.count() == 2 and "t4-01" in (visible.first.get_attribute("title") or "")
        page.select_option("#f-type", "")
        # drift is flagged on what it concerns: vdi-01's pending vGPU change on its GPU
        assert page.locator(".gpu.f-warn").count() >= 1
        page.click(".gpu.f-warn >> nth=0")
        assert "pending update vgpu" in page.inner_text("#detail").lower()
        page.fill("#f-vm", "vdi-01")
        shot = tmp_path / "fleet-map.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("UPDATE_SCREENSHOT"):
            SCREENSHOT.write_bytes(shot.read_bytes())
    assert log.errors == []
    assert all(url.startswith("file://") for url in log.requests), log.requests


def test_page_at_a_thousand_hosts_loads_and_searches(tmp_path: Path) -> None:
    fm = build_map(1000)
    path = tmp_path / "big.html"
    path.write_text(render_html(fm))
    assert path.stat().st_size < 3 * 2**20
    with open_page((1400, 900)) as (page, log):
        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        assert time.perf_counter() - started < 20
        assert page.locator(".gpu").count() == 8000
        page.fill("#f-vm", "vdi-0042-3")
        assert page.inner_text("#vm-result") == "host-0042 0000:10:00.0"
        page.fill("#f-vm", "")
        page.check("#f-flagged")
        flagged = page.locator(".host:not([hidden])").count()
        assert 0 < flagged < 1000
    assert log.errors == []


def _small_map(vm_gpu: str) -> FleetMap:
    fm = build_map(2, gpus=2, vms_per_host=1)
    # move host-0000's VM to another GPU address, as the next pass would see it
    (c0, *rest) = fm.clusters
    h0 = c0.hosts[0]
    gpus = tuple(replace(g, address=vm_gpu) if g.vms else g for g in h0.gpus)
    return replace(fm, clusters=(replace(c0, hosts=(replace(h0, gpus=gpus),)), *rest))


def test_controller_serves_the_live_page_and_it_refreshes() -> None:
    state = ControllerState()
    state.fleet.refresh_seconds = 1
    state.fleet.update(_small_map("0000:10:00.0"))
    with ControllerServer(state, ControllerMetrics(), port=0) as server:
        with open_page() as (page, log):
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready='1']")
            page.fill("#f-vm", "vdi-0000-0")
            assert page.inner_text("#vm-result") == "host-0000 0000:10:00.0"
            state.fleet.update(_small_map("0000:ab:00.0"))
            # the page's CSP allows no eval, so waits go through selectors, not JS predicates
            expect(page.locator("#vm-result")).to_have_text("host-0000 0000:ab:00.0",
                                                           timeout=15_000)
        assert log.errors == []
        assert {u.split("/", 3)[-1] for u in log.requests} <= {"", "fleet-page.json"}
