// The index page: search, facet filters and sorting over the models embedded as JSON.
(function () {
  "use strict";
  var models = JSON.parse(document.getElementById("zoo-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var facetSelects = Array.prototype.slice.call(document.querySelectorAll("select.facet"));

  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    var units = ["B", "KB", "MB", "GB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toPrecision(3)) + " " + units[i];
  }
  function fmtNum(v, digits) { return v === null || v === undefined ? "–" : v.toFixed(digits); }
  function fmtInt(v) { return v === null || v === undefined ? "–" : v.toLocaleString("en-US"); }
  function fmtPct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }

  function matches(m, state) {
    if (state.latestOnly && !m.is_latest) return false;
    for (var i = 0; i < state.facets.length; i++) {
      var f = state.facets[i];
      if (f.value && String(m[f.name]) !== f.value) return false;
    }
    if (state.quantized === "yes" && !m.quantized) return false;
    if (state.quantized === "no" && m.quantized) return false;
    if (state.minSparsity !== null && !(m.sparsity * 100 >= state.minSparsity - 1e-9)) return false;
    if (state.minMetric !== null && !(m.metric !== null && m.metric >= state.minMetric)) return false;
    if (state.words.length) {
      var hay = m.search;
      for (var j = 0; j < state.words.length; j++) if (hay.indexOf(state.words[j]) < 0) return false;
    }
    return true;
  }

  function compare(key, dir) {
    var sign = dir === "desc" ? -1 : 1;
    return function (a, b) {
      var x = a[key], y = b[key];
      var xm = x === null || x === undefined, ym = y === null || y === undefined;
      if (xm || ym) return xm === ym ? 0 : xm ? 1 : -1;  // missing values last, either way
      if (x < y) return -sign;
      if (x > y) return sign;
      return a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0;
    };
  }

  function readState() {
    var num = function (id) { var v = $(id).value; return v === "" ? null : Number(v); };
    return {
      words: $("q").value.toLowerCase().split(/\s+/).filter(Boolean),
      facets: facetSelects.map(function (s) { return { name: s.getAttribute("data-facet"), value: s.value }; }),
      quantized: $("f-quantized").value,
      minSparsity: num("min-sparsity"),
      minMetric: num("min-metric"),
      latestOnly: $("latest-only").checked,
      sort: $("sort").value.split(":"),
    };
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function render() {
    var state = readState();
    var shown = models.filter(function (m) { return matches(m, state); });
    shown.sort(compare(state.sort[0], state.sort[1]));
    var body = $("rows");
    var fragment = document.createDocumentFragment();
    shown.forEach(function (m) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-ref", m.ref);
      var name = document.createElement("td");
      name.className = "stub";
      var link = document.createElement("a");
      link.href = m.href;
      link.textContent = m.stub;
      name.appendChild(link);
      if (m.adapter_of) {  // an adapter: say which base it goes on, linked when published here
        var note = document.createElement("div");
        note.className = "adapter-of muted";
        note.appendChild(document.createTextNode("adapter of "));
        var base = document.createElement(m.adapter_of_href ? "a" : "span");
        if (m.adapter_of_href) base.href = m.adapter_of_href;
        base.textContent = m.adapter_of;
        note.appendChild(base);
        name.appendChild(note);
      }
      tr.appendChild(name);
      tr.appendChild(cell(m.version + (m.aliases.length ? " (" + m.aliases.join(", ") + ")" : "")));
      tr.appendChild(cell(m.dataset));
      tr.appendChild(cell(fmtNum(m.metric, 4), "num"));
      tr.appendChild(cell(fmtBytes(m.size), "num"));
      tr.appendChild(cell(fmtInt(m.parameters), "num"));
      tr.appendChild(cell(fmtPct(m.sparsity), "num"));
      tr.appendChild(cell(fmtPct(m.model_sparsity), "num"));
      tr.appendChild(cell(m.quantized || "–"));
      var latency = m.latency_ms === null ? "–" : m.latency_ms.toPrecision(3) + " ms";
      tr.appendChild(cell(latency + (m.latency_noisy ? " (noisy)" : ""), "num"));
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    $("count").textContent = shown.length + " of " + models.length + " model versions";
  }

  ["q", "min-sparsity", "min-metric"].forEach(function (id) { $(id).addEventListener("input", render); });
  facetSelects.concat([$("f-quantized"), $("sort"), $("latest-only")]).forEach(function (el) {
    el.addEventListener("change", render);
  });
  render();
})();
