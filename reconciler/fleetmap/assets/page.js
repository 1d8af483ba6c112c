"use strict";
// The fleet map page. Data rows (see reconciler/fleetmap/render_html.py `compact`):
//  host: [name, cluster#, status$, vendor, probeVendor, placement, driverVersion, probeNote,
//         flags, gpus, unplacedVms, passthroughEnabled]
//  gpu:  [address, model$, mode#, type$, typeName$, used, total, vms, smi, flags, driver$,
//         offers$[], iommuGroup];  vm: [name$, status$, via];  smi: [memUsed, memTotal, util, vgpus] | 0
//  flag: [kind#, message];  $ = index into the string table S (-1: none)
(function () {
  var D = JSON.parse(document.getElementById("fleet-data").textContent);
  var grid = document.getElementById("grid");
  var detail = document.getElementById("detail");
  var sel = { cluster: "", host: "", type: "", vm: "", flagged: false, modes: {} };
  var pinned = null;      // the GPU whose details stay shown
  var cells = [];         // per GPU: {el, host, gpu, vms: [lowercase names]}
  var cards = [];         // per host: {el, host, gpuCells}
  var MODE_WORDS = { passthrough: "passthrough", vgpu: "vGPU", idle: "idle", host: "host driver", unknown: "unknown" };

  function S(i) { return i >= 0 ? D.s[i] : null; }
  function esc(t) {
    return String(t == null ? "" : t).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function mode(g) { return D.modes[g[2]]; }
  function worst(flags) {
    var w = "";
    for (var i = 0; i < flags.length; i++) {
      if (D.kinds[flags[i][0]] === "blocked") return "blocked";
      w = "warn";
    }
    return w;
  }
  function gpuTitle(h, g) {
    var m = mode(g), t = h[0] + " " + g[0] + " " + S(g[1]) + ": " + MODE_WORDS[m];
    if (m === "vgpu") t += " " + (S(g[4]) || S(g[3])) + " " + g[5] + "/" + (g[6] == null ? "?" : g[6]);
    if (g[7].length) t += " - " + g[7].map(function (v) { return S(v[0]); }).join(", ");
    return t;
  }

  function setup() {
    var fc = document.getElementById("f-cluster"), ft = document.getElementById("f-type");
    D.c.forEach(function (c, i) { fc.add(new Option(c[0], String(i))); });
    var types = {};
    D.t.forEach(function (t) { if (t[0] == null) types[t[1]] = t[2]; });
    Object.keys(types).sort().forEach(function (k) { ft.add(new Option(k + (types[k] ? " " + types[k] : ""), k)); });
    var modes = document.getElementById("modes");
    D.modes.forEach(function (m) {
      sel.modes[m] = true;
      var l = document.createElement("label"), cb = document.createElement("input");
      cb.type = "checkbox"; cb.checked = true; cb.dataset.mode = m; cb.id = "mode-" + m;
      cb.addEventListener("change", function () { sel.modes[m] = cb.checked; apply(); });
      l.appendChild(cb); l.appendChild(document.createTextNode(" " + MODE_WORDS[m]));
      modes.appendChild(l);
    });
    document.getElementById("legend").innerHTML =
      '<span><i style="background:var(--pt)"></i>passthrough</span>' +
      '<span><i style="background:linear-gradient(to top,var(--vgpu) 50%,var(--vgpu-light) 50%)"></i>vGPU (fill = seats used)</span>' +
      '<span><i style="background:var(--idle)"></i>idle</span>' +
      '<span><i style="background:var(--host)"></i>held by a host driver</span>' +
      '<span><i style="background:repeating-linear-gradient(45deg,#c7ccd2 0 3px,#eef0f2 3px 6px)"></i>unknown</span>' +
      '<span><i style="background:var(--warn);border-radius:50%"></i>drift / check</span>' +
      '<span><i style="background:var(--blocked);border-radius:50%"></i>blocked</span>';
    fc.addEventListener("change", function () { sel.cluster = fc.value; apply(); });
    ft.addEventListener("change", function () { sel.type = ft.value; apply(); });
    document.getElementById("f-host").addEventListener("input", function (e) { sel.host = e.target.value.trim().toLowerCase(); apply(); });
    document.getElementById("f-vm").addEventListener("input", function (e) { sel.vm = e.target.value.trim().toLowerCase(); apply(true); });
    document.getElementById("f-flagged").addEventListener("change", function (e) { sel.flagged = e.target.checked; apply(); });
    grid.addEventListener("mouseover", function (e) { var i = e.target.dataset && e.target.dataset.i; if (i != null && pinned == null) show(+i); });
    grid.addEventListener("click", function (e) {
      var i = e.target.dataset && e.target.dataset.i;
      if (i == null) return;
      if (pinned != null && cells[pinned]) cells[pinned].el.classList.remove("sel");
      pinned = pinned === +i ? null : +i;
      if (pinned != null) cells[pinned].el.classList.add("sel");
      show(+i);
    });
  }

  function build() {
    cells = []; cards = [];
    var html = [], byCluster = D.c.map(function () { return []; });
    D.h.forEach(function (h, hi) { byCluster[h[1]].push(hi); });
    var counts = {};
    byCluster.forEach(function (hosts, ci) {
      var c = D.c[ci];
      html.push('<div class="cluster" data-c="' + ci + '"><h2>' + esc(c[0]) + (c[1] ? ' <span class="hint">' + esc(c[1]) + "</span>" : "") +
                ' <span class="hint">' + hosts.length + " hosts</span></h2><div class=\"hosts\">");
      hosts.forEach(function (hi) {
        var h = D.h[hi], st = S(h[2]), hw = worst(h[8]);
        var cls = "host" + (st !== "up" ? " down" : "") + (hw === "blocked" ? " blocked" : hw ? " flagged" : "");
        html.push('<div class="' + cls + '" data-h="' + hi + '"><div class="name">' + esc(h[0]) +
                  '</div><div class="meta">' + esc(st) + (h[3] ? " · " + esc(h[3]) : "") + (h[8].length ? " · " + h[8].length + " flag" + (h[8].length > 1 ? "s" : "") : "") +
                  '</div><div class="gpus">');
        h[9].forEach(function (g) {
          var m = mode(g), i = cells.length, fw = worst(g[9]);
          counts[m] = (counts[m] || 0) + 1;
          var occ = m === "vgpu" && g[6] ? Math.round(100 * Math.min(g[5] / g[6], 1)) : 0;
          html.push('<button type="button" class="gpu m-' + m + (fw ? " f-" + fw : "") + '" data-i="' + i + '"' +
                    (m === "vgpu" ? ' style="--occ:' + occ + '%"' : "") + ' aria-label="' + esc(gpuTitle(h, g)) + '" title="' + esc(gpuTitle(h, g)) + '"></button>');
          cells.push({ host: hi, gpu: g, vms: g[7].map(function (v) { return (S(v[0]) || "").toLowerCase(); }) });
        });
        html.push("</div></div>");
      });
      html.push("</div></div>");
    });
    grid.innerHTML = html.join("");
    var els = grid.querySelectorAll(".gpu");
    for (var i = 0; i < els.length; i++) cells[i].el = els[i];
    var hostEls = grid.querySelectorAll(".host");
    for (var j = 0; j < hostEls.length; j++) cards.push({ el: hostEls[j], host: +hostEls[j].dataset.h });
    var total = cells.length;
    document.getElementById("summary").innerHTML = "<span><b>" + D.c.length + "</b> clusters</span><span><b>" + D.h.length + "</b> hosts</span><span><b>" + total + "</b> GPUs:</span>" +
      D.modes.filter(function (m) { return counts[m]; }).map(function (m) { return "<span>" + counts[m] + " " + MODE_WORDS[m] + "</span>"; }).join("");
    document.getElementById("observed").textContent = D.at ? "observed " + D.at : "";
    var names = {}, dl = [];
    D.h.forEach(function (h) { h[9].forEach(function (g) { g[7].forEach(function (v) { var n = S(v[0]); if (n && n[0] !== "?") names[n] = 1; }); }); });
    Object.keys(names).sort().slice(0, 5000).forEach(function (n) { dl.push('<option value="' + esc(n) + '">'); });
    document.getElementById("vm-names").innerHTML = dl.join("");
    tables();
  }

  function tables() {
    var room = {};
    D.r.forEach(function (r) { room[r[0] + "\u0000" + r[1]] = r; });
    var rows = [];
    D.t.forEach(function (t) {
      if (t[0] == null) return;
      if (sel.cluster !== "" && D.c[+sel.cluster][0] !== t[0]) return;
      if (sel.type && sel.type !== t[1]) return;
      if (!sel.type && !t[3] && !t[6]) return;      // offered only by idle GPUs: on request
      var r = room[t[0] + "\u0000" + t[1]];
      var next = r && r[5].length ? r[5][0][0] + " " + r[5][0][1] : "-";
      rows.push("<tr><td>" + esc(t[0]) + "</td><td>" + esc(t[1]) + "</td><td>" + esc(t[2] || "") + '</td><td class="n">' + t[3] + '</td><td class="n">' + t[4] +
                '</td><td class="n">' + t[5] + '</td><td class="n">' + t[6] + '</td><td class="n">' + t[7] + '</td><td class="n">' +
                (r ? r[4] + (r[3] > 1 ? " (x" + r[3] + ")" : "") : "-") + "</td><td>" + esc(next) + "</td></tr>");
    });
    if (!rows.length) rows.push('<tr><td colspan="10" class="hint">no vGPU type in use here; choose a type to see what idle GPUs offer</td></tr>');
    document.querySelector("#types tbody").innerHTML = rows.join("");
    var ff = document.getElementById("fleet-flags");
    ff.innerHTML = D.f.map(function (f) { return '<li class="flag k-' + D.kinds[f[0]] + '"><b>' + esc(D.kinds[f[0]]) + "</b> " + esc(f[1] ? f[1] + ": " : "") + esc(f[2]) + "</li>"; }).join("");
    document.getElementById("fleet-flags-title").hidden = !D.f.length;
  }

  function apply(fromVmSearch) {
    var shown = {}, hits = [];
    for (var i = 0; i < cells.length; i++) {
      var c = cells[i], h = D.h[c.host], g = c.gpu, ok = true;
      if (sel.cluster !== "" && String(h[1]) !== sel.cluster) ok = false;
      else if (sel.host && h[0].toLowerCase().indexOf(sel.host) < 0) ok = false;
      else if (sel.type && S(g[3]) !== sel.type && g[11].indexOf(D.s.indexOf(sel.type)) < 0) ok = false;
      else if (!sel.modes[mode(g)]) ok = false;
      else if (sel.flagged && !g[9].length && !h[8].length) ok = false;
      var hit = false;
      if (sel.vm) for (var k = 0; k < c.vms.length; k++) if (c.vms[k].indexOf(sel.vm) >= 0) { hit = true; break; }
      c.el.classList.toggle("hit", hit);
      if (hit) { hits.push(i); ok = true; }
      c.el.hidden = !ok && !hit;
      if (ok || hit) shown[c.host] = (shown[c.host] || 0) + 1;
    }
    cards.forEach(function (card) {
      var h = D.h[card.host];
      var keep = shown[card.host] || (!h[9].length && sel.type === "" && !sel.flagged && !sel.vm &&
                 (sel.cluster === "" || String(h[1]) === sel.cluster) && (!sel.host || h[0].toLowerCase().indexOf(sel.host) >= 0));
      card.el.hidden = !keep;
      card.el.classList.toggle("hit", hits.some(function (i) { return cells[i].host === card.host; }));
    });
    var clusters = grid.querySelectorAll(".cluster");
    for (var ci = 0; ci < clusters.length; ci++) clusters[ci].hidden = !clusters[ci].querySelector(".host:not([hidden])");
    var out = document.getElementById("vm-result");
    if (sel.vm) {
      out.textContent = hits.length ? hits.map(function (i) { var c = cells[i]; return D.h[c.host][0] + " " + c.gpu[0]; })
        .filter(function (v, i, a) { return a.indexOf(v) === i; }).slice(0, 4).join(", ") + (hits.length > 4 ? " ..." : "") : "no GPU holds a VM named like that";
      if (hits.length && fromVmSearch) {
        cells[hits[0]].el.scrollIntoView({ block: "center" });
        show(hits[0]);
      }
    } else out.textContent = "";
    tables();
  }

  function flagList(flags) {
    return flags.map(function (f) { return '<div class="flag k-' + D.kinds[f[0]] + '"><b>' + esc(D.kinds[f[0]]) + "</b> " + esc(f[1]) + "</div>"; }).join("");
  }

  function show(i) {
    var c = cells[i]; if (!c) return;
    var h = D.h[c.host], g = c.gpu, m = mode(g), rows = [];
    function row(k, v) { if (v != null && v !== "") rows.push("<dt>" + esc(k) + "</dt><dd>" + v + "</dd>"); }
    row("host", esc(h[0]) + " (" + esc(S(h[2])) + ", " + esc(D.c[h[1]][0]) + ")");
    row("model", esc(S(g[1])));
    row("mode", esc(MODE_WORDS[m]) + (m === "host" ? " " + esc(S(g[10])) : ""));
    if (m === "vgpu") row("vGPU type", esc(S(g[3])) + (S(g[4]) ? " " + esc(S(g[4])) : "") + ", " + g[5] + " of " + (g[6] == null ? "?" : g[6]) + " seats");
    row("driver", esc(S(g[10])));
    row("IOMMU group", g[12] == null ? "none" : String(g[12]));
    if (g[8]) {
      row("memory", g[8][0] == null ? "?" : g[8][0] + " / " + g[8][1] + " MiB");
      row("utilisation", g[8][2] == null ? "?" : g[8][2] + " %");
      row("vGPUs (nvidia-smi)", g[8][3] == null ? "?" : String(g[8][3]));
    }
    row("host driver version", esc(h[6]));
    row("placement", esc(h[5]));
    row("CPU vendor", esc(h[3] || "?") + (h[4] && h[4] !== h[3] ? " (host says " + esc(h[4]) + ")" : ""));
    if (m === "idle" && g[11].length) row("can run", g[11].length + " types" + (g[11].length <= 6 ? ": " + g[11].map(function (t) { return esc(S(t)); }).join(", ") : ""));
    if (h[7]) row("note", esc(h[7]));
    var vms = g[7].length ? '<ul class="vmlist">' + g[7].map(function (v) {
      var n = S(v[0]);
      return "<li>" + (n[0] === "?" ? "unknown VM, mdev " + esc(n.slice(1)) : esc(n)) + " <span class=\"hint\">" + esc(S(v[1]) || "") + " · " + esc(v[2]) + "</span></li>";
    }).join("") + "</ul>" : "";
    detail.innerHTML = "<h3>" + esc(g[0]) + "</h3><dl>" + rows.join("") + "</dl>" + (vms ? "<div><b>VMs</b>" + vms + "</div>" : "") +
      flagList(g[9]) + flagList(h[8]) + (h[10].length ? '<div class="hint">vGPU VMs on this host, GPU unknown: ' + esc(h[10].join(", ")) + "</div>" : "");
  }

  function refresh() {
    var every = +document.body.dataset.refresh || 30;
    setTimeout(function () {
      fetch("fleet-page.json", { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }).then(function (data) {
        var keep = pinned != null ? cells[pinned] && D.h[cells[pinned].host][0] + " " + cells[pinned].gpu[0] : null;
        D = data; pinned = null; build(); apply();
        if (keep) for (var i = 0; i < cells.length; i++) if (D.h[cells[i].host][0] + " " + cells[i].gpu[0] === keep) { pinned = i; cells[i].el.classList.add("sel"); show(i); break; }
      }).catch(function (e) {
        document.getElementById("observed").textContent = (D.at ? "observed " + D.at : "") + " (refresh failed: " + e.message + ")";
      }).then(refresh);
    }, every * 1000);
  }

  setup();
  build();
  apply();
  // For tests and the benchmark: when the first grid was ready.
  window.fleetReadyAt = performance.now();
  document.body.dataset.ready = "1";
  if (D.live) refresh();
})();
