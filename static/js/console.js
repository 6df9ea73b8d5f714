// Agent console: one websocket (/ws/console/). The state is a snapshot read from the server on connect;
// realtime events that say everything needed (new waiting work, work taken or abandoned, offers to others)
// are applied to it here, and only events about this agent's own work make it re-read the snapshot. (Every
// console re-reading on every event made one escalation cost the server a snapshot per connected agent.)
// Plain JS, no framework. Every value from the server goes into the DOM via textContent.
(function () {
  "use strict";

  var root = document.getElementById("console");
  if (!root) return;

  var HEARTBEAT_MS = 10000;
  var EVENT_DEBOUNCE_MS = 250;
  // The realtime layer is at-most-once: re-read the truth now and then anyway (jittered across consoles).
  var REFRESH_MS = window.__consoleRefreshMs || 60000; // (a browser test sets it to keep its count exact)
  var MAX_BACKOFF_MS = 30000;

  var socket = null;
  var backoff = 1000;
  var heartbeatTimer = null;
  var snapshotTimer = null;
  var tickTimer = null;
  var state = null; // the last snapshot
  var snapshotAt = 0; // Date.now() when it arrived
  var seenOffers = {};
  var drafts = {}; // escalation_id -> {disposition, notes}: kept across re-renders
  var callState = {}; // escalation_id -> {agent, customer, suggested}: from callback.call_state events
  var voicemailNodes = {}; // voicemail_id -> <li>: kept across re-renders so a playing message keeps playing

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + " min " + (s < 10 ? "0" : "") + s + " s" : s + " s";
  }

  function elapsed() { return (Date.now() - snapshotAt) / 1000; }

  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) {
      var m = Math.floor(seconds / 60) % 60;
      return Math.floor(seconds / 3600) + " h " + (m < 10 ? "0" : "") + m + " min ago";
    }
    return Math.floor(seconds / 86400) + " d ago";
  }

  function tenantOf(id) {
    return (state && state.tenants || []).filter(function (t) { return t.id === id; })[0] || {};
  }

  function announce(text) {
    var node = $("announcer");
    node.textContent = "";
    window.setTimeout(function () { node.textContent = text; }, 50);
  }

  function showError(message) {
    var box = $("console-error");
    box.textContent = message;
    box.hidden = !message;
  }

  function setConn(text, ok) {
    var node = $("conn-status");
    node.textContent = text;
    node.className = "conn " + (ok ? "ok" : "down");
  }

  // --- sending ----------------------------------------------------------------------------------
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    showError("Not connected; reconnecting. Try again in a moment.");
    return false;
  }

  function accept(id) { send({ type: "offer.accept", escalation_id: id, ref: "accept:" + id }); }

  function requestSnapshot() {
    window.clearTimeout(snapshotTimer);
    snapshotTimer = window.setTimeout(function () { send({ type: "snapshot" }); }, EVENT_DEBOUNCE_MS);
  }

  // --- rendering --------------------------------------------------------------------------------
  // A greeting may say "{agent}" where the agent's own (first) name goes.
  function greetingFor(tenant) {
    var name = ((state && state.me && state.me.name) || "").split(" ")[0] || "your name";
    return tenant.greeting.replace(/\{agent\}/g, name);
  }

  function businessBlock(item) {
    var tenant = tenantOf(item.tenant_id);
    return el("div", { className: "business" }, [
      el("p", { className: "business-name", text: item.tenant_name || tenant.name }),
      tenant.greeting ? el("p", { className: "greeting" }, [el("span", { className: "muted small", text: "Answer with: " }), "\u201c" + greetingFor(tenant) + "\u201d"]) : null,
      tenant.agent_notes ? el("p", { className: "notes small", text: tenant.agent_notes }) : null
    ]);
  }

  var CALLBACK_OUTCOMES = [
    ["reached", "Reached"], ["no_answer", "No answer"], ["voicemail", "Left a voicemail"],
    ["wrong_number", "Wrong number"], ["cancelled", "Cancelled (not needed)"]
  ];
  var LEG_TEXT = {
    ringing: "Ringing your phone\u2026", answered: "Connected", failed: "Your phone did not answer",
    busy: "Busy", unanswered: "No answer", timeout: "No answer", rejected: "Rejected", cancelled: "Cancelled",
    completed: "Call ended", started: "Dialling\u2026", machine: "Answering machine"
  };

  function callbackFacts(item) {
    var cb = item.callback;
    if (!cb) return [];
    return [
      ["Call back", (cb.name ? cb.name + " \u00b7 " : "") + cb.phone],
      ["Attempt", cb.attempt + " of " + cb.max_attempts + (cb.last_outcome ? " (last: " + cb.last_outcome.replace("_", " ") + ")" : "")],
      ["Due", new Date(cb.due_at).toLocaleString()]
    ];
  }

  function facts(item, extra) {
    var list = el("dl", { className: "work-facts" });
    var rows = [
      ["Reason", item.reason_text || item.reason_code || "\u2013"],
      ["Queue", item.queue_name],
      ["Priority", String(item.priority)],
      ["Waiting", el("span", { "data-wait-base": item.wait_seconds, text: duration(item.wait_seconds) })]
    ];
    if (item.place) rows.push(["Place in line", "#" + item.place]);
    rows = rows.concat(callbackFacts(item)).concat(extra || []);
    rows.forEach(function (row) {
      list.appendChild(el("div", {}, [el("dt", { text: row[0] }), el("dd", {}, [row[1]])]));
    });
    return list;
  }

  function renderOffers() {
    var list = $("offers");
    list.textContent = "";
    var offers = state.offers || [];
    $("offers-count").textContent = offers.length ? "(" + offers.length + ")" : "";
    $("offers-empty").hidden = offers.length > 0;
    offers.forEach(function (offer) {
      var id = offer.escalation_id;
      list.appendChild(el("li", { className: "work offer", "data-escalation-id": id }, [
        businessBlock(offer),
        facts(offer, [["Expires in", el("span", { className: "countdown", "data-expires-base": offer.expires_in_seconds, text: duration(offer.expires_in_seconds) })]]),
        el("div", { className: "actions" }, [
          el("button", { type: "button", text: "Accept", onclick: function () { accept(id); } }),
          el("button", { type: "button", className: "secondary", text: "Decline", onclick: function () { send({ type: "offer.decline", escalation_id: id }); } })
        ])
      ]));
      if (!seenOffers[id]) {
        seenOffers[id] = true;
        announce("New call offered for " + offer.tenant_name + ": " + (offer.reason_text || offer.reason_code) + ".");
      }
    });
  }

  function renderWaiting() {
    var list = $("waiting");
    list.textContent = "";
    var items = state.waiting || [];
    $("waiting-count").textContent = items.length ? "(" + items.length + ")" : "";
    $("waiting-empty").hidden = items.length > 0;
    items.forEach(function (item) {
      var id = item.escalation_id;
      list.appendChild(el("li", { className: "work priority-" + item.priority, "data-escalation-id": id }, [
        businessBlock(item),
        facts(item),
        el("div", { className: "actions" }, [
          el("button", { type: "button", className: "secondary small", text: "Take this call", onclick: function () { accept(id); } })
        ])
      ]));
    });
  }

  // --- voicemails: oldest first; each row is kept (not rebuilt) while its content is unchanged -------
  function voicemailSignature(item) {
    return [item.tenant_name, item.caller_number, item.duration_seconds, item.transcript_excerpt].join("\u0001");
  }

  function voicemailNode(item) {
    var id = item.voicemail_id;
    var facts = el("dl", { className: "work-facts" }, [
      el("div", {}, [el("dt", { text: "Caller" }), el("dd", { text: item.caller_number })]),
      el("div", {}, [el("dt", { text: "Length" }), el("dd", { text: item.duration_seconds === null ? "\u2013" : duration(item.duration_seconds) })]),
      el("div", {}, [el("dt", { text: "Received" }), el("dd", {}, [el("span", { "data-age-base": item.age_seconds, title: item.created_at, text: ago(item.age_seconds) })])])
    ]);
    var node = el("li", { className: "work voicemail console-voicemail", "data-voicemail-id": id }, [
      el("div", { className: "business" }, [
        el("p", { className: "business-name", text: item.tenant_name }),
        el("p", { className: "transcript-excerpt" + (item.transcript_excerpt ? "" : " muted"), text: item.transcript_excerpt ? "\u201c" + item.transcript_excerpt + "\u201d" : "No transcript (yet)." })
      ]),
      facts,
      el("div", { className: "actions" }, [
        el("button", { type: "button", className: "secondary small", text: "Mark handled", onclick: function () { send({ type: "voicemail.handle", voicemail_id: id }); } }),
        item.can_call_back ? el("button", { type: "button", className: "small", text: "Call back", onclick: function () { send({ type: "voicemail.callback", voicemail_id: id }); } }) : el("span", { className: "muted small", text: "Number withheld" }),
        el("a", { className: "small", href: item.page_url, target: "_blank", rel: "noopener", text: "Open" })
      ]),
      el("div", { className: "player" }, [
        el("audio", { controls: true, preload: "none", src: item.recording_url, "aria-label": "Voicemail from " + item.caller_number + " for " + item.tenant_name })
      ])
    ]);
    node._signature = voicemailSignature(item);
    return node;
  }

  function renderVoicemails() {
    var list = $("voicemails");
    var items = state.voicemails || [];
    var total = state.voicemails_total || items.length;
    $("voicemails-count").textContent = total ? "(" + total + ")" : "";
    $("voicemails-empty").hidden = items.length > 0;
    var more = $("voicemails-more");
    more.hidden = total <= items.length;
    more.textContent = total > items.length ? "Showing the oldest " + items.length + " of " + total + "; the rest are on each business's voicemails page." : "";
    var keep = {};
    items.forEach(function (item, index) {
      var id = item.voicemail_id;
      var old = voicemailNodes[id];
      var node = old;
      if (old && old._signature !== voicemailSignature(item)) {
        var audio = old.querySelector("audio");
        if (!audio || audio.paused) node = null; // rebuild, unless someone is listening right now
      }
      if (!node) {
        node = voicemailNode(item);
        if (old && old.parentNode) old.parentNode.replaceChild(node, old);
      }
      var age = node.querySelector("[data-age-base]");
      if (age) { age.setAttribute("data-age-base", item.age_seconds); age.textContent = ago(item.age_seconds); }
      if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
      voicemailNodes[id] = node;
      keep[id] = true;
    });
    Object.keys(voicemailNodes).forEach(function (id) {
      if (!keep[id]) {
        var gone = voicemailNodes[id];
        if (gone.parentNode) gone.parentNode.removeChild(gone);
        delete voicemailNodes[id];
      }
    });
  }

  function keyValues(obj) {
    var keys = Object.keys(obj || {}).filter(function (k) { return obj[k] !== null && obj[k] !== ""; });
    if (!keys.length) return el("p", { className: "muted small", text: "None captured." });
    var list = el("dl", { className: "kv" });
    keys.forEach(function (k) {
      var v = obj[k];
      list.appendChild(el("div", {}, [el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
    });
    return list;
  }

  function activeCard(item) {
    var id = item.escalation_id;
    var tenant = tenantOf(item.tenant_id);
    var draft = drafts[id] || (drafts[id] = { disposition: "resolved", notes: "" });
    var summary = item.summary || {};

    var transcript = el("ol", { className: "transcript" });
    var chat = item.channel === "chat";
    (item.transcript || []).forEach(function (turn) {
      if (turn.caller) transcript.appendChild(el("li", { className: "caller" }, [el("span", { className: "who", text: chat ? "Visitor" : "Caller" }), turn.caller]));
      if (turn.reply) {
        var agentLine = turn.event === "agent";
        transcript.appendChild(el("li", { className: agentLine ? "agent" : "ai" }, [el("span", { className: "who", text: agentLine ? "Agent" : "AI" }), turn.reply]));
      }
    });
    if (!transcript.children.length) transcript.appendChild(el("li", { className: "muted", text: "No transcript yet." }));

    var leadFields = {};
    (item.leads || []).forEach(function (lead) {
      ["name", "phone", "email"].forEach(function (k) { if (lead[k]) leadFields[k] = lead[k]; });
      Object.keys(lead.fields || {}).forEach(function (k) { leadFields[k] = lead.fields[k]; });
    });

    var select = el("select", { id: "disp-" + id, name: "disposition", required: true });
    select.innerHTML = $("disposition-options").innerHTML; // static, server-rendered options
    select.value = draft.disposition;
    select.addEventListener("change", function () { draft.disposition = select.value; });
    var notes = el("textarea", { id: "notes-" + id, name: "notes", rows: "3", maxlength: "5000" });
    notes.value = draft.notes;
    notes.addEventListener("input", function () { draft.notes = notes.value; });

    var wrapForm = el("form", { className: "wrap-form", onsubmit: function (e) {
      e.preventDefault();
      send({ type: "escalation.wrap", escalation_id: id, disposition: select.value, notes: notes.value });
    } }, [
      el("h4", { text: "Wrap up" }),
      el("div", { className: "form-row" }, [el("label", { "for": "disp-" + id, text: "Outcome" }), select]),
      el("div", { className: "form-row" }, [el("label", { "for": "notes-" + id }, ["Notes ", el("span", { className: "optional muted", text: "(optional)" })]), notes]),
      el("button", { type: "submit", text: "Wrap up" })
    ]);

    if (item.callback) wrapForm = callbackControls(item, draft);

    // Web chat: the agent answers the visitor from here; their messages arrive as chat.message events.
    var chatForm = null;
    if (chat) {
      var chatInput = el("input", { type: "text", id: "chat-" + id, name: "text", maxlength: "1000", autocomplete: "off", "aria-label": "Message to the visitor" });
      chatForm = el("form", { className: "inline-form chat-form", onsubmit: function (e) {
        e.preventDefault();
        var text = chatInput.value.trim();
        if (!text) return;
        send({ type: "chat.send", escalation_id: id, text: text });
        chatInput.value = "";
      } }, [chatInput, el("button", { type: "submit", className: "small", text: "Send" })]);
    }

    var otherQueues = (tenant.queues || []).filter(function (q) { return q.id !== item.queue_id; });
    var transferForm = null;
    if (otherQueues.length) {
      var qs = el("select", { id: "xfer-" + id, name: "queue_id" }, otherQueues.map(function (q) { return el("option", { value: q.id, text: q.name }); }));
      transferForm = el("form", { className: "inline-form transfer-form", onsubmit: function (e) {
        e.preventDefault();
        send({ type: "escalation.transfer", escalation_id: id, queue_id: parseInt(qs.value, 10) });
      } }, [el("label", { "for": "xfer-" + id, text: "Transfer to" }), qs, el("button", { type: "submit", className: "secondary small", text: "Transfer" })]);
    }

    return el("article", { className: "active-call", "data-escalation-id": id, "aria-label": "Call for " + item.tenant_name }, [
      businessBlock(item),
      facts(item, [["Caller", item.caller_number || "unknown"], ["Channel", item.channel || ""]]),
      el("div", { className: "call-grid" }, [
        el("section", {}, [el("h4", { text: "Transcript" }), transcript, chatForm]),
        el("section", {}, [
          el("h4", { text: "AI summary" }),
          el("p", { text: (summary.reason_text || "") + (summary.reason_code ? " (" + summary.reason_code + ")" : "") }),
          summary.intent_path && summary.intent_path.length ? el("p", {}, [el("span", { className: "muted small", text: "Caller wanted: " }), summary.intent_path.join(" \u203a ")]) : null,
          el("h5", { text: "Details" }), keyValues(summary.slots),
          summary.last_utterances && summary.last_utterances.length ? el("div", {}, [el("h5", { text: "Last said" }), el("ul", { className: "plain small" }, summary.last_utterances.map(function (u) { return el("li", { text: "\u201c" + u + "\u201d" }); }))]) : null,
          el("h5", { text: "Lead" }), keyValues(leadFields)
        ])
      ]),
      wrapForm,
      transferForm
    ]);
  }

  // A callback: "Call back" rings the agent's phone, then the customer; the outcome closes or reschedules it.
  function callbackControls(item, draft) {
    var id = item.escalation_id;
    var cb = item.callback;
    var live = callState[id] || {};
    var agentLeg = live.agent || cb.agent_leg;
    var customerLeg = live.customer || cb.customer_leg;
    if (!draft.outcome) draft.outcome = live.suggested || (customerLeg === "answered" ? "reached" : "");
    var status = el("p", { className: "call-state", role: "status" }, [
      el("span", { className: "muted small", text: "Your phone: " }), LEG_TEXT[agentLeg] || "not rung yet",
      el("span", { className: "muted small", text: " \u00b7 Customer: " }), LEG_TEXT[customerLeg] || "not dialled yet"
    ]);
    var dial = el("button", { type: "button", text: agentLeg === "failed" ? "Ring me again" : "Call back " + cb.phone,
      disabled: !(cb.can_dial || agentLeg === "failed"),
      onclick: function () { send({ type: "callback.dial", escalation_id: id }); } });
    var outcome = el("select", { id: "cb-outcome-" + id, name: "outcome", required: true },
      [el("option", { value: "", text: "Choose\u2026" })].concat(CALLBACK_OUTCOMES.map(function (o) { return el("option", { value: o[0], text: o[1] }); })));
    outcome.value = draft.outcome || "";
    outcome.addEventListener("change", function () { draft.outcome = outcome.value; });
    var notes = el("textarea", { id: "notes-" + id, name: "notes", rows: "2", maxlength: "5000" });
    notes.value = draft.notes;
    notes.addEventListener("input", function () { draft.notes = notes.value; });
    var retries = cb.max_attempts - cb.attempt;
    return el("form", { className: "wrap-form callback-form", onsubmit: function (e) {
      e.preventDefault();
      if (!outcome.value) { showError("Choose how the callback went."); outcome.focus(); return; }
      send({ type: "callback.finish", escalation_id: id, outcome: outcome.value, notes: notes.value });
    } }, [
      el("h4", { text: "Callback" }), status, el("div", { className: "actions" }, [dial]),
      el("div", { className: "form-row" }, [el("label", { "for": "cb-outcome-" + id, text: "How did it go?" }), outcome]),
      el("p", { className: "muted small", text: retries > 0 ? "No answer or voicemail: we try again later (" + retries + " more attempt" + (retries === 1 ? "" : "s") + ")." : "This is the last attempt." }),
      el("div", { className: "form-row" }, [el("label", { "for": "notes-" + id }, ["Notes ", el("span", { className: "optional muted", text: "(optional)" })]), notes]),
      el("button", { type: "submit", text: "Finish callback" })
    ]);
  }

  function renderActive() {
    var box = $("active");
    var focusedId = document.activeElement && document.activeElement.id;
    box.textContent = "";
    var items = state.active || [];
    $("active-empty").hidden = items.length > 0;
    items.forEach(function (item) { box.appendChild(activeCard(item)); });
    if (focusedId && $(focusedId)) $(focusedId).focus();
  }

  // The agent's own choice wins over a snapshot read before the server took it (a snapshot already on its
  // way when they clicked would put the old state back) until the server answers the change.
  var pendingPresence = null;

  function renderPresence() {
    var shown = pendingPresence || (state.presence || {}).state;
    var radios = document.querySelectorAll("#presence-form input[name=state]");
    Array.prototype.forEach.call(radios, function (r) { r.checked = r.value === shown; });
  }

  function render() {
    if (!state) return;
    renderPresence();
    renderOffers();
    renderActive();
    renderWaiting();
    renderVoicemails();
  }

  function tick() {
    if (!state) return;
    var dt = elapsed();
    Array.prototype.forEach.call(document.querySelectorAll("[data-wait-base]"), function (node) {
      node.textContent = duration(parseFloat(node.getAttribute("data-wait-base")) + dt);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-age-base]"), function (node) {
      node.textContent = ago(parseFloat(node.getAttribute("data-age-base")) + dt);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-expires-base]"), function (node) {
      var left = parseFloat(node.getAttribute("data-expires-base")) - dt;
      node.textContent = left > 0 ? duration(left) : "expired";
    });
  }

  // --- applying events to the snapshot ---------------------------------------------------------------
  function seconds(fromIso, toIso) { return (Date.parse(toIso) - Date.parse(fromIso)) / 1000; }

  // Places in line, per queue, in the order work is served: higher priority, then longest waiting.
  function reorder() {
    state.waiting.sort(function (a, b) {
      return (b.priority - a.priority) || (Date.parse(a.waiting_since) - Date.parse(b.waiting_since)) || (a.escalation_id - b.escalation_id);
    });
    var counts = {}, placeOf = {};
    state.waiting.forEach(function (item) {
      counts[item.queue_id] = (counts[item.queue_id] || 0) + 1;
      item.place = placeOf[item.escalation_id] = counts[item.queue_id];
    });
    (state.offers || []).forEach(function (offer) { offer.place = placeOf[offer.escalation_id] || null; });
  }

  function dropWork(id) {
    state.waiting = (state.waiting || []).filter(function (item) { return item.escalation_id !== id; });
    state.offers = (state.offers || []).filter(function (item) { return item.escalation_id !== id; });
    reorder();
  }

  function isMine(id) {
    return (state.active || []).some(function (item) { return item.escalation_id === id; });
  }

  // True when the event was applied here; false when only a fresh snapshot can show it.
  function applyEvent(message) {
    if (!state || !state.me) return false;
    var me = state.me.user_id, id = message.escalation_id;
    switch (message.type) {
      case "escalation.waiting": {
        var item = message.item;
        if (!item || !tenantOf(item.tenant_id).id) return false; // a business this snapshot does not know yet
        dropWork(id);
        item = JSON.parse(JSON.stringify(item));
        // Waiting times tick from the snapshot's clock (see tick()): base them on the snapshot's "now".
        item.wait_seconds = seconds(item.waiting_since, state.now);
        state.waiting.push(item);
        reorder();
        return true;
      }
      case "escalation.offered":
        if (message.agent_id === me) return false; // my offer: its countdown and details come with the snapshot
        (state.waiting || []).forEach(function (w) { if (w.escalation_id === id) w.state = "offered"; });
        return true;
      case "escalation.accepted":
      case "escalation.wrapped":
        if (message.agent_id === me || isMine(id)) return false;
        dropWork(id);
        return true;
      case "escalation.withdrawn":
        if (isMine(id)) return false;
        if (message.reason === "taken" || message.reason === "abandoned") { dropWork(id); return true; }
        return false; // still unclaimed (an offer timed out, moved queue...): only a snapshot says where it is
      case "presence.changed":
        // Others' presence is not shown here; this agent's own (set here, by a missed offer, by a lost
        // connection) is what the switch shows.
        if (message.user_id === me) state.presence = { state: message.state, reason: message.reason, since: message.since };
        return true;
    }
    return false;
  }

  // --- receiving --------------------------------------------------------------------------------
  function onMessage(message) {
    switch (message.type) {
      case "snapshot":
        state = message;
        snapshotAt = Date.now();
        render();
        break;
      case "ok":
        showError("");
        if (message.action === "presence.set") pendingPresence = null;
        if (message.action === "offer.accept") announce("Call accepted.");
        if (message.action === "escalation.wrap") { delete drafts[message.escalation_id]; announce("Call wrapped up."); }
        if (message.action === "voicemail.handle") announce("Voicemail marked handled.");
        if (message.action === "voicemail.callback") announce("Call back scheduled; the voicemail is handled.");
        if (message.action === "callback.dial") announce("Ringing your phone; the customer is dialled when you answer.");
        if (message.action === "callback.finish") {
          delete drafts[message.escalation_id]; delete callState[message.escalation_id];
          announce(message.callback_state === "scheduled" ? "Callback rescheduled for " + new Date(message.due_at).toLocaleString() + "." : "Callback finished.");
        }
        break;
      case "error":
        if (message.ref === "presence") { pendingPresence = null; requestSnapshot(); }
        if (message.code === "already_taken") {
          // Someone else took it: take it off the lists here (the winner's events say the same).
          var taken = /^accept:(\d+)$/.exec(String(message.ref || ""));
          if (taken && state) { dropWork(parseInt(taken[1], 10)); render(); } else requestSnapshot();
        }
        showError(message.message || "Something went wrong.");
        announce(message.message || "Error");
        break;
      default:
        // Realtime notifications: applied here when they say everything needed, else re-read the truth.
        if (message.type === "escalation.offered" && state && message.agent_id === state.me.user_id) {
          announce("New call offered.");
        }
        if (message.type === "chat.message") announce("New chat message.");
        if (message.type === "callback.call_state") {
          var cs = callState[message.escalation_id] || (callState[message.escalation_id] = {});
          cs[message.leg] = message.status;
          if (message.suggested_outcome) cs.suggested = message.suggested_outcome;
          announce((message.leg === "agent" ? "Your phone: " : "Customer: ") + (LEG_TEXT[message.status] || message.status) + ".");
        }
        if (message.type === "voicemail.new") announce("New voicemail" + (message.caller_number ? " from " + message.caller_number : "") + ".");
        if (applyEvent(message)) render();
        else requestSnapshot();
    }
  }

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.getAttribute("data-ws-path");
  }

  function connect() {
    setConn("Connecting\u2026", false);
    socket = new WebSocket(wsUrl());
    socket.addEventListener("open", function () {
      backoff = 1000;
      setConn("Connected", true);
      // A presence change made while the socket was down is sent now (it never reached the server).
      if (pendingPresence) send({ type: "presence.set", state: pendingPresence, reason: "", ref: "presence" });
      // The server sends a snapshot on connect; ask again anyway so nothing missed offline is lost.
      send({ type: "snapshot" });
      send({ type: "heartbeat" });
      window.clearInterval(heartbeatTimer);
      heartbeatTimer = window.setInterval(function () { send({ type: "heartbeat" }); }, HEARTBEAT_MS);
    });
    socket.addEventListener("message", function (e) {
      try { onMessage(JSON.parse(e.data)); } catch (err) { /* ignore malformed frames */ }
    });
    socket.addEventListener("close", function (e) {
      window.clearInterval(heartbeatTimer);
      if (e.code === 4401 || e.code === 4403) {
        setConn("Signed out or no access. Reload the page to sign in again.", false);
        return;
      }
      var wait = backoff + Math.floor(Math.random() * 500);
      setConn("Disconnected; reconnecting in " + Math.round(wait / 1000) + " s\u2026", false);
      window.setTimeout(connect, wait);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    });
  }

  $("presence-form").addEventListener("change", function (e) {
    if (e.target && e.target.name === "state") {
      pendingPresence = e.target.value;
      if (send({ type: "presence.set", state: e.target.value, reason: "", ref: "presence" })) showError("");
      else showError("Not connected; your status will be set when the console reconnects.");
    }
  });

  tickTimer = window.setInterval(tick, 1000);
  window.setTimeout(function refresh() {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "snapshot" }));
    window.setTimeout(refresh, REFRESH_MS * (0.75 + Math.random() / 2));
  }, REFRESH_MS * (0.5 + Math.random()));
  connect();
})();
