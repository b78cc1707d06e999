// Batch page: check the file (DryRun), list problems by line and column, then start it and offer
// the result files. The file travels base64 in JSON (Orthanc intercepts multipart uploads).
(function () {
  var form = document.getElementById("batch"), message = document.getElementById("message");
  var problems = document.getElementById("problems"), start = document.getElementById("start");
  var downloads = document.getElementById("downloads"), csrf = document.body.dataset.csrf;
  function add(parent, tag, text) { var e = document.createElement(tag); e.textContent = text; parent.appendChild(e); return e; }
  function send(dryRun) {
    var file = form.elements.file.files[0];
    if (!file) { message.textContent = "choose a file"; return; }
    var reader = new FileReader();
    reader.onload = function () {
      var data = new FormData(form);
      var body = {File: reader.result.split(",")[1], FileName: file.name, Kind: data.get("Kind"),
                  Source: data.get("Source"), DryRun: dryRun};
      if (data.get("Kind") === "transfer") { body.Destination = data.get("Destination"); }
      if (data.get("Pseudonymize")) { body.Pseudonymize = data.get("Pseudonymize"); }
      fetch(form.dataset.api, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                               headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
        .then(function (r) { return r.json(); })
        .then(function (report) {
          problems.textContent = "";
          if (report.error) { message.textContent = report.error; start.disabled = true; return; }
          if (!report.Valid) {
            message.textContent = report.Problems.length + " problem(s): nothing was started";
            var head = add(problems, "tr", "");
            ["Line", "Column", "Problem"].forEach(function (h) { add(head, "th", h); });
            report.Problems.forEach(function (p) {
              var row = add(problems, "tr", "");
              add(row, "td", p.line); add(row, "td", p.column); add(row, "td", p.message);
            });
            start.disabled = true;
            return;
          }
          if (dryRun) { message.textContent = report.Rows + " rows, all valid"; start.disabled = false; return; }
          message.textContent = "started: batch " + report.Batch + (report.Job ? ", job " + report.Job : "");
          start.disabled = true;
          downloads.textContent = "";
          if (report.Job) { var j = add(downloads, "a", "job " + report.Job); j.href = "jobs/" + report.Job; add(downloads, "span", " · "); }
          ["results.csv", "results.xlsx", "failed.csv", "failed.xlsx"].forEach(function (name) {
            var a = add(downloads, "a", name); a.href = form.dataset.batches + report.Batch + "/" + name; add(downloads, "span", " ");
          });
        });
    };
    reader.readAsDataURL(file);
  }
  form.addEventListener("submit", function (event) { event.preventDefault(); send(true); });
  start.addEventListener("click", function () { send(false); });
})();
