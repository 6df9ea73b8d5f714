/* Switchboard chat widget. Embed with one tag:
 *   <script src="https://<switchboard>/static/js/widget.js" data-switchboard-key="wk_..." defer></script>
 * It adds a chat button (bottom-right) and panel, loads widget.css from the same place as this script,
 * and talks to wss://<switchboard>/ws/chat/<key>/ (protocol: agents/chat_consumers.py).
 * No external assets; all text is inserted as text (never as HTML).
 */
(function () {
  "use strict";

  var script =
    document.currentScript || document.querySelector("script[data-switchboard-key]");
  if (!script || !script.src) return;
  var key = script.getAttribute("data-switchboard-key") || "";
  if (!key || window["__switchboardChat_" + key]) return;
  window["__switchboardChat_" + key] = true;

  var scriptUrl = new URL(script.src, document.baseURI);
  var wsUrl =
    (scriptUrl.protocol === "https:" ? "wss://" : "ws://") +
    scriptUrl.host + "/ws/chat/" + encodeURIComponent(key) + "/";
  var storageKey = "switchboard-chat:" + key;
  var MAX_CHARS = 1000;

  function getToken() {
    try { return window.sessionStorage.getItem(storageKey) || ""; } catch (e) { return ""; }
  }
  function setToken(value) {
    try {
      if (value) window.sessionStorage.setItem(storageKey, value);
      else window.sessionStorage.removeItem(storageKey);
    } catch (e) { /* storage disabled: the chat still works, it just won't resume */ }
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  // --- styles (same origin as this script) -----------------------------------------------------------
  var css = el("link", { rel: "stylesheet", href: new URL("../css/widget.css", scriptUrl).href });
  document.head.appendChild(css);

  // --- the panel -------------------------------------------------------------------------------------
  var uid = "sbw-" + Math.random().toString(36).slice(2, 8);
  var root = el("div", { class: "sbw-root", "data-state": "closed" });
  var toggle = el("button", {
    class: "sbw-toggle", type: "button", "aria-expanded": "false", "aria-controls": uid + "-panel",
  });
  toggle.appendChild(el("span", { class: "sbw-toggle-icon", "aria-hidden": "true" }));
  toggle.appendChild(el("span", { class: "sbw-toggle-label" }, "Chat with us"));

  var panel = el("section", {
    class: "sbw-panel", id: uid + "-panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": uid + "-title", hidden: "",
  });
  var header = el("header", { class: "sbw-header" });
  var title = el("h2", { class: "sbw-title", id: uid + "-title" }, "Chat with us");
  var close = el("button", { class: "sbw-close", type: "button", "aria-label": "Close chat" }, "\u00D7");
  header.appendChild(title);
  header.appendChild(close);

  var log = el("div", {
    class: "sbw-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0",
    "aria-label": "Conversation",
  });
  var status = el("p", { class: "sbw-status", role: "status", "aria-live": "polite" }, "");

  var form = el("form", { class: "sbw-form" });
  var label = el("label", { class: "sbw-visually-hidden", for: uid + "-input" }, "Your message");
  var input = el("textarea", {
    class: "sbw-input", id: uid + "-input", rows: "2", maxlength: String(MAX_CHARS),
    placeholder: "Type your message…", autocomplete: "off",
  });
  var send = el("button", { class: "sbw-send", type: "submit" }, "Send");
  var restart = el("button", { class: "sbw-restart", type: "button", hidden: "" }, "Start a new chat");
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);

  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(restart);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(toggle);

  function mount() { document.body.appendChild(root); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  // --- transcript ------------------------------------------------------------------------------------
  var pending = null; // the visitor's last bubble until the server answers

  function addMessage(from, text, name) {
    var item = el("div", { class: "sbw-msg sbw-from-" + from });
    var who = from === "visitor" ? "You" : from === "agent" ? (name || "Agent") : from === "bot" ? "Assistant" : "";
    if (who) item.appendChild(el("span", { class: "sbw-visually-hidden" }, who + ": "));
    if (from === "agent") item.appendChild(el("span", { class: "sbw-name", "aria-hidden": "true" }, who));
    item.appendChild(el("span", { class: "sbw-text" }, text));
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    if (from !== "visitor") markUnread();
    return item;
  }
  var loadingHistory = false;
  function markUnread() {
    if (!panel.hidden || loadingHistory) return;
    toggle.classList.add("sbw-unread");
    toggle.querySelector(".sbw-toggle-label").textContent = "Chat with us (new message)";
  }
  function clearUnread() {
    toggle.classList.remove("sbw-unread");
    toggle.querySelector(".sbw-toggle-label").textContent = "Chat with us";
  }
  function addNote(text, kind) {
    var item = el("p", { class: "sbw-note" + (kind ? " sbw-note-" + kind : "") }, text);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }
  function setState(state) {
    root.setAttribute("data-chat", state || "bot");
    var ended = state === "ended";
    restart.hidden = !ended;
  }

  // --- the socket ------------------------------------------------------------------------------------
  var socket = null;
  var retries = 0;
  var retryTimer = null;
  var started = false;
  var stopped = false; // refused (4403/4404): do not retry

  function setConnected(on) {
    send.disabled = !on;
    status.textContent = on ? "" : stopped ? "Chat is not available right now." : "Connecting…";
  }

  function connect() {
    if (socket || stopped) return;
    setConnected(false);
    try {
      socket = new WebSocket(wsUrl);
    } catch (e) {
      scheduleRetry();
      return;
    }
    socket.onopen = function () {
      retries = 0;
      socket.send(JSON.stringify({ type: "start", token: getToken() }));
    };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      handle(data);
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4403 || event.code === 4404) {
        stopped = true;
        setConnected(false);
        return;
      }
      setConnected(false);
      scheduleRetry();
    };
  }

  function scheduleRetry() {
    if (retryTimer || stopped) return;
    var delay = Math.min(30000, 1000 * Math.pow(2, retries++)) + Math.floor(Math.random() * 500);
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, delay);
  }

  function handle(data) {
    if (data.type === "session") {
      setToken(data.token);
      if (data.title) { title.textContent = data.title; }
      setState(data.state);
      setConnected(true);
      if (!data.resumed && started) {
        log.textContent = "";
      }
      started = true;
    } else if (data.type === "history") {
      log.textContent = "";
      loadingHistory = true;
      (data.messages || []).forEach(function (m) { show(m); });
      loadingHistory = false;
    } else if (data.type === "message" || data.type === "status") {
      pending = null;
      show(data);
    } else if (data.type === "error") {
      if (pending && (data.code === "slow_down" || data.code === "too_long")) {
        pending.classList.add("sbw-not-sent");
        pending.appendChild(el("span", { class: "sbw-flag" }, " (not sent)"));
        if (!input.value) input.value = pending.querySelector(".sbw-text").textContent;
        pending = null;
      }
      addNote(data.message || "Something went wrong.", "error");
    }
  }

  function show(m) {
    if (m.type === "status") {
      addNote(m.text || "", m.state);
      setState(m.state);
    } else if (m.type === "message") {
      addMessage(m.from || "bot", m.text || "", m.name);
    }
  }

  // --- interaction -----------------------------------------------------------------------------------
  function open() {
    panel.hidden = false;
    root.setAttribute("data-state", "open");
    toggle.setAttribute("aria-expanded", "true");
    clearUnread();
    connect();
    input.focus();
  }
  function shut() {
    panel.hidden = true;
    root.setAttribute("data-state", "closed");
    toggle.setAttribute("aria-expanded", "false");
    toggle.focus();
  }
  toggle.addEventListener("click", function () { if (panel.hidden) open(); else shut(); });
  close.addEventListener("click", shut);
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") shut(); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (text.length > MAX_CHARS) {
      addNote("Please keep your message under " + MAX_CHARS + " characters.", "error");
      return;
    }
    socket.send(JSON.stringify({ type: "message", text: text }));
    pending = addMessage("visitor", text);
    input.value = "";
    input.focus();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : send.click();
    }
  });
  restart.addEventListener("click", function () {
    setToken("");
    log.textContent = "";
    started = false;
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    setState("bot");
    connect();
    input.focus();
  });

  // Reconnect in the background when this tab already has a chat (e.g. after moving to another page);
  // the panel stays closed (no focus is taken) and the button shows when something new arrives.
  if (getToken()) connect();
})();
