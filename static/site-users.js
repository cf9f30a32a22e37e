// The tenant's users list: the bulk action bar shows when rows are selected, "select all on
// this page", and actions that take something away ask first, naming the consequence.
// Without JavaScript the bar is always shown and the server asks on a confirmation page.
(function () {
  "use strict";
  if (window.portalUsersList) return;
  window.portalUsersList = true;

  function update() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var boxes = form.querySelectorAll("input.row-select");
    var checked = form.querySelectorAll("input.row-select:checked").length;
    var all = form.querySelector("input.select-all");
    if (all) {
      all.hidden = false;
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
    var bar = document.getElementById("bulk-bar");
    if (bar) bar.hidden = checked === 0 && !bar.hasAttribute("data-has-errors");
    var count = document.getElementById("selected-count");
    if (count) count.textContent = checked ? checked + " selected" : "";
    var action = document.getElementById("bulk-action");
    var role = document.getElementById("bulk-role-field");
    if (action && role) role.hidden = action.value !== "assign_role";
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (target.classList && target.classList.contains("select-all")) {
      document.querySelectorAll("#bulk-form input.row-select").forEach(function (box) {
        box.checked = target.checked;
      });
    }
    if (target.closest && target.closest("#bulk-form")) update();
  });

  // Capture phase: runs before htmx's own submit handler on the form, so a cancelled
  // confirmation stops both the request and the plain submission.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.id !== "bulk-form") return;
    var action = document.getElementById("bulk-action");
    var option = action && action.options[action.selectedIndex];
    var consequence = option && option.getAttribute("data-confirm");
    var confirmed = form.querySelector("input[name=confirmed]");
    var n = form.querySelectorAll("input.row-select:checked").length;
    if (!consequence || !confirmed || !n) return; // nothing to ask; the server says what is missing
    var question = "“" + option.textContent.trim() + "” for " + n + " user" + (n === 1 ? "" : "s") + "? " + consequence;
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
