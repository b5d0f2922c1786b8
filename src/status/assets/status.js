// sonde's status page: tooltips for strips and chart points (mouse and keyboard), live search,
// and a refresh of the list every 30 s that fetches only the list, not the page. Everything
// works without this script too (links, the filter form, the server-rendered pictures).
"use strict";
(function () {
  var tip = document.getElementById("tip");
  if (!tip) {
    tip = document.createElement("div");
    tip.id = "tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    document.body.appendChild(tip);
  }
  function utc(ms) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function secs(s) {
    if (s < 0.001) return Math.round(s * 1e6) + " µs";
    if (s < 1) return Math.round(s * 1e3) + " ms";
    return s.toFixed(1) + " s";
  }
  // A strip slot's words: its time range from the strip's start and width, then its runs.
  function slotText(el) {
    var strip = el.parentNode;
    var i = Array.prototype.indexOf.call(strip.children, el);
    var t0 = +strip.getAttribute("data-t0"), w = +strip.getAttribute("data-w");
    var text = utc(t0 + i * w) + " – " + utc(t0 + (i + 1) * w);
    var d = el.getAttribute("data-s");
    if (!d) return text + " · no run";
    var p = d.split(","), runs = +p[0], failed = +p[1];
    text += " · " + runs + (runs === 1 ? " run" : " runs");
    if (failed) text += ", " + failed + " failed";
    if (p[2] !== "") text += " · mean " + secs(+p[2]);
    var reason = p.slice(3).join(",");
    if (reason) text += " · reason: " + reason;
    return text;
  }
  function show(el) {
    var text = el.tagName === "I" ? slotText(el) : el.getAttribute("data-tip");
    if (!text) return;
    tip.textContent = text; // text, never HTML
    tip.hidden = false;
    var r = el.getBoundingClientRect();
    var x = Math.min(window.scrollX + r.left, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = (window.scrollY + r.bottom + 6) + "px";
  }
  function hide() { tip.hidden = true; }
  document.addEventListener("mouseover", function (e) {
    var t = e.target.closest ? e.target.closest("[data-tip], .strip > i") : null;
    if (t) show(t); else hide();
  });
  // Keyboard: a focused strip walks its slots with the arrow keys, Home and End.
  document.addEventListener("keydown", function (e) {
    var strip = document.activeElement;
    if (!strip || !strip.classList || !strip.classList.contains("strip")) return;
    var slots = strip.querySelectorAll("i");
    if (!slots.length) return;
    var cur = strip.querySelector("i.sel");
    var i = cur ? Array.prototype.indexOf.call(slots, cur) : slots.length;
    if (e.key === "ArrowLeft") i = Math.max(0, i - 1);
    else if (e.key === "ArrowRight") i = Math.min(slots.length - 1, i + 1);
    else if (e.key === "Home") i = 0;
    else if (e.key === "End") i = slots.length - 1;
    else if (e.key === "Escape") { if (cur) cur.classList.remove("sel"); hide(); return; }
    else return;
    e.preventDefault();
    if (cur) cur.classList.remove("sel");
    slots[i].classList.add("sel");
    show(slots[i]);
  });
  document.addEventListener("focusout", function (e) {
    if (e.target.classList && e.target.classList.contains("strip")) {
      var s = e.target.querySelector("i.sel");
      if (s) s.classList.remove("sel");
      hide();
    }
  });

  var list = document.getElementById("list");
  var form = document.querySelector("form.filters");
  if (!list || !form || !window.fetch) return;
  var url = list.getAttribute("data-refresh");
  function query() {
    var p = new URLSearchParams(new FormData(form));
    var page = new URLSearchParams(location.search).get("page");
    if (page) p.set("page", page);
    p.forEach(function (v, k) { if (v === "") p.delete(k); });
    return p.toString();
  }
  var busy = false;
  function refresh(keepPage) {
    if (busy) return;
    busy = true;
    var q = query();
    if (!keepPage) { var p = new URLSearchParams(q); p.delete("page"); q = p.toString(); }
    fetch(url + (q ? "?" + q : ""), { headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        // A strip being read with the keyboard keeps its focus: skip this refresh.
        if (list.contains(document.activeElement) && document.activeElement.classList.contains("strip")) return;
        list.innerHTML = html; // server-rendered, every value escaped there
        if (!keepPage) history.replaceState(null, "", q ? "?" + q : location.pathname);
        list.removeAttribute("data-stale");
      })
      .catch(function () { list.setAttribute("data-stale", "1"); })
      .then(function () { busy = false; });
  }
  var timer = null;
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { refresh(false); }, 250);
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); refresh(false); });
  setInterval(function () { if (!document.hidden) refresh(true); }, 30000);
})();
