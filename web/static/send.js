// Send page: one POST /courier/send, then show the task that will deliver the study.
(function () {
  var form = document.getElementById("send"), message = document.getElementById("message");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var body = {Study: form.dataset.study, Destination: data.get("Destination")};
    if (data.get("Pseudonymize")) { body.Pseudonymize = data.get("Pseudonymize"); }
    fetch(form.dataset.api, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                             headers: {"Content-Type": "application/json", "X-Courier-CSRF": document.body.dataset.csrf}})
      .then(function (r) { return r.json().then(function (d) { return {ok: r.ok, data: d}; }); })
      .then(function (r) {
        message.textContent = r.ok ? "task " + r.data.id + " created: " + r.data.state : r.data.error;
      });
  });
})();
