// The live dashboard: every 5 s (unless the toggle, remembered in this browser, is off) it reads
// /courier/dashboard and redraws the numbers, the topology and the charts (SVG with axes and
// units). Values are put into the page with textContent only.
(function () {
  var root = document.getElementById("live-numbers");
  if (!root) { return; }
  var toggle = document.getElementById("live"), MEMORY = "courier.dashboard.live", timer = null;
  var SVG = "http://www.w3.org/2000/svg";
  function bytes(n) {
    if (n === null || n === undefined) { return "?"; }
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
  }
  function duration(s) {
    if (s < 10) { return (Math.round(s * 10) / 10) + " s"; }
    if (s < 60) { return Math.round(s) + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min"; }
    if (s < 86400) { return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min"; }
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function count(n) { return n >= 10000 ? (n / 1000).toFixed(1) + "k" : String(Math.round(n)); }
  function node(tag, attrs, parent, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    parent.appendChild(e);
    return e;
  }
  // bars (one colour per series) over a time axis, with a y axis in the series' unit
  function chart(id, points, series, format, label) {
    var svg = document.getElementById(id), left = 56, bottom = 140, width = 456, height = 120;
    svg.textContent = "";
    var top = Math.max(1, Math.max.apply(null, points.map(function (p) {
      return Math.max.apply(null, series.map(function (s) { return p[s.key] || 0; }));
    })));
    node("line", {x1: left, y1: bottom, x2: left + width, y2: bottom, "class": "axis"}, svg);
    node("line", {x1: left, y1: bottom - height, x2: left, y2: bottom, "class": "axis"}, svg);
    [0, 0.5, 1].forEach(function (f) {
      var y = bottom - f * height;
      node("text", {x: left - 4, y: y + 4, "text-anchor": "end", "class": "tick"}, svg, format(top * f));
      node("line", {x1: left, y1: y, x2: left + width, y2: y, "class": "grid"}, svg);
    });
    var slot = width / Math.max(points.length, 1), bar = Math.max(1, slot / series.length - 1);
    points.forEach(function (p, i) {
      series.forEach(function (s, j) {
        var h = height * (p[s.key] || 0) / top;
        var rect = node("rect", {x: left + i * slot + j * bar, y: bottom - h, width: bar, height: h, "class": s.css}, svg);
        node("title", {}, rect, label(p) + " " + s.name + ": " + format(p[s.key] || 0));
      });
      if (i % Math.ceil(points.length / 6) === 0) {
        node("text", {x: left + i * slot, y: bottom + 14, "class": "tick"}, svg, label(p));
      }
    });
    series.forEach(function (s, j) {
      node("rect", {x: left + j * 110, y: 2, width: 10, height: 10, "class": s.css}, svg);
      node("text", {x: left + j * 110 + 14, y: 11, "class": "tick"}, svg, s.name);
    });
  }
  function hourLabel(p) { var d = new Date(p.Hour * 1000); return String(d.getHours()).padStart(2, "0") + ":00"; }
  function dayLabel(p) { var d = new Date(p.Day * 1000); return (d.getMonth() + 1) + "/" + d.getDate(); }
  function draw(d) {
    document.getElementById("uptime").textContent = duration(d.UptimeSeconds);
    document.getElementById("received-today").textContent = count(d.ReceivedToday) + " instances";
    document.getElementById("queue-wait").textContent = duration(d.QueueWaitSeconds);
    document.getElementById("active-sending").textContent = count(d.Active.Sending);
    document.getElementById("active-callers").textContent = d.Active.Callers.length ?
      d.Active.Callers.map(function (c) { return c.CallingAet + " (" + c.Service + ")"; }).join(", ") : "none";
    document.getElementById("storage-used").textContent = bytes(d.Storage.UsedBytes);
    document.getElementById("storage-free").textContent = bytes(d.Storage.FreeBytes);
    Object.keys(d.Queue).forEach(function (state) {
      var cell = document.querySelector("#queue td[data-state='" + state + "']");
      if (cell) { cell.textContent = d.Queue[state]; }
    });
    var topology = document.getElementById("topology");
    topology.textContent = "";
    var list = document.createElement("ul");
    d.Routes.forEach(function (route) {
      var item = document.createElement("li");
      item.textContent = (route.Callers.length ? route.Callers.join(", ") : "any caller") + " → " + route.Name +
        " (" + route.Trigger + ") → ";
      route.Destinations.forEach(function (dest) {
        var state = (d.Nodes.filter(function (n) { return n.Id === dest; })[0] || {State: "green"}).State;
        var badge = document.createElement("span");
        badge.className = "node " + state;
        badge.dataset.node = dest;
        badge.textContent = dest;
        item.appendChild(badge);
      });
      list.appendChild(item);
    });
    topology.appendChild(list);
    var nodes = document.createElement("p");
    d.Nodes.forEach(function (n) {
      var badge = document.createElement("span");
      badge.className = "node " + n.State;
      badge.dataset.node = n.Id;
      badge.title = n.LastEcho ? (n.LastEcho.Ok ? "answered" : n.LastEcho.Message) : "not echoed yet";
      badge.textContent = n.Id;
      nodes.appendChild(badge);
    });
    topology.appendChild(nodes);
    chart("chart-instances", d.Hours, [{key: "received", name: "received", css: "s1"}, {key: "delivered", name: "delivered", css: "s2"}], count, hourLabel);
    chart("chart-bytes", d.Hours, [{key: "bytes", name: "bytes", css: "s2"}], bytes, hourLabel);
    chart("chart-latency", d.Hours, [{key: "latency_p50", name: "p50", css: "s1"}, {key: "latency_p95", name: "p95", css: "s3"}], duration, hourLabel);
    chart("chart-failed", d.Hours, [{key: "failed", name: "failed", css: "s3"}], count, hourLabel);
    chart("chart-days", d.Days, [{key: "delivered", name: "delivered", css: "s2"}], count, dayLabel);
    document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.refreshes = String((parseInt(document.body.dataset.refreshes || "0", 10)) + 1);
  }
  function refresh() {
    fetch(root.dataset.api, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(draw)
      .catch(function () { document.getElementById("refreshed").textContent = "not updated (Courier unreachable)"; });
  }
  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    if (toggle.checked) { timer = setInterval(refresh, 5000); }
  }
  try { toggle.checked = window.localStorage.getItem(MEMORY) !== "off"; } catch (e) { /* default on */ }
  toggle.addEventListener("change", function () {
    try { window.localStorage.setItem(MEMORY, toggle.checked ? "on" : "off"); } catch (e) { /* not remembered */ }
    schedule();
  });
  refresh();
  schedule();
})();
