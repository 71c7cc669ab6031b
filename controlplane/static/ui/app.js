/* Small progressive enhancements; every page works without them. */
(function () {
  "use strict";

  function textOf(selector) {
    var el = document.querySelector(selector);
    if (!el) return "";
    if ("value" in el && el.tagName !== "UL" && el.tagName !== "OL") return el.value;
    if (el.tagName === "UL" || el.tagName === "OL") {
      return Array.prototype.map.call(el.querySelectorAll("li"), function (li) { return li.textContent.trim(); }).join("\n");
    }
    return el.textContent.trim();
  }

  function copy(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.disabled = true;
      setTimeout(function () { button.textContent = label; button.disabled = false; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable on the page */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target], [data-copy-text], [data-download-target], [data-print], [data-back]");
    if (!button) return;
    if (button.hasAttribute("data-copy-text")) {
      copy(button.getAttribute("data-copy-text"), button);
    } else if (button.hasAttribute("data-copy-target")) {
      var target = document.querySelector(button.getAttribute("data-copy-target"));
      if (target && target.select) target.select();
      copy(textOf(button.getAttribute("data-copy-target")), button);
    } else if (button.hasAttribute("data-download-target")) {
      var blob = new Blob([textOf(button.getAttribute("data-download-target")) + "\n"], { type: "text/plain" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = button.getAttribute("data-filename") || "download.txt";
      document.body.appendChild(link);
      link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 0);
    } else if (button.hasAttribute("data-print")) {
      window.print();
    } else if (button.hasAttribute("data-back")) {
      if (history.length > 1) history.back(); else window.location.href = "/";
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Close an open dropdown when clicking elsewhere or pressing Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) { menu.removeAttribute("open"); });
  });
})();
