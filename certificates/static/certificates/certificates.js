// Origin certificates: follow a pending certificate until its job finished (then reload), and show the CSR field
// only when the user brings their own CSR. No inline scripts: the pages load this file.
(function () {
  "use strict";

  var pending = document.querySelector("[data-certificate-pending]");
  if (pending) {
    var url = pending.getAttribute("data-status-url");
    var delay = 500;
    var poll = function () {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (body && body.result && body.result.status !== "pending") {
            window.location.reload();
            return;
          }
          delay = Math.min(delay * 2, 5000);
          setTimeout(poll, delay);
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, delay);
  }

  var form = document.querySelector("[data-certificate-form]");
  if (form) {
    var csrOnly = form.querySelector("[data-csr-only]");
    var sync = function () {
      var mode = form.querySelector("input[name=mode]:checked");
      csrOnly.hidden = !mode || mode.value !== "csr";
    };
    form.addEventListener("change", sync);
    sync();
  }
})();
