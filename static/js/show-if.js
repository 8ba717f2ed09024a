// Show a form part only when it applies: data-show-if="auth_type=bearer;credential_mode=shared"
// keeps the element visible while the control named auth_type has the value bearer and
// credential_mode is shared (several values: "access=members,groups").
//
// The controls of a hidden part are disabled too, so what was typed there before the
// choice changed is not sent (and not refused as not applying). A part holding a field
// the server marked in error stays visible, so its message can be read. Without script
// every part stays visible and the server decides what applies.
(function () {
  "use strict";
  var MARK = "showIfDisabled";

  function valueOf(form, name) {
    var control = form.elements.namedItem(name);
    if (!control) return null;
    if (control instanceof RadioNodeList || control.type === "radio") {
      var checked = form.querySelector('input[name="' + name + '"]:checked');
      return checked ? checked.value : "";
    }
    return control.value;
  }

  function applies(form, rule) {
    return rule.split(";").every(function (condition) {
      var parts = condition.split("=");
      var value = valueOf(form, parts[0].trim());
      return value === null || parts[1].split(",").indexOf(value) !== -1;
    });
  }

  function setEnabled(part, enabled) {
    part.querySelectorAll("input, select, textarea").forEach(function (control) {
      if (!enabled && !control.disabled) {
        control.disabled = true;
        control.dataset[MARK] = "1";
      } else if (enabled && control.dataset[MARK]) {
        control.disabled = false;
        delete control.dataset[MARK];
      }
    });
  }

  function update(form) {
    // Document order: an enclosing part is decided before the parts inside it.
    form.querySelectorAll("[data-show-if]").forEach(function (part) {
      var insideHidden = part.parentElement && part.parentElement.closest("[data-show-if][hidden]");
      var inError = part.classList.contains("has-error") || part.querySelector(".has-error");
      var shown = !insideHidden && (applies(form, part.dataset.showIf) || Boolean(inError));
      part.hidden = !shown;
    });
    form.querySelectorAll("[data-show-if]").forEach(function (part) {
      if (!part.hidden && !part.closest("[data-show-if][hidden]")) setEnabled(part, true);
    });
    form.querySelectorAll("[data-show-if][hidden]").forEach(function (part) {
      setEnabled(part, false);
    });
  }

  document.querySelectorAll("form").forEach(function (form) {
    if (!form.querySelector("[data-show-if]")) return;
    form.addEventListener("change", function () { update(form); });
    update(form);
  });
})();
