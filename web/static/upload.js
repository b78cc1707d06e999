// Upload page: files (and folders, and archives, which the server unpacks) go one by one to
// POST /courier/uploads/{id}/files with a progress bar; then the preview by patient / study /
// series with a thumbnail of each series (Orthanc's /instances/{id}/preview), the files that
// failed with their reason, and the actions. Values are put into the page with textContent only.
(function () {
  var drop = document.getElementById("drop");
  var csrf = document.body.dataset.csrf;
  var message = document.getElementById("message");
  var bar = document.getElementById("progress"), barText = document.getElementById("progress-text");
  var api = drop.dataset.api, upload = null;
  function call(method, url, body, type, name) {
    var headers = {"X-Courier-CSRF": csrf, "Content-Type": type || "application/json"};
    if (name) { headers["X-Courier-Filename"] = encodeURIComponent(name); }   // a header is Latin-1 only
    return fetch(url, {method: method, credentials: "same-origin", headers: headers,
                       body: type ? body : JSON.stringify(body || {})})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); });
  }
  function el(tag, text, parent) { var e = document.createElement(tag); if (text !== undefined) { e.textContent = text; } if (parent) { parent.appendChild(e); } return e; }
  function typeOf(file) {
    var name = file.name.toLowerCase();
    if (/\.zip$/.test(name)) { return "application/zip"; }
    if (/\.(tar|tgz|tar\.gz)$/.test(name)) { return "application/x-tar"; }
    if (/\.7z$/.test(name)) { return "application/x-7z-compressed"; }
    return "application/octet-stream";                      // the server tells DICOM by its content
  }
  function send(files) {
    if (!files.length) { return; }
    var start = upload ? Promise.resolve(upload) : call("POST", api, {}).then(function (r) {
      if (!r.ok) { throw new Error(r.data.error); }
      upload = r.data.Id;
      return upload;
    });
    start.then(function (id) {
      var done = 0, failed = 0;
      function next(index) {
        if (index >= files.length) { message.textContent = files.length + " file(s) sent" + (failed ? ", " + failed + " refused" : ""); return preview(); }
        var file = files[index];
        return call("POST", api + "/" + id + "/files", file, typeOf(file), file.webkitRelativePath || file.name)
          .then(function (r) {
            if (!r.ok) { failed += 1; message.textContent = r.data.error; }
            done += 1;
            bar.value = Math.floor(100 * done / files.length);
            barText.textContent = done + "/" + files.length;
            return next(index + 1);
          });
      }
      return next(0);
    }).catch(function (e) { message.textContent = e.message; });
  }
  function preview() {
    return fetch(api + "/" + upload, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (u) {
      var box = document.getElementById("preview");
      box.textContent = "";
      u.Patients.forEach(function (patient) {
        var section = el("section", undefined, box);
        section.className = "patient";
        el("h2", "Patient " + (patient.PatientID || "(none)") + " " + patient.PatientName, section);
        patient.Studies.forEach(function (study) {
          el("h3", (study.StudyDate || "") + " " + (study.StudyDescription || "") + ": " + study.Instances + " instance(s)", section);
          var list = el("ul", undefined, section);
          study.Series.forEach(function (series) {
            var item = el("li", undefined, list);
            item.className = "series";
            var img = el("img", undefined, item);
            img.src = "../../instances/" + encodeURIComponent(series.Thumbnail) + "/preview";
            img.alt = "preview";
            img.width = 64;
            el("span", " " + series.Modality + " " + series.SeriesDescription + ": " + series.Instances + " instance(s)", item);
          });
        });
      });
      var rejected = document.getElementById("rejected"), body = rejected.querySelector("tbody");
      body.textContent = "";
      u.Rejected.forEach(function (r) {
        var row = el("tr", undefined, body);
        el("td", r.File, row); el("td", r.Outcome, row); el("td", r.Reason || "", row);
      });
      rejected.hidden = !u.Rejected.length;
      document.getElementById("actions").hidden = u.State !== "OPEN" || !u.Patients.length;
    });
  }
  function filesOf(items) {                                // a dropped folder, read recursively
    var out = [];
    function walk(entry) {
      return new Promise(function (resolve) {
        if (entry.isFile) { entry.file(function (f) { out.push(f); resolve(); }, resolve); return; }
        var reader = entry.createReader(), all = [];
        (function more() {
          reader.readEntries(function (batch) {
            if (!batch.length) { Promise.all(all.map(walk)).then(resolve); return; }
            all = all.concat(Array.prototype.slice.call(batch)); more();
          }, resolve);
        })();
      });
    }
    var entries = Array.prototype.map.call(items, function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); })
      .filter(Boolean);
    return Promise.all(entries.map(walk)).then(function () { return out; });
  }
  drop.addEventListener("dragover", function (event) { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    filesOf(event.dataTransfer.items).then(send);
  });
  ["files", "folder"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", function (event) { send(Array.prototype.slice.call(event.target.files)); });
  });
  document.querySelectorAll("#actions button[data-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      var form = document.getElementById("actions"), action = button.dataset.action, body = {};
      if (action === "send") {
        body.Destination = form.elements.Destination.value;
        if (form.elements.Pseudonymize.value) { body.Pseudonymize = form.elements.Pseudonymize.value; }
      }
      if (action === "discard" && !window.confirm("Discard these files? What they added to Orthanc is deleted.")) { return; }
      call("POST", api + "/" + upload + "/" + action, body).then(function (r) {
        if (!r.ok) { message.textContent = r.data.error; return; }
        message.textContent = action === "discard" ? "discarded: " + r.data.Deleted + " instance(s) deleted"
          : r.data.State.toLowerCase() + ": " + r.data.Files + " file(s), through " + r.data.Routes.join(", ");
        document.getElementById("actions").hidden = true;
      });
    });
  });
})();
