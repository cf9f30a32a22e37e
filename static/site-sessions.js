// The tenant's sessions list: the "Revoke selected" bar shows when rows are selected, "select
// all on this page", and revoking the selection asks first, naming the consequence.
// Without JavaScript the bar is always shown and the server asks on a confirmation page.
(function () {
  "use strict";
  if (window.portalSessionsList) return;
  window.portalSessionsList = true;

  function boxes(checkedOnly) {
    return document.querySelectorAll(
      "#results input.row-select[form=bulk-form]" + (checkedOnly ? ":checked" : "")
    );
  }

  function update() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var total = boxes(false).length;
    var checked = boxes(true).length;
    var all = document.querySelector("#results input.select-all");
    if (all) {
      all.hidden = false;
      all.checked = checked > 0 && checked === total;
      all.indeterminate = checked > 0 && checked < total;
    }
    var bar = document.getElementById("bulk-bar");
    if (bar) bar.hidden = checked === 0 && !bar.hasAttribute("data-has-errors");
    var count = document.getElementById("selected-count");
    if (count) count.textContent = checked ? checked + " selected" : "";
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (!target.classList) return;
    if (target.classList.contains("select-all")) {
      boxes(false).forEach(function (box) { box.checked = target.checked; });
    }
    if (target.classList.contains("select-all") || target.classList.contains("row-select")) update();
  });

  // Capture phase: runs before htmx's own submit handler on the form, so a cancelled
  // confirmation stops both the request and the plain submission.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.id !== "bulk-form") return;
    var confirmed = form.querySelector("input[name=confirmed]");
    var n = boxes(true).length;
    if (!confirmed || !n) return; // nothing to ask; the server says what is missing
    var question = "Revoke " + n + " session" + (n === 1 ? "" : "s") + "? " +
      (form.getAttribute("data-consequence") || "");
    if (document.querySelector("#results input.row-select[data-mine]:checked")) {
      question += " This includes this browser: you will be signed out too.";
    }
    if (window.confirm(question)) {
      confirmed.value = "yes";
    } else {
      evt.preventDefault();
      evt.stopPropagation();
    }
  }, true);

  document.addEventListener("htmx:afterSwap", update);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", update);
  } else {
    update();
  }
})();
