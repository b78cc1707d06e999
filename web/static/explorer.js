// Explorer: query a node through the REST API, tick studies, start a transfer job.
// Values from the PACS are put into the page with textContent only: never parsed as HTML.
(function () {
  var queryForm = document.getElementById("query");
  var transferForm = document.getElementById("transfer");
  var message = document.getElementById("message");
  var columns = ["PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
                 "StudyDescription", "SeriesDescription", "Modality", "NumberOfStudyRelatedInstances"];
  var csrf = transferForm.dataset.csrf;
  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                       headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); });
  }
  function cell(row, text) { var td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }
  queryForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(queryForm), filters = {};
    ["PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber", "ModalitiesInStudy"].forEach(function (k) {
      if (data.get(k)) { filters[k] = data.get(k); }
    });
    message.textContent = "querying...";
    post(queryForm.dataset.api, {Node: data.get("Node"), Level: data.get("Level"), Filters: filters}).then(function (r) {
      if (!r.ok) { message.textContent = r.data.error; return; }
      message.textContent = r.data.Count + " found";
      var shown = columns.filter(function (c) { return r.data.Answers.some(function (a) { return c in a; }); });
      var head = document.querySelector("#answers thead"), body = document.querySelector("#answers tbody");
      head.textContent = ""; body.textContent = "";
      var header = document.createElement("tr");
      cell(header, "");
      shown.forEach(function (c) { cell(header, c); });
      head.appendChild(header);
      r.data.Answers.forEach(function (answer) {
        var row = document.createElement("tr");
        var box = document.createElement("input");
        box.type = "checkbox";
        box.dataset.study = answer.StudyInstanceUID || "";
        box.dataset.series = answer.SeriesInstanceUID || "";
        cell(row, "").appendChild(box);
        shown.forEach(function (c) { cell(row, answer[c] || ""); });
        body.appendChild(row);
      });
    });
  });
  transferForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(transferForm);
    var items = Array.prototype.map.call(document.querySelectorAll("#answers input:checked"), function (box) {
      var item = {StudyInstanceUID: box.dataset.study};
      if (box.dataset.series) { item.SeriesInstanceUID = box.dataset.series; }
      return item;
    });
    if (!items.length) { message.textContent = "tick at least one study"; return; }
    var body = {Source: new FormData(queryForm).get("Node"), Destination: data.get("Destination"), Items: items,
                Urgent: data.get("Urgent") === "on"};
    if (data.get("Pseudonymize")) { body.Pseudonymize = data.get("Pseudonymize"); }
    if (data.get("ProtocolID")) { body.Trial = {ProtocolID: data.get("ProtocolID")}; }
    post(transferForm.dataset.api, body).then(function (r) {
      if (!r.ok) { message.textContent = r.data.error; return; }
      location.href = "jobs/" + r.data.Id;
    });
  });
})();
