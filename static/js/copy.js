// Copy buttons: <button data-copy-target="element-id"> copies that element's text (or
// an input's value), <button data-copy="text"> copies the text given.
//
// navigator.clipboard exists only in secure contexts (https, localhost), and a gateway
// is often first tried on plain http on a private address. There a hidden textarea and
// document.execCommand("copy") still work; where even that fails, the text is selected
// and the person is asked to press the copy shortcut.
(function () {
  "use strict";
  var shortcut = /Mac|iPhone|iPad/.test(navigator.platform || "") ? "Press ⌘C" : "Press Ctrl+C";

  function targetOf(button) {
    return button.dataset.copyTarget ? document.getElementById(button.dataset.copyTarget) : null;
  }

  function textOf(button) {
    if (button.dataset.copy !== undefined) return button.dataset.copy;
    var target = targetOf(button);
    if (!target) return "";
    return "value" in target && target.tagName !== "BUTTON" ? target.value : target.textContent;
  }

  function copyWithTextarea(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.setAttribute("aria-hidden", "true");
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.left = "0";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    document.body.removeChild(area);
    return copied;
  }

  function selectTarget(button) {
    var target = targetOf(button);
    if (!target) return;
    if (typeof target.select === "function") {
      target.focus();
      target.select();
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function announce(text) {
    var region = document.getElementById("copy-announcer");
    if (region) region.textContent = text;
  }

  function report(button, text) {
    if (!button.dataset.copyLabel) button.dataset.copyLabel = button.textContent;
    button.textContent = text;
    announce(text);
    window.clearTimeout(button._copyTimer);
    button._copyTimer = window.setTimeout(function () {
      button.textContent = button.dataset.copyLabel;
    }, text === "Copied" ? 2000 : 6000);
  }

  function fallback(button, text) {
    if (copyWithTextarea(text)) {
      report(button, "Copied");
    } else {
      selectTarget(button);
      report(button, shortcut);
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-target]");
    if (!button) return;
    event.preventDefault();
    var text = textOf(button);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { report(button, "Copied"); },
        function () { fallback(button, text); }
      );
    } else {
      fallback(button, text);
    }
  });
})();
