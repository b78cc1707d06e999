// Subscriptions page: create (or edit) a subscription from the form, preview what its first run
// would fetch, delete one. Values are put into the page with textContent only.
(function () {
  var form = document.getElementById("subscription");
  if (!form) { return; }
  var csrf = document.body.dataset.csrf;
  var message = document.getElementById("message");
  var result = document.getElementById("preview-result");
  var editing = null;
  function call(method, url, body) {
    return fetch(url, {method: method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
                       headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); });
  }
  function body() {
    var out = {Query: {}, Match: {}};
    Array.prototype.forEach.call(form.elements, function (field) {   // disabled (fixed) fields included
      var key = field.name, value = String(field.value || "").trim();
      if (!key) { return; }
      if (!value) { return; }
      var parts = key.split(".");
      if (parts.length === 2) {
        out[parts[0]][parts[1]] = parts[1] === "Modality" ? value.split(/[\s,\\]+/).filter(Boolean) : value;
      } else if (key === "MaxStudiesPerRun") { out[key] = parseInt(value, 10); }
      else if (key === "PauseBetweenStudiesSeconds") { out[key] = parseFloat(value); }
      else { out[key] = value; }
    });
    return out;
  }
  document.getElementById("preview").addEventListener("click", function () {
    result.textContent = "asking the source...";
    call("POST", form.dataset.api + "/preview", body()).then(function (r) {
      result.textContent = "";
      if (!r.ok) { result.textContent = r.data.error; return; }
      var list = document.createElement("ul");
      r.data.Windows.forEach(function (w) {
        var item = document.createElement("li");
        item.textContent = (w.Part === "past" ? "the past, first partition " : "new studies ") + w.StudyDate + ": " +
          w.Studies + " studies, " + w.Instances + " instances; the first run takes " + w.FirstRunTakes;
        list.appendChild(item);
      });
      var tail = document.createElement("li");
      tail.textContent = r.data.PastDays + " day(s) of the past in all; then " + (r.data.ThenEvery || "no schedule") +
        (r.data.SecondRun ? ", next at " + r.data.SecondRun.replace("T", " ") : "");
      list.appendChild(tail);
      result.appendChild(list);
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var request = editing ? call("PUT", form.dataset.api + "/" + editing, body()) : call("POST", form.dataset.api, body());
    request.then(function (r) {
      if (!r.ok) { message.textContent = r.data.error; return; }
      location.reload();
    });
  });
  document.querySelectorAll("button[data-edit]").forEach(function (button) {
    button.addEventListener("click", function () {
      var spec = JSON.parse(document.getElementById("s" + button.dataset.edit).dataset.spec);
      editing = button.dataset.edit;
      Array.prototype.forEach.call(form.elements, function (field) {
        if (!field.name) { return; }
        var parts = field.name.split("."), value = parts.length === 2 ? (spec[parts[0]] || {})[parts[1]] : spec[field.name];
        field.value = value === null || value === undefined ? "" : (Array.isArray(value) ? value.join(",") : value);
        field.disabled = ["Source", "Destination", "Pseudonymize", "From", "Till", "Partition"].indexOf(field.name) >= 0;
      });
      document.getElementById("form-title").textContent = "Edit subscription #" + editing;
      document.getElementById("save").textContent = "Save";
      document.getElementById("new").hidden = false;
    });
  });
  document.getElementById("new").addEventListener("click", function () { location.reload(); });
  document.querySelectorAll("button[data-delete]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!window.confirm("Delete this subscription? Its pending transfers are cancelled.")) { return; }
      call("DELETE", button.dataset.delete).then(function (r) {
        if (!r.ok) { message.textContent = r.data.error; return; }
        location.reload();
      });
    });
  });
})();
