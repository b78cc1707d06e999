// Buttons with data-post="<relative API URL>" POST {} to it (JSON, with the page's CSRF token),
// then reload the page; a failure shows the API's message. With data-confirm="<question>" the
// user is asked first (destructive actions).
(function () {
  var csrf = document.body.dataset.csrf;
  document.querySelectorAll("button[data-post]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) { return; }
      button.disabled = true;
      fetch(button.dataset.post, {method: "POST", credentials: "same-origin", body: "{}",
                                  headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
        .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); })
        .then(function (r) {
          if (r.ok) { location.reload(); }
          else { button.disabled = false; document.getElementById("message").textContent = r.data.error; }
        });
    });
  });
})();
