/* Progressive enhancements of the Access pages; every form works without them (all rows are in the page). */
(function () {
  "use strict";
  var NO_VALUE = { "": true, everyone: true, any_valid_service_token: true };
  document.documentElement.classList.add("js");

  function syncValues(row) {
    var select = row.querySelector("select");
    var values = row.querySelector("[data-rule-values]");
    if (!select || !values) return;
    var textarea = values.querySelector("textarea");
    var hide = NO_VALUE[select.value] && !(textarea && textarea.value.trim());
    values.style.visibility = hide ? "hidden" : "visible";
  }

  function revealer(rows, button) {
    var hidden = rows.filter(function (row) { return row.hidden; });
    button.hidden = hidden.length === 0;
    button.addEventListener("click", function () {
      var next = rows.filter(function (row) { return row.hidden; })[0];
      if (!next) return;
      next.hidden = false;
      var input = next.querySelector("input, select");
      if (input) input.focus();
      button.hidden = !rows.some(function (row) { return row.hidden; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // On a narrow screen the tab strip scrolls: bring the current tab into view.
    var tabs = document.querySelector(".access-tabs");
    var current = tabs && tabs.querySelector(".active");
    if (current) tabs.scrollLeft = current.offsetLeft - tabs.offsetLeft - 16;
    document.querySelectorAll("[data-rule-section]").forEach(function (section) {
      var rows = Array.prototype.slice.call(section.querySelectorAll("[data-rule-row]"));
      rows.forEach(function (row) {
        if (row.classList.contains("rule-row-empty") && !row.querySelector(".error")) row.hidden = true;
        syncValues(row);
        var select = row.querySelector("select");
        if (select) select.addEventListener("change", function () { syncValues(row); });
      });
      var button = section.querySelector("[data-add-row]");
      if (button) revealer(rows, button);
    });
    var destinations = Array.prototype.slice.call(document.querySelectorAll("[data-destination-row]"));
    destinations.forEach(function (row) {
      if (row.classList.contains("destination-extra") && !row.querySelector(".error")) row.hidden = true;
    });
    var add = document.querySelector("[data-add-destination]");
    if (add) revealer(destinations, add);
  });
})();
