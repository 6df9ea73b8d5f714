/* Phone simulator (templates/telephony/phone_simulator.html).
 *
 * Every step goes to the page's relay (telephony/pages.py), which signs it and sends it through the
 * same Vonage webhook views a real call uses. This script only draws the conversation, listens to the
 * microphone (Web Speech API, when the browser has it) and reads the AI's words aloud (speechSynthesis).
 * No libraries, no network access other than the relay.
 */
(function () {
  "use strict";

  var root = document.getElementById("phone-simulator");
  if (!root) return;

  var relayUrl = root.getAttribute("data-relay-url");
  var csrfInput = root.querySelector("input[name=csrfmiddlewaretoken]");
  var csrfToken = csrfInput ? csrfInput.value : "";
  var $ = function (id) { return document.getElementById(id); };

  var callForm = $("call-form"), callButton = $("call-button"), hangupButton = $("hangup-button");
  var numberSelect = $("call-number"), fromInput = $("call-from");
  var stateBadge = $("call-state"), transcript = $("transcript"), errorBox = $("relay-error");
  var sayForm = $("say-form"), sayText = $("say-text"), sayButton = $("say-button");
  var speakButton = $("speak-button"), silenceButton = $("silence-button"), speechHelp = $("speech-help");
  var keysBuffer = $("keys-buffer"), keypadButtons = root.querySelectorAll("[data-key]");
  var speakReplies = $("speak-replies"), voiceHelp = $("voice-help");

  var STATE_LABELS = {
    idle: "No call", ringing: "Calling…", listening: "Listening to you", on_hold: "On hold for an agent",
    voicemail: "Recording a voicemail", transferred: "Transferred", ended: "The AI hung up",
    completed: "Call ended", error: "Error"
  };

  var call = { state: "idle", listening: false, active: false };
  var busy = false;
  var lastInput = null; // the last NCCO's input action: speech language, maxDigits
  var keys = "", keysTimer = null;

  // ------------------------------------------------------------ relay

  function post(payload) {
    busy = true;
    refresh();
    hideError();
    return fetch(relayUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken, "Accept": "application/json" },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().catch(function () {
        return { error: "The server answered " + response.status + " without details." };
      }).then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      var data = result.data || {};
      if (data.turn) addTurn(data.turn, payload);
      if (data.call) setCall(data.call);
      if (!result.ok) showError(data.error || "Something went wrong.");
      return data;
    }).catch(function () {
      showError("Could not reach Switchboard. Check your connection and try again.");
    }).then(function (data) {
      busy = false;
      refresh();
      return data;
    });
  }

  function setCall(next) {
    call = next;
    if (!call.listening) lastInput = null;
    refresh();
  }

  // ------------------------------------------------------------ drawing

  function refresh() {
    var label = busy && call.state === "idle" ? STATE_LABELS.ringing : (STATE_LABELS[call.state] || call.state);
    stateBadge.textContent = label;
    stateBadge.className = "badge " + call.state;
    var canTalk = call.listening && !busy;
    callButton.disabled = busy;
    callButton.textContent = call.active ? "Call again" : "Call";
    hangupButton.disabled = busy || !call.active;
    sayText.disabled = !call.listening;
    sayButton.disabled = !canTalk;
    silenceButton.disabled = !canTalk;
    speakButton.disabled = !canTalk || !Recognition;
    for (var i = 0; i < keypadButtons.length; i++) keypadButtons[i].disabled = !canTalk;
    root.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function line(who, text, className) {
    var p = el("p", className || "");
    p.appendChild(el("span", "who", who + ":"));
    p.appendChild(document.createTextNode(text));
    return p;
  }

  function addTurn(turn, payload) {
    var empty = $("transcript-empty");
    if (empty) empty.remove();
    var item = el("li");
    if (turn.kind === "answer") {
      item.appendChild(el("p", "meta", "Call to " + (call.to || payload.to || "") + " answered"));
    } else {
      item.appendChild(line("Caller", turn.caller));
    }
    item.appendChild(line("AI", turn.ai || "(says nothing)", "ai-line"));
    (turn.notes || []).forEach(function (note) { item.appendChild(el("p", "note", note)); });
    if (turn.invalid) item.appendChild(el("p", "invalid", "Invalid NCCO: " + turn.invalid));
    var details = el("details");
    details.appendChild(el("summary", "small", "NCCO (" + Math.round(turn.latency_ms) + " ms)"));
    details.appendChild(el("pre", "", JSON.stringify(turn.ncco, null, 2)));
    item.appendChild(details);
    transcript.appendChild(item);
    transcript.scrollTop = transcript.scrollHeight;

    var inputs = (turn.ncco || []).filter(function (a) { return a && a.action === "input"; });
    lastInput = inputs.length ? inputs[inputs.length - 1] : null;
    speak(turn);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function hideError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  // ------------------------------------------------------------ the caller's actions

  callForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;
    clearKeys();
    transcript.textContent = "";
    post({ action: "call", number: numberSelect.value, from: fromInput.value }).then(function () {
      if (call.listening) sayText.focus();
    });
  });

  hangupButton.addEventListener("click", function () {
    if (busy) return;
    clearKeys();
    stopSpeaking();
    post({ action: "hangup" }).then(function () { callButton.focus(); });
  });

  sayForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = sayText.value.trim();
    if (!text || busy || !call.listening) return;
    sendSpeech(text, 0.93);
  });

  function sendSpeech(text, confidence) {
    stopSpeaking();
    post({ action: "say", text: text, confidence: confidence }).then(function (data) {
      if (data && !data.error) sayText.value = "";
      if (call.listening) sayText.focus();
    });
  }

  silenceButton.addEventListener("click", function () {
    if (busy) return;
    stopSpeaking();
    post({ action: "silence" });
  });

  // Keypad: digits collect like on a phone and go out on #, at maxDigits, or after a pause.
  function maxDigits() {
    return lastInput && lastInput.dtmf && lastInput.dtmf.maxDigits ? lastInput.dtmf.maxDigits : 1;
  }

  function clearKeys() {
    keys = "";
    keysBuffer.textContent = "";
    if (keysTimer) clearTimeout(keysTimer);
    keysTimer = null;
  }

  function sendKeys() {
    var digits = keys;
    clearKeys();
    if (!digits || busy || !call.listening) return;
    stopSpeaking();
    post({ action: "press", digits: digits });
  }

  function pressKey(key) {
    if (busy || !call.listening) return;
    if (key === "#" && keys) { sendKeys(); return; }
    keys += key;
    keysBuffer.textContent = "Keys: " + keys;
    if (keysTimer) clearTimeout(keysTimer);
    if (keys.length >= maxDigits()) { sendKeys(); return; }
    keysTimer = setTimeout(sendKeys, 2000);
  }

  for (var k = 0; k < keypadButtons.length; k++) {
    keypadButtons[k].addEventListener("click", function (event) {
      pressKey(event.currentTarget.getAttribute("data-key"));
    });
  }

  // ------------------------------------------------------------ microphone (Web Speech API)

  var Recognition = window.SpeechRecognition || window.webkitSpeechRecognition || null;
  var recognizer = null;
  if (!Recognition) {
    speechHelp.textContent = "This browser cannot recognise speech: type what the caller says instead.";
  } else {
    speechHelp.textContent = "Speak sends what your browser heard, with its confidence, as the caller's words.";
  }

  speakButton.addEventListener("click", function () {
    if (!Recognition || busy || !call.listening) return;
    if (recognizer) { recognizer.stop(); return; }
    stopSpeaking();
    recognizer = new Recognition();
    recognizer.lang = (lastInput && lastInput.speech && lastInput.speech.language) || document.documentElement.lang || "en-US";
    recognizer.interimResults = false;
    recognizer.maxAlternatives = 1;
    speakButton.setAttribute("aria-pressed", "true");
    speakButton.textContent = "Stop listening";
    speechHelp.textContent = "Listening… speak now.";
    var heard = false;
    recognizer.onresult = function (event) {
      var best = event.results[0] && event.results[0][0];
      if (!best || !best.transcript.trim()) return;
      heard = true;
      sayText.value = best.transcript;
      var confidence = typeof best.confidence === "number" && best.confidence > 0 ? best.confidence : 0.93;
      sendSpeech(best.transcript, confidence);
    };
    recognizer.onerror = function (event) {
      var reasons = {
        "not-allowed": "The browser did not allow the microphone: type what the caller says instead.",
        "service-not-allowed": "Speech recognition is not allowed here: type what the caller says instead.",
        "no-speech": "No speech heard. Press Speak and try again, or use Silence.",
        "audio-capture": "No microphone found: type what the caller says instead.",
        "network": "Speech recognition needs a network connection in this browser: type instead."
      };
      speechHelp.textContent = reasons[event.error] || "Speech recognition failed (" + event.error + "): type instead.";
    };
    recognizer.onend = function () {
      recognizer = null;
      speakButton.setAttribute("aria-pressed", "false");
      speakButton.textContent = "Speak";
      if (heard) speechHelp.textContent = "Speak sends what your browser heard, with its confidence, as the caller's words.";
    };
    try {
      recognizer.start();
    } catch (err) {
      recognizer = null;
      speechHelp.textContent = "Speech recognition could not start: type what the caller says instead.";
    }
  });

  // ------------------------------------------------------------ reading the AI's words aloud

  var synth = window.speechSynthesis || null;
  var SPEAK_KEY = "switchboard.phoneSimulator.speak";
  if (!synth || typeof window.SpeechSynthesisUtterance === "undefined") {
    speakReplies.disabled = true;
    voiceHelp.textContent = "This browser cannot read text aloud.";
  } else {
    try { speakReplies.checked = window.localStorage.getItem(SPEAK_KEY) === "1"; } catch (err) { /* private mode */ }
    speakReplies.addEventListener("change", function () {
      try { window.localStorage.setItem(SPEAK_KEY, speakReplies.checked ? "1" : "0"); } catch (err) { /* ignore */ }
      if (!speakReplies.checked) stopSpeaking();
    });
  }

  function stopSpeaking() {
    if (synth) synth.cancel();
  }

  function speak(turn) {
    if (!synth || !speakReplies.checked) return;
    stopSpeaking();
    (turn.ncco || []).forEach(function (action) {
      if (!action || action.action !== "talk" || !action.text) return;
      var utterance = new window.SpeechSynthesisUtterance(action.text);
      utterance.lang = action.language || "en-US";
      synth.speak(utterance);
    });
  }

  // ------------------------------------------------------------ a call already in progress (page reload)

  var saved = null;
  try { saved = JSON.parse(($("phone-simulator-call") || {}).textContent || "null"); } catch (err) { saved = null; }
  if (saved && saved.active) {
    setCall(saved);
    var empty = $("transcript-empty");
    if (empty) {
      empty.textContent = "A simulated call to " + saved.to + " is still in progress. Keep talking, or hang up.";
    }
    if (saved.listening) lastInput = { dtmf: { maxDigits: 1 } };
  }
  refresh();
})();
