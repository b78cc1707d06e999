// Rule tester: sends a file (application/dicom) or typed tags (JSON) to /courier/routes/test and
// shows the answer with textContent only.
(function () {
  var form = document.getElementById("tester"), result = document.getElementById("result");
  var message = document.getElementById("message"), csrf = document.body.dataset.csrf;
  function add(parent, tag, text) { var e = document.createElement(tag); e.textContent = text; parent.appendChild(e); return e; }
  function show(answer) {
    result.textContent = "";
    add(result, "h3", "Routes that fire");
    var fired = add(result, "ul", "");
    fired.id = "fired";
    (answer.Fired.length ? answer.Fired : ["none"]).forEach(function (name) { add(fired, "li", name); });
    answer.Refused.forEach(function (r) { add(result, "p", "refused by " + r.Route + ": " + r.Reason); });
    answer.Errors.forEach(function (r) { add(result, "p", "script error in " + r.Route + ": " + r.Error); });
    Object.keys(answer.Modified || {}).forEach(function (route) {
      add(result, "h3", "Sent by " + route + " (Modify" + ")");
      var table = add(result, "table", ""), tags = answer.Modified[route];
      table.className = "modified";
      Object.keys(tags).forEach(function (k) { var row = add(table, "tr", ""); add(row, "th", k); add(row, "td", tags[k]); });
    });
    Object.keys(answer.Pseudonymized).forEach(function (profile) {
      add(result, "h3", "Pseudonymized with " + profile);
      var table = add(result, "table", ""), tags = answer.Pseudonymized[profile];
      table.className = "pseudonymized";
      Object.keys(tags).forEach(function (k) { var row = add(table, "tr", ""); add(row, "th", k); add(row, "td", tags[k]); });
    });
  }
  function post(body, type) {
    return fetch(form.dataset.api, {method: "POST", credentials: "same-origin", body: body,
                                    headers: {"Content-Type": type, "X-Courier-CSRF": csrf}})
      .then(function (r) { return r.json().then(function (d) { return {ok: r.ok, data: d}; }); })
      .then(function (r) { message.textContent = r.ok ? "" : r.data.error; if (r.ok) { show(r.data); } });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = form.elements.file.files[0];
    if (file) { file.arrayBuffer().then(function (data) { post(data, "application/dicom"); }); return; }
    var tags = {}, body = {};
    form.elements.tags.value.split("\n").forEach(function (line) {
      var at = line.indexOf("=");
      if (at > 0) { tags[line.slice(0, at).trim()] = line.slice(at + 1).trim(); }
    });
    ["CallingAet", "CalledAet", "RemoteIp"].forEach(function (k) { if (k in tags) { body[k] = tags[k]; delete tags[k]; } });
    body.Tags = tags;
    post(JSON.stringify(body), "application/json");
  });
})();
