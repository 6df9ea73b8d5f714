/* Report charts: small SVG bar and line charts drawn from the page's JSON (#report-data).
   No library: each chart is an <svg> built here, with a <title> on every mark for a hover label,
   and the same figures are in the tables on the page (the accessible version). */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = { voice: "#2563eb", chat: "#12b76a", containment: "#7a5af8", service_level: "#f79009" };
  var W = 640, H = 240, PAD = { top: 12, right: 12, bottom: 28, left: 40 };

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var m = Math.ceil(value / step);
    return (m <= 2 ? 2 : m <= 5 ? 5 : 10) * step;
  }

  function frame(figure, labels, max, unit) {
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    var plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
    var grid = el("g", { "class": "grid" }, svg), axis = el("g", { "class": "axis" }, svg);
    for (var i = 0; i <= 4; i++) {
      var y = PAD.top + plotH - (plotH * i) / 4;
      el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }, grid);
      var t = el("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, axis);
      t.textContent = Math.round((max * i) / 4) + (unit || "");
    }
    var every = Math.max(1, Math.ceil(labels.length / 10));
    labels.forEach(function (label, n) {
      if (n % every) return;
      var x = PAD.left + (plotW * (n + 0.5)) / labels.length;
      var t = el("text", { x: x, y: H - 8, "text-anchor": "middle" }, axis);
      t.textContent = label;
    });
    figure.appendChild(svg);
    return { svg: svg, plotW: plotW, plotH: plotH };
  }

  function legend(figure, series) {
    var box = document.createElement("div");
    box.className = "legend";
    series.forEach(function (s) {
      var item = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      box.appendChild(item);
    });
    figure.appendChild(box);
  }

  function empty(figure, text) {
    var p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    figure.appendChild(p);
  }

  // Stacked bars: series = [{name, color, values: [..]}], one bar per label.
  function stackedBars(figure, labels, series, fullLabels) {
    var totals = labels.map(function (_, i) {
      return series.reduce(function (sum, s) { return sum + (s.values[i] || 0); }, 0);
    });
    if (!totals.some(function (v) { return v > 0; })) return empty(figure, "No contacts in this period.");
    var max = niceMax(Math.max.apply(null, totals));
    var f = frame(figure, labels, max, "");
    var slot = f.plotW / labels.length, bar = Math.max(2, slot * 0.7);
    labels.forEach(function (_, i) {
      var y = PAD.top + f.plotH;
      series.forEach(function (s) {
        var v = s.values[i] || 0;
        if (!v) return;
        var h = (f.plotH * v) / max;
        y -= h;
        var rect = el("rect", { x: PAD.left + slot * i + (slot - bar) / 2, y: y, width: bar, height: h, fill: s.color }, f.svg);
        el("title", {}, rect).textContent = (fullLabels || labels)[i] + ": " + v + " " + s.name.toLowerCase();
      });
    });
    legend(figure, series);
  }

  // Lines of percentages (null = no data that day: the line breaks there).
  function percentLines(figure, labels, series, fullLabels) {
    if (!series.some(function (s) { return s.values.some(function (v) { return v !== null; }); })) {
      return empty(figure, "Nothing to show yet for this period.");
    }
    var f = frame(figure, labels, 100, "%");
    var x = function (i) { return PAD.left + (f.plotW * (i + 0.5)) / labels.length; };
    var y = function (v) { return PAD.top + f.plotH - (f.plotH * v) / 100; };
    series.forEach(function (s) {
      var d = "", pen = false;
      s.values.forEach(function (v, i) {
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
        var dot = el("circle", { cx: x(i), cy: y(v), r: 3, fill: s.color }, f.svg);
        el("title", {}, dot).textContent = (fullLabels || labels)[i] + ": " + s.name + " " + v + "%";
      });
      el("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 2 }, f.svg);
    });
    legend(figure, series);
  }

  function shortDay(iso) {
    var parts = iso.split("-");
    return parseInt(parts[1], 10) + "/" + parseInt(parts[2], 10);
  }

  function draw() {
    var source = document.getElementById("report-data");
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var days = data.days || [], hours = data.hours || [];
    document.querySelectorAll("figure.chart").forEach(function (figure) {
      figure.textContent = "";
      var kind = figure.getAttribute("data-chart");
      if (kind === "contacts-per-day") {
        stackedBars(figure, days.map(function (d) { return shortDay(d.day); }), [
          { name: "Calls", color: COLORS.voice, values: days.map(function (d) { return d.voice; }) },
          { name: "Chats", color: COLORS.chat, values: days.map(function (d) { return d.chat; }) },
        ], days.map(function (d) { return d.day; }));
      } else if (kind === "rates-per-day") {
        percentLines(figure, days.map(function (d) { return shortDay(d.day); }), [
          { name: "AI containment", color: COLORS.containment, values: days.map(function (d) { return d.containment; }) },
          { name: "Service level", color: COLORS.service_level, values: days.map(function (d) { return d.service_level; }) },
        ], days.map(function (d) { return d.day; }));
      } else if (kind === "contacts-per-hour") {
        stackedBars(figure, hours.map(function (h) { return String(h.hour); }), [
          { name: "Calls", color: COLORS.voice, values: hours.map(function (h) { return h.voice; }) },
          { name: "Chats", color: COLORS.chat, values: hours.map(function (h) { return h.chat; }) },
        ], hours.map(function (h) { return h.hour + ":00"; }));
      }
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
