// Show a form part only when it applies: data-show-if="auth_type=bearer;credential_mode=shared"
// keeps the element visible while the control named auth_type has the value bearer and
// credential_mode is shared (several values: "access=members,groups"). Without script
// every part stays visible and the server ignores what does not apply.
(function () {
  "use strict";
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
  function update(form) {
    form.querySelectorAll("[data-show-if]").forEach(function (part) {
      part.hidden = !applies(form, part.dataset.showIf);
    });
  }
  document.querySelectorAll("form").forEach(function (form) {
    if (!form.querySelector("[data-show-if]")) return;
    form.addEventListener("change", function () { update(form); });
    update(form);
  });
})();
