// Explorer: query one node or several through the REST API, tick studies, start a transfer job
// (one per source node). The nodes, level and filters of the last query are remembered in this
// browser (localStorage). Values from the PACS are put into the page with textContent only.
(function () {
  var queryForm = document.getElementById("query");
  var transferForm = document.getElementById("transfer");
  var message = document.getElementById("message");
  var nodeSelect = queryForm.elements.Node;
  var levelFilters = JSON.parse(queryForm.dataset.filters);      // level -> the filter keys it takes
  var allFilters = [];
  Object.keys(levelFilters).forEach(function (level) {
    levelFilters[level].forEach(function (k) { if (allFilters.indexOf(k) < 0 && queryForm.elements[k]) { allFilters.push(k); } });
  });
  var columns = ["Node", "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
                 "StudyDescription", "SeriesDescription", "Modality", "NumberOfStudyRelatedInstances", "InstanceAvailability"];
  var csrf = transferForm.dataset.csrf;
  var MEMORY = "courier.explorer";
  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                       headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); });
  }
  function cell(row, text) { var td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }
  function selectedNodes() {
    return Array.prototype.filter.call(nodeSelect.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
  }
  try {                                                          // the last query, in this browser
    var remembered = JSON.parse(window.localStorage.getItem(MEMORY) || "null");
    if (remembered) {
      Array.prototype.forEach.call(nodeSelect.options, function (o) { o.selected = remembered.nodes.indexOf(o.value) >= 0; });
      if (!selectedNodes().length && nodeSelect.options.length) { nodeSelect.options[0].selected = true; }
      queryForm.elements.Level.value = remembered.level || "STUDY";
      allFilters.forEach(function (k) { queryForm.elements[k].value = (remembered.filters || {})[k] || ""; });
    }
  } catch (e) { /* storage unavailable or damaged: start empty */ }
  queryForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var level = queryForm.elements.Level.value, filters = {}, remembered = {};
    allFilters.forEach(function (k) {
      var value = queryForm.elements[k].value.trim();
      if (value) { remembered[k] = value; }
      if (value && levelFilters[level].indexOf(k) >= 0) { filters[k] = value; }
    });
    var nodes = selectedNodes();
    if (!nodes.length) { message.textContent = "choose a node"; return; }
    try { window.localStorage.setItem(MEMORY, JSON.stringify({nodes: nodes, level: level, filters: remembered})); }
    catch (e) { /* not remembered */ }
    message.textContent = "querying...";
    var body = nodes.length === 1 ? {Node: nodes[0]} : {Nodes: nodes};
    body.Level = level;
    body.Filters = filters;
    post(queryForm.dataset.api, body).then(function (r) {
      if (!r.ok) { message.textContent = r.data.error; return; }
      var failed = Object.keys(r.data.Errors || {}).map(function (n) { return r.data.Errors[n]; });
      message.textContent = r.data.Count + " found" + (failed.length ? "; " + failed.join("; ") : "");
      var shown = columns.filter(function (c) {
        return (c !== "Node" || nodes.length > 1) && r.data.Answers.some(function (a) { return c in a; });
      });
      var head = document.querySelector("#answers thead"), tbody = document.querySelector("#answers tbody");
      head.textContent = ""; tbody.textContent = "";
      var header = document.createElement("tr");
      cell(header, "");
      shown.forEach(function (c) { cell(header, c); });
      head.appendChild(header);
      r.data.Answers.forEach(function (answer) {
        var row = document.createElement("tr");
        var box = document.createElement("input");
        box.type = "checkbox";
        box.setAttribute("aria-label", "tick this " + (answer.SeriesInstanceUID ? "series" : "study"));
        box.dataset.study = answer.StudyInstanceUID || "";
        box.dataset.series = answer.SeriesInstanceUID || "";
        box.dataset.node = answer.Node || nodes[0];
        cell(row, "").appendChild(box);
        shown.forEach(function (c) { cell(row, answer[c] || ""); });
        tbody.appendChild(row);
      });
    });
  });
  transferForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(transferForm), bySource = {};
    Array.prototype.forEach.call(document.querySelectorAll("#answers input:checked"), function (box) {
      var item = {StudyInstanceUID: box.dataset.study};
      if (box.dataset.series) { item.SeriesInstanceUID = box.dataset.series; }
      (bySource[box.dataset.node] = bySource[box.dataset.node] || []).push(item);
    });
    var sources = Object.keys(bySource);
    if (!sources.length) { message.textContent = "tick at least one study"; return; }
    Promise.all(sources.map(function (source) {                  // a job has one source: one job per node
      var body = {Source: source, Destination: data.get("Destination"), Items: bySource[source],
                  Urgent: data.get("Urgent") === "on"};
      if (data.get("Pseudonymize")) { body.Pseudonymize = data.get("Pseudonymize"); }
      if (data.get("ProtocolID")) { body.Trial = {ProtocolID: data.get("ProtocolID")}; }
      return post(transferForm.dataset.api, body);
    })).then(function (answers) {
      var refused = answers.filter(function (r) { return !r.ok; });
      if (refused.length) { message.textContent = refused.map(function (r) { return r.data.error; }).join("; "); return; }
      location.href = answers.length === 1 ? "jobs/" + answers[0].data.Id : "jobs";
    });
  });
})();
