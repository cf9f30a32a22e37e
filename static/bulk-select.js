// Bulk selection on a list page (users, sessions): the action bar of form#bulk-form shows when
// rows are selected, "select all on this page" ticks every row, an element with
// data-show-for="<action>" shows only while that action is chosen, and actions that take
// something away ask first, naming the consequence. The form describes itself with data-noun
// ("user"), and either options carrying data-confirm or data-verb + data-consequence;
// data-mine-warning is added when a row marked data-mine (your own) is selected.
// Without JavaScript the bar is always shown and the server asks on a confirmation page.
(function () {
  "use strict";
  if (window.portalBulkSelect) return;
  window.portalBulkSelect = true;

  function rows(form, checkedOnly) {
    // Rows may sit inside the form or outside it with form="bulk-form".
    return Array.prototype.filter.call(
      document.querySelectorAll("input.row-select" + (checkedOnly ? ":checked" : "")),
      function (box) { return box.form === form; }
    );
  }

  function update() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var total = rows(form, false).length;
    var checked = rows(form, true).length;
    var all = document.querySelector("input.select-all");
    if (all) {
      all.hidden = false;
      all.checked = checked > 0 && checked === total;
      all.indeterminate = checked > 0 && checked < total;
    }
    var bar = document.getElementById("bulk-bar");
    if (bar) bar.hidden = checked === 0 && !bar.hasAttribute("data-has-errors");
    var count = document.getElementById("selected-count");
    if (count) count.textContent = checked ? checked + " selected" : "";
    var action = document.getElementById("bulk-action");
    form.querySelectorAll("[data-show-for]").forEach(function (el) {
      el.hidden = !action || action.value !== el.getAttribute("data-show-for");
    });
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    var form = document.getElementById("bulk-form");
    if (!form || !target.classList) return;
    if (target.classList.contains("select-all")) {
      rows(form, false).forEach(function (box) { box.checked = target.checked; });
    }
    if (target.classList.contains("select-all") || target.form === form) update();
  });

  // Capture phase: runs before htmx's own submit handler on the form, so a cancelled
  // confirmation stops both the request and the plain submission.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.id !== "bulk-form") return;
    var confirmed = form.querySelector("input[name=confirmed]");
    var n = rows(form, true).length;
    var noun = form.getAttribute("data-noun") || "item";
    var action = document.getElementById("bulk-action");
    var option = action && action.options[action.selectedIndex];
    var consequence = option ? option.getAttribute("data-confirm") : form.getAttribute("data-consequence");
    if (!consequence || !confirmed || !n) return; // nothing to ask; the server says what is missing
    var what = n + " " + noun + (n === 1 ? "" : "s");
    var question = option
      ? "“" + option.textContent.trim() + "” for " + what + "? " + consequence
      : form.getAttribute("data-verb") + " " + what + "? " + consequence;
    if (rows(form, true).some(function (box) { return box.hasAttribute("data-mine"); })) {
      question += " " + (form.getAttribute("data-mine-warning") || "");
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
