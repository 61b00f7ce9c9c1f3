/* evalsuite report: draws the λ-grid heatmaps from window.EVALSUITE_DATA (index.data.js, loaded by a <script>
   tag, so the page works from file:// with no server). Every colour, label and tooltip is precomputed in Python
   (evalsuite.report.encoding, the same values as the static figures); this script only lays them out.
   Data never reaches innerHTML: text goes through textContent, elements through createElement. */
(function () {
  "use strict";

  var DATA = window.EVALSUITE_DATA;
  var FLAG = { best: 1, sftBest: 2, notSig: 4, base: 8, ref: 16, failed: 32 };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  /* ---- controls ---------------------------------------------------------------------------------- */

  function fillSelect(select, options, selected) {
    while (select.firstChild) select.removeChild(select.firstChild);
    options.forEach(function (o) {
      var opt = el("option", null, o.label);
      opt.value = o.key;
      if (o.key === selected) opt.selected = true;
      select.appendChild(opt);
    });
  }

  function buildControls(state) {
    fillSelect(byId("ctl-condition"), DATA.conditions, state.condition);
    fillSelect(byId("ctl-metric"), DATA.metrics, state.metric);
    var box = byId("ctl-experiments");
    DATA.experiments.forEach(function (exp, i) {
      var label = el("label", "exp-choice");
      var input = el("input");
      input.type = "checkbox";
      input.value = String(i);
      input.checked = state.experiments.indexOf(i) >= 0;
      input.addEventListener("change", function () {
        state.experiments = checkedExperiments();
        render(state);
      });
      label.appendChild(input);
      label.appendChild(el("span", null, " " + exp.label));
      box.appendChild(label);
    });
    byId("ctl-condition").addEventListener("change", function (e) { state.condition = e.target.value; render(state); });
    byId("ctl-metric").addEventListener("change", function (e) { state.metric = e.target.value; render(state); });
  }

  function checkedExperiments() {
    var out = [];
    var inputs = byId("ctl-experiments").getElementsByTagName("input");
    for (var i = 0; i < inputs.length; i++) if (inputs[i].checked) out.push(Number(inputs[i].value));
    return out;
  }

  /* ---- one heatmap: the paper's encoding as an HTML table ----------------------------------------- */

  /* the item page a cell opens: its checkpoint's items under the shown condition (ΔDPO: the DPO cell against
     its SFT parent); null where the experiment has no item pages (the paper's grid, a comparison) */
  function itemLink(exp, bench, stage, k, condition) {
    if (!exp.pages || !exp.pages[bench] || !exp.ckpt) return null;
    var own = exp.ckpt[stage === "delta" ? "dpo" : stage];
    if (!own || !own[k]) return null;
    var hash = "cell=" + encodeURIComponent(own[k]);
    if (stage === "delta" && exp.ckpt.sft && exp.ckpt.sft[k]) hash += "&cmp=" + encodeURIComponent(exp.ckpt.sft[k]);
    return exp.pages[bench] + "#" + hash + "&cond=" + encodeURIComponent(condition);
  }

  function heatmap(exp, grid, stage, bench, condition) {
    var table = el("table", "hm hm-" + stage + " kind-" + exp.kind);
    table.setAttribute("data-exp", exp.key);
    table.setAttribute("data-bench", bench);
    var head = el("thead");
    var axis = el("tr", "axis");
    axis.appendChild(el("th", "corner", "λp \\ λr"));
    exp.lr.forEach(function (r) { axis.appendChild(el("th", "tick", r)); });
    head.appendChild(axis);
    table.appendChild(head);
    var body = el("tbody");
    var nr = exp.lr.length;
    exp.lp.forEach(function (p, i) {
      var tr = el("tr");
      tr.appendChild(el("th", "tick", p));
      for (var j = 0; j < nr; j++) {
        var k = i * nr + j;
        tr.appendChild(cell(exp, grid, k, exp.lp[i], exp.lr[j], itemLink(exp, bench, stage, k, condition)));
      }
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  function cell(exp, grid, k, p, r, link) {
    var value = grid.v[k];
    var flags = grid.f[k] || 0;
    if (value === null || value === undefined) {
      var empty = el("td", "empty", "·");
      empty.title = grid.t[k] || ("λp=" + p + ", λr=" + r + ": not in this grid");
      return empty;
    }
    var td = el("td", "cell");
    td.setAttribute("data-lp", p);
    td.setAttribute("data-lr", r);
    if (grid.c[k]) {
      td.style.backgroundColor = grid.c[k];
      td.style.color = exp.text_colors[grid.k[k]];
    }
    if (flags & FLAG.base) { td.className += " base"; td.appendChild(el("span", "lbl base-lbl", "Base:")); }
    if (flags & FLAG.ref) { td.className += " ref"; td.appendChild(el("span", "lbl ref-lbl", "IT:")); }
    if (flags & FLAG.sftBest) td.className += " sftbest";
    if (flags & FLAG.failed) td.className += " failed";
    var val = el(link ? "a" : "span", "val", value);
    if (link) { val.href = link; td.className += " linked"; }
    if (flags & FLAG.best) { td.className += " best"; val.className += " circled"; }
    td.appendChild(val);
    if (flags & FLAG.notSig) { td.className += " ns"; td.appendChild(el("span", "ns-mark", "≈")); }
    td.title = grid.t[k] + (link ? "\nclick: this cell's items" : "");
    return td;
  }

  /* ---- small multiples: rows = benchmarks, columns = experiment × stage --------------------------- */

  function drawMultiples(target, experiments, state, emptyNote) {
    while (target.firstChild) target.removeChild(target.firstChild);
    var shown = [];
    experiments.forEach(function (exp) {
      var rows = ((exp.views[state.condition] || {})[state.metric]) || [];
      if (rows.length) shown.push({ exp: exp, rows: rows });
    });
    if (!shown.length) {
      target.appendChild(el("p", "note", emptyNote));
      return 0;
    }
    var benchmarks = [];
    shown.forEach(function (s) {
      s.rows.forEach(function (row) { if (benchmarks.indexOf(row.b) < 0) benchmarks.push(row.b); });
    });
    benchmarks.sort(function (a, b) { return DATA.benchmark_order.indexOf(a) - DATA.benchmark_order.indexOf(b); });
    var table = el("table", "multiples");
    var head = el("thead");
    var top = el("tr");
    top.appendChild(el("th"));
    var second = el("tr");
    second.appendChild(el("th"));
    shown.forEach(function (s) {
      var th = el("th", "exp-head exp-" + s.exp.kind, s.exp.label);
      th.colSpan = s.exp.stages.length;
      top.appendChild(th);
      s.exp.stages.forEach(function (st) { second.appendChild(el("th", "stage-head", DATA.stage_labels[st])); });
    });
    head.appendChild(top);
    head.appendChild(second);
    table.appendChild(head);
    var body = el("tbody");
    var count = 0;
    benchmarks.forEach(function (b) {
      var tr = el("tr");
      tr.appendChild(el("th", "bench-head", DATA.benchmark_labels[b] || b));
      shown.forEach(function (s) {
        var row = null;
        s.rows.forEach(function (r) { if (r.b === b) row = r; });
        s.exp.stages.forEach(function (st) {
          var td = el("td", "grid-slot");
          if (row && row.g[st]) {
            td.appendChild(heatmap(s.exp, row.g[st], st, b, state.condition));
            count++;
          } else {
            td.appendChild(el("span", "note", "—"));
          }
          tr.appendChild(td);
        });
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    target.appendChild(table);
    return count;
  }

  function render(state) {
    var chosen = state.experiments.map(function (i) { return DATA.experiments[i]; });
    var cond = labelOf(DATA.conditions, state.condition);
    var metric = labelOf(DATA.metrics, state.metric);
    if (!DATA.experiments.length) {
      drawMultiples(byId("grids"), [], state, "No λ grid in these runs: no checkpoint has a (λp, λr) cell.");
      return;
    }
    var note = chosen.length
      ? "No " + metric + " under " + cond + " for the chosen experiments" +
        (state.condition === "clean" ? " (robustness metrics exist for perturbed conditions only)." : ".")
      : "Choose at least one experiment.";
    var drawn = drawMultiples(byId("grids"), chosen, state, note);
    byId("grids").setAttribute("data-grids", String(drawn));
    byId("view-caption").textContent = metric + " · " + cond + (DATA.metric_notes[state.metric] ? " — " + DATA.metric_notes[state.metric] : "");
    if (DATA.compare && byId("compare-grids")) {
      drawMultiples(byId("compare-grids"), DATA.compare.experiments, state, "No " + metric + " under " + cond + " in both runs.");
    }
  }

  function labelOf(options, key) {
    for (var i = 0; i < options.length; i++) if (options[i].key === key) return options[i].label;
    return key;
  }

  function start() {
    if (!DATA) {
      byId("grids").appendChild(el("p", "note", "index.data.js did not load: keep it beside index.html."));
      return;
    }
    var state = { condition: DATA.defaults.condition, metric: DATA.defaults.metric, experiments: DATA.defaults.experiments.slice() };
    buildControls(state);
    render(state);
    document.body.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
