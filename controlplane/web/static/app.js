// Tollgate console: the little the pages need beyond HTML. Everything works
// without it except copying and the charts (whose figures are also in the
// pages' tables).
"use strict";

(function () {
  // Copy buttons: <button data-copy="id-of-input">.
  document.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-copy]");
    if (!b) return;
    var input = document.getElementById(b.getAttribute("data-copy"));
    var status = b.parentElement.querySelector(".copy-status");
    var done = function (msg) { if (status) status.textContent = msg; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done("Copied"); }, function () {
        input.select(); done("Select and copy it with Ctrl+C");
      });
    } else {
      input.select(); done("Select and copy it with Ctrl+C");
    }
  });

  // Confirmations: <form data-confirm="question">.
  document.addEventListener("submit", function (e) {
    var q = e.target.getAttribute("data-confirm");
    if (q && !window.confirm(q)) e.preventDefault();
  });

  // Charts: <div data-chart='{"title","unit","x":[unix s],"series":[{label,values}]}'>.
  var palette = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#be123c", "#0e7490", "#4d7c0f", "#a16207"];
  function fmt(unit, v) {
    if (v == null) return "";
    if (unit === "usd") return "$" + (v === 0 ? "0" : v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : Number(v.toPrecision(2)).toString());
    if (unit === "ms") return Math.round(v) + " ms";
    if (unit === "pct") return v.toFixed(1) + "%";
    return v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e3 ? (v / 1e3).toFixed(1) + "k" : String(Math.round(v));
  }
  function draw(el) {
    var c;
    try { c = JSON.parse(el.getAttribute("data-chart")); } catch (err) { return; }
    if (!window.uPlot || !c.x) return;
    var series = [{}];
    var data = [c.x];
    c.series.forEach(function (s, i) {
      var col = palette[i % palette.length];
      series.push({ label: s.label, stroke: col, fill: c.series.length === 1 ? col + "22" : undefined, width: 2,
        value: function (u, v) { return fmt(c.unit, v); } });
      data.push(s.values);
    });
    var width = Math.max(280, el.clientWidth);
    var y = { values: function (u, vals) { return vals.map(function (v) { return fmt(c.unit, v); }); }, size: 72 };
    // Counts have whole ticks: one request is not 0.2, 0.4, 0.6 of one.
    if (c.unit === "count") y.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];
    var plot = new uPlot({
      width: width, height: 220, series: series, axes: [{}, y],
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      legend: { show: true }, cursor: { drag: { x: false, y: false } }
    }, data, el);
    el.setAttribute("data-drawn", String(c.series.length));
    if (window.ResizeObserver) {
      new ResizeObserver(function () { plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }); }).observe(el);
    }
  }
  function drawAll() { document.querySelectorAll("[data-chart]").forEach(draw); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll); else drawAll();
})();
