/* Live tunnel status: the page embeds the current state as JSON, then a websocket pushes every change (no
   polling, no reload). One renderer draws both, so what you see after a push equals what a reload shows.

   The page never shows a state it cannot vouch for: when the feed is closed, not yet open or silent (no message
   for two heartbeats) for more than STALE_AFTER_MS, every live badge turns grey "Unknown" and uptimes stop
   ticking until a fresh snapshot arrives. When the server refuses the feed (close codes 4401 signed out, 4411
   second factor needed, 4403, 4404: docs/tunnels.md) the page says why, with a link to fix it.

   On a tunnel's page the feed also carries its recent origin errors (the snapshot's `origin_errors`, then an
   `origin_errors` message per batch the edge records): new rows appear on top, and a dead feed greys them too. */
(function () {
  "use strict";
  var script = document.currentScript;
  var socketPath = script && script.getAttribute("data-socket");
  var dataNode = document.getElementById("tunnel-status-data");
  var tunnels = {};
  (dataNode ? JSON.parse(dataNode.textContent) || [] : []).forEach(function (t) { tunnels[t.id] = t; });

  var BADGES = { healthy: "badge-green", degraded: "badge-amber", down: "badge-red", inactive: "badge-grey" };
  var LABELS = { healthy: "Healthy", degraded: "Degraded", down: "Down", inactive: "Inactive" };
  var STALE_AFTER_MS = 3000;
  var UNKNOWN = "status unknown — reconnecting";
  var stale = false;      // true: what the page shows is not vouched for by the feed
  var vouched = false;    // a snapshot arrived on the open socket, and it has not gone quiet since
  var staleTimer = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function duration(since) {
    var seconds = Math.max(0, Math.floor((Date.now() - new Date(since).getTime()) / 1000));
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  function badge(status) {
    if (stale) return unknownBadge(LABELS[status] || status);
    return el("span", { "class": "badge " + (BADGES[status] || "badge-grey"), "data-status": status,
                        text: LABELS[status] || status });
  }

  function unknownBadge(lastKnown) {
    return el("span", { "class": "badge badge-grey badge-stale", "data-status": "unknown", text: "Unknown",
                        title: "Last known: " + lastKnown + ". " + UNKNOWN.charAt(0).toUpperCase() + UNKNOWN.slice(1) + "." });
  }

  function connectorsTable(t, canEdit, disconnectUrl, csrf) {
    if (!t.connectors.length) {
      return el("p", { "class": "muted", text: t.status === "inactive"
        ? "No connector has connected yet. Install one with the commands below."
        : "No connector is connected right now." });
    }
    var head = ["Connector ID", "Status", "Version", "Platform", "Origin IP", "Hostname", "Uptime", "Connections", "Config"];
    if (canEdit) head.push("");
    var rows = t.connectors.map(function (c) {
      var up = c.connections.length, want = c.expected_connections;
      var status = c.missing.length ? "degraded" : "healthy";
      var conns = el("div", {}, c.connections.map(function (conn) {
        return el("div", { "class": "small muted", title: "held by " + conn.server,
                           text: "#" + conn.index + " since " + new Date(conn.opened_at).toLocaleTimeString() });
      }).concat(c.missing.map(function (miss) {
        return el("div", { "class": "small error-text", text: "#" + miss.index + " down: " + miss.reason });
      })));
      var version = c.config_version < 0 ? "none" : "v" + c.config_version;
      var config = el("span", { "class": c.config_outdated ? "badge badge-amber" : "muted small",
                                title: c.config_error || "",
                                text: version + (c.config_outdated ? " (latest is v" + t.config_version + ")" : "") });
      var cells = [
        el("td", {}, [el("code", { title: c.id, text: c.id.slice(0, 8) + "…" })]),
        el("td", {}, [stale ? unknownBadge(status === "healthy" ? "Connected" : "Degraded")
          : el("span", { "class": "badge " + BADGES[status], text: status === "healthy" ? "Connected" : "Degraded" })]),
        el("td", { text: c.version }),
        el("td", { text: c.arch || c.platform }),
        el("td", { text: c.origin_ip }),
        el("td", { text: c.hostname }),
        el("td", { "class": "nowrap" + (stale ? " stale" : ""), "data-since": c.run_at, text: duration(c.run_at),
                   title: stale ? UNKNOWN : "" }),
        el("td", {}, [el("div", { text: up + " of " + want }), conns]),
        el("td", {}, [config, c.config_error ? el("div", { "class": "small error-text", text: c.config_error }) : null])
      ];
      if (canEdit) {
        var form = el("form", { method: "post", action: disconnectUrl, "data-confirm": "Disconnect connector " + c.id + "?" }, [
          el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrf }),
          el("input", { type: "hidden", name: "connector_id", value: c.id }),
          el("button", { type: "submit", "class": "btn btn-secondary btn-small", text: "Disconnect" })
        ]);
        cells.push(el("td", {}, [form]));
      }
      return el("tr", { "data-connector": c.id }, cells);
    });
    return el("div", { "class": "table-scroll" }, [el("table", { "class": "table table-compact" }, [
      el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]),
      el("tbody", {}, rows)
    ])]);
  }

  function render() {
    Object.keys(tunnels).forEach(function (id) {
      var t = tunnels[id];
      document.querySelectorAll('[data-tunnel-status="' + id + '"]').forEach(function (node) {
        node.replaceChildren(badge(t.status));
      });
      document.querySelectorAll('[data-tunnel-explanation="' + id + '"]').forEach(function (node) {
        node.textContent = stale ? "Last known: " + t.explanation : t.explanation;
        node.classList.toggle("stale", stale);
      });
      document.querySelectorAll('[data-tunnel-connector-count="' + id + '"]').forEach(function (node) {
        var n = t.connectors.length;
        node.textContent = (n ? n + " connector" + (n === 1 ? "" : "s") : "none") + (stale ? " (last known)" : "");
        node.classList.toggle("stale", stale);
      });
      document.querySelectorAll('[data-tunnel-connectors="' + id + '"]').forEach(function (node) {
        node.replaceChildren(connectorsTable(t, node.getAttribute("data-can-edit") === "1",
          node.getAttribute("data-disconnect-url"), node.getAttribute("data-csrf")));
      });
    });
    var all = document.querySelector("[data-all-connectors]");
    if (all) {
      all.replaceChildren.apply(all, Object.keys(tunnels).filter(function (id) { return !tunnels[id].deleted; })
        .map(function (id) {
          var t = tunnels[id];
          return el("section", { "class": "card", "data-tunnel-card": id }, [
            el("div", { "class": "card-header-row" }, [el("h2", { text: t.name }), badge(t.status)]),
            el("p", { "class": "muted small" + (stale ? " stale" : ""), text: (stale ? "Last known: " : "") + t.explanation }),
            connectorsTable(t, false)
          ]);
        }));
    }
  }

  // -- recent origin errors of the tunnel whose page this is ------------------------------------------------
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var ORIGIN_ERRORS_SHOWN = 50;

  function utc(iso) {  // as the server renders it: "3 Dec 2026 13:05:07" (UTC)
    var d = new Date(iso);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() + " " +
      two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds());
  }

  function originErrorRow(e) {
    var path = e.path.length > 80 ? e.path.slice(0, 79) + "…" : e.path;
    var more = e.unrecorded ? el("div", { "class": "muted small", text: "and " + e.unrecorded + " more error" +
      (e.unrecorded === 1 ? "" : "s") + " of this tunnel around this time, not listed one by one" }) : null;
    return el("tr", { "data-request-id": e.request_id, "data-error-id": String(e.id) }, [
      el("td", { "class": "nowrap", text: utc(e.occurred_at) }),
      el("td", {}, [el("code", { text: e.hostname }),
        e.path ? el("div", { "class": "muted small mono", text: e.method + " " + path }) : null]),
      el("td", {}, [el("span", { "class": "badge badge-red", text: String(e.status) })]),
      el("td", { "class": "origin-error-reason" }, [document.createTextNode(e.reason), more]),
      el("td", { "class": "nowrap" }, [el("code", { text: e.request_id })])
    ]);
  }

  // `errors` newest first; `replace`: they are the whole list (a snapshot), else new rows to put on top.
  function showOriginErrors(tunnelId, errors, replace) {
    var box = document.querySelector('[data-origin-errors="' + tunnelId + '"]');
    if (!box) return;
    var body = box.querySelector("tbody");
    var search = box.getAttribute("data-search") || "";
    var seen = {};
    if (!replace) body.querySelectorAll("tr[data-error-id]").forEach(function (tr) { seen[tr.getAttribute("data-error-id")] = true; });
    var rows = errors.filter(function (e) { return e.request_id.indexOf(search) === 0 && !seen[String(e.id)]; })
      .map(originErrorRow);
    if (replace) body.replaceChildren.apply(body, rows);
    else rows.reverse().forEach(function (tr) { body.insertBefore(tr, body.firstChild); });
    while (body.children.length > ORIGIN_ERRORS_SHOWN) body.removeChild(body.lastChild);
    var empty = !body.children.length;
    box.hidden = empty;
    var emptyNote = box.parentNode.querySelector("[data-origin-errors-empty]");
    if (emptyNote) emptyNote.hidden = !empty;
  }

  function greyOriginErrors() {
    document.querySelectorAll("[data-origin-errors]").forEach(function (box) {
      box.classList.toggle("stale", stale);
      box.title = stale ? "Last known: new errors appear again once the live status reconnects." : "";
    });
  }

  function indicator(text, ok) {
    document.querySelectorAll("[data-live-indicator]").forEach(function (node) {
      node.textContent = text;
      node.classList.toggle("live-ok", !!ok);
      node.classList.toggle("live-stale", stale);
    });
  }

  // -- vouching: the page is trusted only while the feed is open and talking --------------------------------
  function setStale(value) {
    if (stale === value) return;
    stale = value;
    document.body.classList.toggle("live-status-stale", stale);
    greyOriginErrors();
    render();
  }

  function lostFeed(text) {
    vouched = false;
    if (!stale) indicator(text || "reconnecting…", false);
    if (staleTimer === null) {
      staleTimer = setTimeout(function () {
        staleTimer = null;
        if (!vouched) { setStale(true); indicator(UNKNOWN, false); }
      }, STALE_AFTER_MS);
    }
  }

  function gotSnapshot() {
    vouched = true;
    if (staleTimer !== null) { clearTimeout(staleTimer); staleTimer = null; }
    notice(null);
    stale = false;
    document.body.classList.remove("live-status-stale");
    greyOriginErrors();
    indicator("live", true);
  }

  // -- why the server refused the feed, and how to fix it ----------------------------------------------------
  var DEFAULT_REASONS = {
    4401: "You are signed out.",
    4403: "You do not have permission to see tunnels.",
    4404: "No such account, or you are no longer a member.",
    4411: "This organisation requires two-factor authentication, and this session has not passed it."
  };

  function notice(refusal) {
    var node = document.querySelector("[data-live-notice]");
    if (!refusal) { if (node) node.remove(); return; }
    if (!node) {
      node = el("div", { "class": "alert alert-warning live-notice", "data-live-notice": "", role: "alert" });
      var header = document.querySelector("#content .page-header");
      if (header) header.insertAdjacentElement("afterend", node);
      else document.body.insertBefore(node, document.body.firstChild);
    }
    node.setAttribute("data-code", String(refusal.code));
    var children = [el("strong", { text: "Live status stopped: " }), document.createTextNode(refusal.reason + " ")];
    if (refusal.fix_url) {
      var next = location.pathname + location.search;
      var href = refusal.fix_url + (refusal.fix_url.indexOf("?") < 0 ? "?" : "&") + "next=" + encodeURIComponent(next);
      children.push(el("a", { href: href, "data-live-fix": "", text: refusal.fix_label || "Fix it" }));
      children.push(document.createTextNode(", then come back: the status reappears by itself."));
    } else {
      children.push(el("a", { href: location.href, "data-live-fix": "", text: "Reload the page" }));
    }
    node.replaceChildren.apply(node, children);
  }

  var attempt = 0;
  var socket = null;
  var heartbeatMs = 0;
  var silenceTimer = null;

  function expectMessages() {
    // A feed that goes quiet (a hung server, a dropped network) is as good as closed.
    if (silenceTimer !== null) clearTimeout(silenceTimer);
    if (!heartbeatMs) return;
    silenceTimer = setTimeout(function () { if (socket) socket.close(); }, 2 * heartbeatMs + 2000);
  }

  function connect() {
    if (!socketPath || !window.WebSocket) return;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + socketPath;
    var refusal = null;
    socket = new WebSocket(url);
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      expectMessages();
      if (message.type === "refused") {
        refusal = message;
        return;
      }
      if (message.type === "snapshot") {
        attempt = 0;
        heartbeatMs = (message.heartbeat || 0) * 1000;
        expectMessages();
        message.tunnels.forEach(function (t) { tunnels[t.id] = t; });
        if (message.origin_errors) showOriginErrors(message.origin_errors.tunnel, message.origin_errors.errors, true);
        gotSnapshot();
      } else if (message.type === "tunnel") {
        tunnels[message.tunnel.id] = message.tunnel;
      } else if (message.type === "origin_errors") {
        showOriginErrors(message.tunnel, message.errors, false);
        return;
      } else {
        return;  // a heartbeat
      }
      render();
    };
    socket.onclose = function (event) {
      socket = null;
      if (silenceTimer !== null) { clearTimeout(silenceTimer); silenceTimer = null; }
      if (!refusal && DEFAULT_REASONS[event.code]) refusal = { code: event.code, reason: DEFAULT_REASONS[event.code] };
      lostFeed();
      if (refusal) {
        setStale(true);
        indicator(UNKNOWN, false);
        notice(refusal);
      }
      attempt += 1;
      // After a refusal, retry slowly: signing in again in another tab brings the feed back.
      var delay = refusal ? 15000 : Math.min(8000, 500 * Math.pow(2, attempt));
      setTimeout(connect, delay * (0.5 + Math.random() / 2));
    };
  }

  render();
  lostFeed("connecting…");  // until the first snapshot, the embedded state ages like any other
  connect();
  setInterval(function () {
    if (stale) return;  // an uptime the feed cannot vouch for does not tick
    document.querySelectorAll("[data-since]").forEach(function (node) {
      node.textContent = duration(node.getAttribute("data-since"));
    });
  }, 1000);

  document.addEventListener("click", function (event) {
    var tab = event.target.closest("[data-tab]");
    if (!tab) return;
    var list = tab.parentNode;
    list.querySelectorAll("[data-tab]").forEach(function (other) {
      other.classList.toggle("active", other === tab);
      var panel = document.getElementById(other.getAttribute("data-tab"));
      if (panel) panel.classList.toggle("hidden", other !== tab);
    });
  });
})();
