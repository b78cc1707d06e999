// The theme: the choice remembered in this browser (localStorage), else the system's preference.
// Loaded in <head> so the page is drawn in its theme at once; the nav's select changes it.
(function () {
  var KEY = "courier.theme", root = document.documentElement;
  function stored() { try { return window.localStorage.getItem(KEY); } catch (e) { return null; } }
  function system() { return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"; }
  root.dataset.theme = stored() || system();
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("theme");
    if (!select) { return; }
    select.value = stored() || "system";
    select.addEventListener("change", function () {
      try {
        if (select.value === "system") { window.localStorage.removeItem(KEY); } else { window.localStorage.setItem(KEY, select.value); }
      } catch (e) { /* not remembered */ }
      root.dataset.theme = select.value === "system" ? system() : select.value;
    });
  });
})();
