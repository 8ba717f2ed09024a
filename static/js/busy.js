// A form that takes a while (a health check waits for the server): once submitted, its
// button is disabled, shows a spinner and says so (data-busy-text), so nobody clicks
// twice and the page visibly works. Without script the form submits as before.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.busyText || event.defaultPrevented) return;
    var button = event.submitter || form.querySelector("button[type=submit]");
    if (!button) return;
    // Disabled after this event, so a named button still sends its value.
    window.setTimeout(function () {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      button.innerHTML = '<span class="spinner-border spinner-border-sm me-1" aria-hidden="true"></span>';
      button.appendChild(document.createTextNode(form.dataset.busyText));
    }, 0);
  });
})();
