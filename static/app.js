// MSP Portal behaviour that HTMX does not cover: toasts and local times. No inline scripts (CSP).
(function () {
  "use strict";

  function showToast(message, kind) {
    var region = document.getElementById("toasts");
    if (!region) return;
    var el = document.createElement("div");
    el.className = "alert alert-" + (kind || "success") + " toast-message";
    el.textContent = message;
    region.appendChild(el);
    setTimeout(function () { el.remove(); }, 6000);
  }

  function localiseTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.title = when.toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localiseTimes(document);
    document.querySelectorAll("#toasts [data-autohide]").forEach(function (el) {
      setTimeout(function () { el.remove(); }, 6000);
    });
  });

  // Server responses send HX-Trigger: {"toast": "..."}; the event bubbles up to the document.
  document.addEventListener("toast", function (evt) {
    showToast(evt.detail.value || evt.detail, "success");
  });
  document.addEventListener("htmx:afterSwap", function (evt) { localiseTimes(evt.detail.target); });
  document.addEventListener("htmx:responseError", function (evt) {
    showToast("The server could not complete that (" + evt.detail.xhr.status + "). Reload and try again.", "danger");
  });
})();
