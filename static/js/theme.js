// Follow the system's light or dark preference with Bootstrap's colour modes. Loaded
// in <head> before the stylesheet applies, so a dark page never flashes white.
(function () {
  "use strict";
  var query = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function apply() {
    document.documentElement.setAttribute("data-bs-theme", query && query.matches ? "dark" : "light");
  }
  apply();
  if (query && query.addEventListener) {
    query.addEventListener("change", apply);
  }
})();
