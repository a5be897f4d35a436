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
    if (unit === "usd") return "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4));
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
    var plot = new uPlot({
      width: width, height: 220, series: series,
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(c.unit, v); }); }, size: 60 }],
      scales: { x: { time: true } }, legend: { show: true }, cursor: { drag: { x: false, y: false } }
    }, data, el);
    el.setAttribute("data-drawn", String(c.series.length));
    if (window.ResizeObserver) {
      new ResizeObserver(function () { plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }); }).observe(el);
    }
  }
  function drawAll() { document.querySelectorAll("[data-chart]").forEach(draw); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll); else drawAll();
})();
