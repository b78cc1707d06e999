// Tasks page: tick tasks (or take all matching the filter) and retry, cancel or reprioritise them
// through POST /courier/tasks/bulk; the page reloads to show the result.
(function () {
  var bar = document.querySelector("p.bulk");
  var all = document.getElementById("all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input.pick").forEach(function (box) { box.checked = all.checked; });
    });
  }
  if (!bar) { return; }
  var csrf = document.body.dataset.csrf;
  bar.querySelectorAll("button[data-bulk]").forEach(function (button) {
    button.addEventListener("click", function () {
      var body = {Action: button.dataset.bulk};
      if (button.dataset.all) {
        if (!window.confirm("Apply to every task matching the filter?")) { return; }
        body.Filter = JSON.parse(bar.dataset.filter);
      } else {
        body.Ids = Array.prototype.map.call(document.querySelectorAll("input.pick:checked"), function (b) { return parseInt(b.value, 10); });
        if (!body.Ids.length) { document.getElementById("message").textContent = "tick at least one task"; return; }
      }
      if (body.Action === "priority") { body.Priority = parseInt(document.getElementById("priority").value, 10); }
      fetch(bar.dataset.api, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                              headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
        .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); })
        .then(function (r) {
          if (!r.ok) { document.getElementById("message").textContent = r.data.error; return; }
          document.getElementById("message").textContent = r.data.Changed + " task(s) changed";
          setTimeout(function () { location.reload(); }, 300);
        });
    });
  });
})();
