/* Live tunnel status: the page embeds the current state as JSON, then a websocket pushes every change (no
   polling, no reload). One renderer draws both, so what you see after a push equals what a reload shows. */
(function () {
  "use strict";
  var script = document.currentScript;
  var socketPath = script && script.getAttribute("data-socket");
  var dataNode = document.getElementById("tunnel-status-data");
  var tunnels = {};
  (dataNode ? JSON.parse(dataNode.textContent) || [] : []).forEach(function (t) { tunnels[t.id] = t; });

  var BADGES = { healthy: "badge-green", degraded: "badge-amber", down: "badge-red", inactive: "badge-grey" };
  var LABELS = { healthy: "Healthy", degraded: "Degraded", down: "Down", inactive: "Inactive" };

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
    return el("span", { "class": "badge " + (BADGES[status] || "badge-grey"), "data-status": status,
                        text: LABELS[status] || status });
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
        el("td", {}, [el("span", { "class": "badge " + BADGES[status], text: status === "healthy" ? "Connected" : "Degraded" })]),
        el("td", { text: c.version }),
        el("td", { text: c.arch || c.platform }),
        el("td", { text: c.origin_ip }),
        el("td", { text: c.hostname }),
        el("td", { "class": "nowrap", "data-since": c.run_at, text: duration(c.run_at) }),
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
        node.textContent = t.explanation;
      });
      document.querySelectorAll('[data-tunnel-connector-count="' + id + '"]').forEach(function (node) {
        var n = t.connectors.length;
        node.textContent = n ? n + " connector" + (n === 1 ? "" : "s") : "none";
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
            el("p", { "class": "muted small", text: t.explanation }),
            connectorsTable(t, false)
          ]);
        }));
    }
  }

  function indicator(text, ok) {
    document.querySelectorAll("[data-live-indicator]").forEach(function (node) {
      node.textContent = text;
      node.classList.toggle("live-ok", !!ok);
    });
  }

  var attempt = 0;
  function connect() {
    if (!socketPath || !window.WebSocket) return;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + socketPath;
    var socket = new WebSocket(url);
    socket.onopen = function () { attempt = 0; indicator("live", true); };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "snapshot") {
        message.tunnels.forEach(function (t) { tunnels[t.id] = t; });
      } else if (message.type === "tunnel") {
        tunnels[message.tunnel.id] = message.tunnel;
      }
      render();
    };
    socket.onclose = function () {
      indicator("reconnecting…", false);
      attempt += 1;
      setTimeout(connect, Math.min(30000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2));
    };
  }

  render();
  connect();
  setInterval(function () {
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
