// Supervisor wallboard: figures pushed over /ws/t/<slug>/wallboard/ (re-read from the database on
// every tenant event, debounced by the server). Plain JS; values go into the DOM via textContent.
(function () {
  "use strict";

  var root = document.getElementById("wallboard");
  if (!root) return;

  var REFRESH_MS = 15000;
  var MAX_BACKOFF_MS = 30000;
  var socket = null, backoff = 1000, refreshTimer = null, figures = null, figuresAt = 0;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] === null || attrs[k] === undefined) return;
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + " min " + (s < 10 ? "0" : "") + s + " s" : s + " s";
  }

  function setConn(text, ok) {
    var node = $("conn-status");
    node.textContent = text;
    node.className = "conn " + (ok ? "ok" : "down");
  }

  function render() {
    $("waiting-total").textContent = figures.waiting_total;
    var cb = figures.callbacks || {};
    $("callbacks-due").textContent = cb.due || 0;
    $("callbacks-scheduled").textContent = cb.scheduled || 0;
    $("callbacks-overdue").textContent = cb.overdue || 0;
    $("callbacks-overdue-tile").classList.toggle("alert", !!cb.overdue);
    Object.keys(figures.agents_by_state || {}).forEach(function (state) {
      var node = root.querySelector('[data-state-count="' + state + '"]');
      if (node) node.textContent = figures.agents_by_state[state];
    });

    var queues = $("queues");
    queues.textContent = "";
    if (!figures.queues.length) queues.appendChild(el("tr", {}, [el("td", { colspan: "5", className: "muted", text: "No queues yet." })]));
    figures.queues.forEach(function (q) {
      var sl = q.service_level === null
        ? el("span", { className: "muted", text: "\u2013" })
        : el("span", {}, [q.service_level + "% ", el("span", { className: "muted small", text: "(" + q.sl_met + " of " + q.sl_counted + " within " + q.service_level_seconds + " s)" })]);
      queues.appendChild(el("tr", { "data-queue-id": q.queue_id, className: q.waiting ? "has-waiting" : null }, [
        el("th", { scope: "row", text: q.name }),
        el("td", { text: String(q.waiting) }),
        el("td", { "data-wait-base": q.waiting ? q.longest_wait_seconds : null, text: q.waiting ? duration(q.longest_wait_seconds) : "\u2013" }),
        el("td", {}, [sl]),
        el("td", { text: q.today_accepted + " of " + q.today_total })
      ]));
    });

    var agents = $("agents");
    agents.textContent = "";
    if (!figures.agents.length) agents.appendChild(el("tr", {}, [el("td", { colspan: "4", className: "muted", text: "Nobody has opted in to take calls yet." })]));
    figures.agents.forEach(function (a) {
      var since = a.since ? Math.max(0, (Date.parse(figures.now) - Date.parse(a.since)) / 1000) : null;
      agents.appendChild(el("tr", {}, [
        el("th", { scope: "row" }, [a.name, a.via === "agency" ? " " : null, a.via === "agency" ? el("span", { className: "badge", text: "agency" }) : null]),
        el("td", {}, [el("span", { className: "presence-dot " + a.state, "aria-hidden": "true" }), a.state.charAt(0).toUpperCase() + a.state.slice(1), a.reason ? el("span", { className: "muted small", text: " (" + a.reason + ")" }) : null]),
        el("td", { "data-wait-base": since, text: since === null ? "" : duration(since) }),
        el("td", { text: String(a.handling) })
      ]));
    });
  }

  function tick() {
    if (!figures) return;
    var dt = (Date.now() - figuresAt) / 1000;
    Array.prototype.forEach.call(root.querySelectorAll("[data-wait-base]"), function (node) {
      node.textContent = duration(parseFloat(node.getAttribute("data-wait-base")) + dt);
    });
  }

  function connect() {
    setConn("Connecting\u2026", false);
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.getAttribute("data-ws-path"));
    socket.addEventListener("open", function () {
      backoff = 1000;
      setConn("Live", true);
      window.clearInterval(refreshTimer);
      refreshTimer = window.setInterval(function () {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "refresh" }));
      }, REFRESH_MS);
    });
    socket.addEventListener("message", function (e) {
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      if (message.type === "figures") {
        figures = message;
        figuresAt = Date.now();
        render();
      }
    });
    socket.addEventListener("close", function (e) {
      window.clearInterval(refreshTimer);
      if (e.code === 4401 || e.code === 4403 || e.code === 4404) {
        setConn("No access to this wallboard. Reload the page to sign in again.", false);
        return;
      }
      var wait = backoff + Math.floor(Math.random() * 500);
      setConn("Disconnected; reconnecting in " + Math.round(wait / 1000) + " s\u2026", false);
      window.setTimeout(connect, wait);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    });
  }

  window.setInterval(tick, 1000);
  connect();
})();
