"""The fleet map as one self-contained HTML page: inline CSS and JS, the data inline as JSON.

No CDN and no request of any kind (a Content-Security-Policy forbids them, except that the
controller's live page may fetch its own `/fleet-page.json`). The data is a compact form of the map
(strings stored once in a table) so that 1,000 hosts x 8 GPUs stay near a megabyte, and the page
builds its grid once and filters by hiding cards, which keeps it responsive at that size.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from reconciler.fleetmap.model import MODES, FleetMap

FLAG_KINDS = ("blocked", "drift", "pending", "unmanaged", "check")
FORMAT = 1


class _Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, text: str | None) -> int:
        if text is None:
            return -1
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.table)
            self.table.append(text)
        return i


def compact(fm: FleetMap, live: bool = False) -> dict[str, Any]:
    """The page's data: see page.js for the layout of each row."""
    s = _Strings()
    kinds = {k: i for i, k in enumerate(FLAG_KINDS)}
    clusters = [[c.name, c.cpu_type] for c in fm.clusters]
    cidx = {c.name: i for i, c in enumerate(fm.clusters)}

    def flags(fs: tuple[Any, ...]) -> list[Any]:
        return [[kinds[f.kind], f.message] for f in fs]

    hosts = []
    for h in fm.hosts():
        gpus = []
        for g in h.gpus:
            smi = ([g.smi.memory_used_mib, g.smi.memory_total_mib, g.smi.utilization_percent,
                    g.smi.vgpus_active] if g.smi else 0)
            gpus.append([g.address, s(g.model), MODES.index(g.mode), s(g.vgpu_type),
                         s(g.vgpu_type_name), g.seats_used, g.seats_total,
                         [[s(v.name), s(v.status), v.via] for v in g.vms], smi, flags(g.flags),
                         s(g.driver), [s(o.type) for o in g.offers], g.iommu_group])
        hosts.append([h.name, cidx[h.cluster], s(h.status), h.cpu_vendor, h.probe_cpu_vendor,
                      h.vgpu_placement, h.driver_version, h.probe_note, flags(h.flags), gpus,
                      list(h.vgpu_vms_unplaced), h.passthrough_enabled])
    totals = [[t.cluster, t.type, t.name, t.used, t.free, t.capacity, t.gpus_running, t.gpus_idle]
              for t in fm.totals]
    room = [[r.cluster, r.type, r.name, r.instances_per_vm, r.vms,
             [[p.host, p.gpu, p.vms] for p in r.next]] for r in fm.headroom]
    return {"v": FORMAT, "at": fm.generated_at, "live": live, "s": s.table, "modes": list(MODES),
            "kinds": list(FLAG_KINDS), "c": clusters, "h": hosts, "t": totals, "r": room,
            "f": [[kinds[f.kind], f.key, f.message] for f in fm.flags]}


def data_json(fm: FleetMap, live: bool = False) -> str:
    return json.dumps(compact(fm, live), separators=(",", ":"), ensure_ascii=False)


def _asset(name: str) -> str:
    return resources.files("reconciler.fleetmap").joinpath("assets", name).read_text("utf-8")


def render_html(fm: FleetMap, live: bool = False, refresh_seconds: int = 30) -> str:
    """The page; `live` (the controller's `/`) refreshes its data from `/fleet-page.json`."""
    data = data_json(fm, live).replace("</", "<\\/")   # the JSON cannot end its <script>
    connect = "'self'" if live else "'none'"
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
           f"img-src data:; connect-src {connect}; base-uri 'none'; form-action 'none'")
    return (_asset("page.html")
            .replace("@CSP@", csp)
            .replace("@CSS@", _asset("page.css"))
            .replace("@REFRESH@", str(int(refresh_seconds)))
            .replace("@JS@", _asset("page.js"))
            .replace("@DATA@", data))
