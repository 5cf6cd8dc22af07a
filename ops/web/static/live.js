// The live page: loads the samples kept by the server, then polls for the new
// ones every second, and redraws the figures and the charts.
// Everything it loads comes from this server (see the Content-Security-Policy);
// the resource URLs it fetched are listed in #resources and the count of
// foreign ones in body[data-foreign], for the page's test.
(function () {
  "use strict";
  var MAX = 600;
  var OUTCOMES = ["admitted", "existing", "rate_limited", "sold_out", "limit_reached", "not_qualified", "blocked", "unavailable"];
  var COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#9333ea", "#0891b2", "#be185d", "#4b5563", "#65a30d", "#ea580c"];
  var samples = [];
  var charts = {};
  var body = document.body;
  var $ = function (id) { return document.getElementById(id); };

  // --- what the page fetched (tests: no request leaves this server) ---
  var seen = {};
  function noteResource(url) {
    if (seen[url]) return;
    seen[url] = true;
    var foreign = 0;
    Object.keys(seen).forEach(function (u) {
      try { if (new URL(u, location.href).origin !== location.origin) foreign++; } catch (e) { foreign++; }
    });
    body.dataset.foreign = String(foreign);
    $("resources").textContent = Object.keys(seen).join("\n");
  }
  noteResource(location.href);
  if (window.PerformanceObserver) {
    new PerformanceObserver(function (list) {
      list.getEntries().forEach(function (e) { noteResource(e.name); });
    }).observe({ type: "resource", buffered: true });
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    return Number(v).toFixed(digits === undefined ? 0 : digits);
  }
  function ms(v) { return v === null || v === undefined ? "–" : fmt(v * 1000, v < 0.01 ? 1 : 0) + " ms"; }

  // --- charts ---
  function chartWidth(el) { return Math.max(200, el.clientWidth - 12); }
  function ensureChart(key, title, names) {
    var c = charts[key];
    var sig = names.join("|");
    if (c && c.sig === sig) return c;
    if (c) { c.plot.destroy(); c.el.remove(); }
    var el = document.createElement("div");
    el.className = "chart";
    el.dataset.chart = key;
    var h = document.createElement("h3");
    h.textContent = title;
    el.appendChild(h);
    $("charts").appendChild(el);
    var series = [{}];
    names.forEach(function (n, i) {
      series.push({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } });
    });
    var data = [[]];
    names.forEach(function () { data.push([]); });
    var plot = new uPlot({
      width: chartWidth(el), height: 180, series: series,
      scales: { x: { time: true } },
      axes: [{ stroke: "#888", grid: { stroke: "rgba(128,128,128,.15)" } }, { stroke: "#888", size: 50, grid: { stroke: "rgba(128,128,128,.15)" } }],
      legend: { live: false }, cursor: { drag: { x: false, y: false } }
    }, data, el);
    c = charts[key] = { el: el, plot: plot, sig: sig };
    body.dataset.charts = String(Object.keys(charts).length);
    return c;
  }
  function setData(key, title, names, pick) {
    var c = ensureChart(key, title, names);
    var data = [samples.map(function (s) { return s.t / 1000; })];
    names.forEach(function (n, i) { data.push(samples.map(function (s) { return pick(s, n, i); })); });
    c.plot.setData(data);
  }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) { var c = charts[k]; c.plot.setSize({ width: chartWidth(c.el), height: 180 }); });
  });
  // drawn counts the charts whose canvas has painted pixels (lines, axes).
  function drawn() {
    var n = 0;
    Object.keys(charts).forEach(function (k) {
      var cv = charts[k].el.querySelector("canvas");
      if (!cv || !cv.width || !cv.height) return;
      var px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
      var colored = 0;
      for (var i = 3; i < px.length; i += 4 * 7) {
        if (px[i] > 0 && (px[i - 3] !== px[i - 2] || px[i - 2] !== px[i - 1])) colored++;
      }
      if (colored > 20) n++;
    });
    return n;
  }

  // --- figures ---
  function sumAdmitted(s) { return s.admissions ? (s.admissions.admitted || 0) : 0; }
  function queueOf(s, name) {
    var q = (s.queues || []).filter(function (q) { return q.name === name; })[0];
    return q ? q.messages : null;
  }
  function cell(tr, field, text, cls) {
    var td = tr.querySelector('td[data-field="' + field + '"]');
    if (!td) { td = document.createElement("td"); td.dataset.field = field; tr.appendChild(td); }
    td.textContent = text;
    td.className = cls || "";
  }
  // saleRows gives each sale a row of table id (kept across renders, in the
  // samples' order), fills it with fill, and removes the rows of the others.
  function saleRows(id, sales, fill) {
    var tb = $(id).tBodies[0];
    var keep = {};
    sales.forEach(function (sale) {
      keep[sale.id] = true;
      var tr = tb.querySelector('tr[data-sale="' + CSS.escape(sale.id) + '"]');
      if (!tr) { tr = document.createElement("tr"); tr.dataset.sale = sale.id; tb.appendChild(tr); }
      fill(tr, sale);
    });
    Array.prototype.slice.call(tb.rows).forEach(function (tr) { if (!keep[tr.dataset.sale]) tr.remove(); });
  }
  function renderTables(s) {
    saleRows("sales", s.sales || [], function (tr, sale) {
      var p = sale.purchases || {};
      cell(tr, "id", sale.id);
      cell(tr, "state", sale.state, "state state-" + sale.state);
      cell(tr, "available", String(sale.available));
      cell(tr, "held", String(sale.held));
      cell(tr, "sold", String(sale.sold));
      cell(tr, "admitted_per_s", fmt(sale.admitted_per_s, 1));
      cell(tr, "admitted", fmt(p.admitted));
      cell(tr, "sold_out", fmt(p.sold_out));
      cell(tr, "rate_limited", fmt(p.rate_limited));
    });
    // The waiting rooms: shown while a sale listed has one.
    var rooms = (s.sales || []).filter(function (sale) { return sale.waiting_room; });
    $("rooms").hidden = rooms.length === 0;
    saleRows("waiting-rooms", rooms, function (tr, sale) {
      var wr = sale.waiting_room;
      cell(tr, "id", sale.id);
      cell(tr, "wr_entries", fmt(wr.entries));
      cell(tr, "wr_admitted", fmt(wr.admitted));
      cell(tr, "wr_waitlist", fmt(wr.waitlist));
      cell(tr, "wr_admitted_per_s", fmt(wr.admitted_per_s, 1));
    });

    var pb = $("problems").tBodies[0];
    pb.textContent = "";
    var pr = s.problems || {};
    [["HTTP 5xx answers", pr.http_5xx], ["dead-lettered purchases", pr.dead_letters], ["stock-cap refusals", pr.stock_cap_refusals],
     ["reconcile differences", pr.reconcile_differences], ["oversold units", pr.oversold_units],
     ["outbox backlog", pr.outbox_backlog], ["oldest overdue unpaid order (s)", pr.expiry_overdue_seconds]].forEach(function (row) {
      var tr = document.createElement("tr");
      var k = document.createElement("td"); k.textContent = row[0];
      var v = document.createElement("td"); v.textContent = fmt(row[1], row[0].indexOf("(s)") >= 0 ? 1 : 0);
      if (row[1] > 0 && row[0] !== "outbox backlog") v.className = "bad";
      tr.appendChild(k); tr.appendChild(v); pb.appendChild(tr);
    });
    var qb = $("queues").tBodies[0];
    qb.textContent = "";
    (s.queues || []).forEach(function (q) {
      var tr = document.createElement("tr");
      [q.name, String(q.messages), String(q.consumers)].forEach(function (t) { var td = document.createElement("td"); td.textContent = t; tr.appendChild(td); });
      qb.appendChild(tr);
    });
  }
  function render() {
    var s = samples[samples.length - 1];
    if (!s) return;
    $("clock").textContent = new Date(s.t).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    var st = $("status");
    st.textContent = s.ready ? "ready" : "NOT READY";
    st.className = "dot " + (s.ready ? "ok" : "bad");
    $("f-admitted").textContent = fmt(sumAdmitted(s), 1);
    $("f-orders").textContent = fmt(s.orders_per_s, 1);
    $("f-p50").textContent = ms(s.final_p50);
    $("f-p99").textContent = ms(s.final_p99);
    $("f-errors").textContent = fmt(s.errors_per_s, 1);
    var purchaseQ = (s.queues || []).filter(function (q) { return /\.purchase$/.test(q.name); })[0];
    $("f-queue").textContent = purchaseQ ? String(purchaseQ.messages) : "–";
    $("f-outbox").textContent = fmt((s.problems || {}).outbox_backlog);
    $("f-overdue").textContent = fmt((s.problems || {}).expiry_overdue_seconds, 1) + " s";
    renderTables(s);

    setData("admissions", "Purchases/s by outcome", OUTCOMES, function (x, n) { return x.admissions ? (x.admissions[n] || 0) : null; });
    var qnames = (s.queues || []).map(function (q) { return q.name; });
    setData("queues", "Queue depth (messages ready)", qnames.length ? qnames : ["(no queue)"], function (x, n) { return queueOf(x, n); });
    setData("final", "202→final (ms)", ["p50", "p99"], function (x, n) {
      var v = n === "p50" ? x.final_p50 : x.final_p99; return v === null || v === undefined ? null : v * 1000;
    });
    setData("rates", "Orders/s and errors/s", ["orders/s", "errors/s"], function (x, n) { return n === "orders/s" ? x.orders_per_s : x.errors_per_s; });
    (s.sales || []).forEach(function (sale) {
      setData("sale:" + sale.id, "Units: " + sale.id, ["available", "held", "sold"], function (x, n) {
        var m = (x.sales || []).filter(function (y) { return y.id === sale.id; })[0];
        return m ? m[n] : null;
      });
    });
    Object.keys(charts).forEach(function (k) {
      if (k.indexOf("sale:") === 0 && !(s.sales || []).some(function (y) { return "sale:" + y.id === k; })) {
        charts[k].plot.destroy(); charts[k].el.remove(); delete charts[k];
      }
    });
    // A chart made before the page grew a scrollbar is too wide: fit it.
    Object.keys(charts).forEach(function (k) {
      var c = charts[k], w = chartWidth(c.el);
      if (c.plot.width !== w) c.plot.setSize({ width: w, height: 180 });
    });
    body.dataset.samples = String(samples.length);
    body.dataset.charts = String(Object.keys(charts).length);
    body.dataset.chartsDrawn = String(drawn());
    body.dataset.lastT = String(s.t);
    // The page fits the window's width (a phone): only tables scroll sideways.
    var root = document.documentElement;
    body.dataset.overflow = root.scrollWidth > root.clientWidth ? "1" : "0";
  }
  // Polls the samples taken since the last one every second: one short request
  // at a time (no connection held open), so a proxy, a phone going to sleep or
  // a server restart only delay the next figures.
  function poll() {
    var last = samples.length ? samples[samples.length - 1].t : 0;
    fetch("/ops/live/data" + (last ? "?after=" + last : ""), { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) { location.href = "/ops/live"; return null; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (d) {
      if (d) {
        (d.samples || []).forEach(function (s) { if (!samples.length || s.t > samples[samples.length - 1].t) samples.push(s); });
        if (samples.length > MAX) samples = samples.slice(samples.length - MAX);
        render();
      }
      setTimeout(poll, 1000);
    }).catch(function (e) {
      var st = $("status"); st.textContent = "reconnecting… (" + e.message + ")"; st.className = "dot bad";
      setTimeout(poll, 2000);
    });
  }
  poll();
})();
