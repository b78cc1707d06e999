// Refreshes the job page until the job ends, and drives its buttons. Relative URLs only,
// so the UI works behind a reverse proxy under any sub-path. When the job ends the page is
// reloaded (tasks table, buttons) before the final status is shown; a page that has nothing
// left to refresh says so with <body data-settled="1">, so nobody races the reload.
(function () {
  var script = document.currentScript;
  var api = script.dataset.api;
  var ended = ["SUCCESS", "WARNING", "FAILURE", "CANCELED"];
  var waiting = ["QUERYING", "READY", "UNREACHABLE"];           // their buttons differ: reload when they end
  var first = document.getElementById("status").textContent;
  function show(job) {
    if (ended.indexOf(job.Status) >= 0) { return false; }     // the reloaded page shows it
    if (job.Status !== first && waiting.indexOf(first) >= 0) { return false; }
    var percent = job.Instances.Expected ? Math.floor(100 * job.Instances.Delivered / job.Instances.Expected) : 0;
    document.getElementById("status").textContent = job.Status;
    document.getElementById("progress").value = percent;
    document.getElementById("percent").textContent = percent + "%";
    var eta = job.EtaSeconds === null ? "" : ", about " + job.EtaSeconds + " s left";
    document.getElementById("numbers").textContent = job.Instances.Delivered + "/" + job.Instances.Expected +
      " instances, " + (job.Bytes === null ? "size unknown (direct move)" : job.Bytes + " bytes") + ", " +
      job.InstancesPerSecond + " instances/s" + eta;
    return true;
  }
  function poll() {
    fetch(api, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (job) { if (show(job)) { setTimeout(poll, 1000); } else { location.reload(); } })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (ended.indexOf(document.getElementById("status").textContent) < 0) { setTimeout(poll, 1000); }
  else { document.body.dataset.settled = "1"; }
  document.querySelectorAll("button[data-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.action === "cancel" &&
          !window.confirm("Cancel this job? The study in flight stops and no other is fetched.")) { return; }
      var csrf = button.parentNode.dataset.csrf;
      fetch(api + "/" + button.dataset.action, {method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}, body: "{}"})
        .then(function () { location.reload(); });
    });
  });
})();
