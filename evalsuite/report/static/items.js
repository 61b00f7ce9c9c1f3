/* evalsuite item pages: pick a cell, a comparison cell, a condition and an outcome; page through the items.
 *
 * Data come from script files (fetch() does not work from file://), each one call
 * EVALSUITE_ITEMS_PUSH(key, object, blobs): typed columns and UTF-8 strings are base64 blobs that the object
 * refers to as {"$b": index, "t": type}. Files: <task>.data.js (the index: "meta"), <task>/c<id>.js (a checkpoint's
 * per-row state, score, answer, truncation), <task>/c<id>-b<j>.js (its responses and judgements, its block j of
 * rows), <task>/p<j>.js (prompt block j: prompts and targets). A row is one (item, condition, variant), numbered
 * alike in every file. Everything shown is set with textContent: no HTML from data.
 */
(function () {
  "use strict";
  const MISSING = 0, UNSCORED = 1, WRONG = 2, RIGHT = 3, SCORED = 4;
  const PAGE = 50;
  const TYPES = { u8: Uint8Array, u16: Uint16Array, i16: Int16Array, i32: Int32Array, f64: Float64Array };

  // ---- decoding --------------------------------------------------------------------------------------------
  function bytesOf(b64) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function resolve(value, blobs) {
    if (Array.isArray(value)) return value.map((v) => resolve(v, blobs));
    if (value === null || typeof value !== "object") return value;
    if (Object.prototype.hasOwnProperty.call(value, "$b")) {
      const bytes = bytesOf(blobs[value.$b]);
      if (value.t === "utf8") return bytes;
      const T = TYPES[value.t];
      return new T(bytes.buffer, bytes.byteOffset, bytes.byteLength / T.BYTES_PER_ELEMENT);
    }
    const out = {};
    for (const k of Object.keys(value)) out[k] = resolve(value[k], blobs);
    return out;
  }

  /** A string column {data, len, trimmed}: get(i) is the text or null; full(i) the untrimmed length if cut. */
  function strings(col) {
    const n = col.len.length;
    const start = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) start[i + 1] = start[i] + Math.max(col.len[i], 0);
    const cut = new Map(col.trimmed || []);
    const decoder = new TextDecoder("utf-8");
    return {
      length: n,
      get: (i) => (col.len[i] < 0 ? null : decoder.decode(col.data.subarray(start[i], start[i + 1]))),
      full: (i) => cut.get(i),
    };
  }

  // ---- what the filters compute ----------------------------------------------------------------------------
  function scoreOf(ck, r) {
    const s = ck.state[r];
    if (s === RIGHT) return 1;
    if (s === WRONG) return 0;
    if (s === SCORED) return ck.score[r];
    return NaN;
  }

  /** Row indices of item i under condition c (clean: its one row; a kind: its variants). */
  function rowsOf(meta, i, c) {
    const out = [];
    for (let r = meta.item_start[i]; r < meta.item_start[i + 1]; r++) if (meta.row_cond[r] === c) out.push(r);
    return out;
  }

  /** The outcome filters a condition offers; `here`/`there` are checkpoint data (there may be null). */
  function outcomes(meta, cond, there) {
    const kind = meta.conditions[cond];
    const clean = meta.conditions.indexOf("clean");
    const bin = meta.binary;
    const list = [{ key: "all", label: "all items" }];
    const add = (key, label) => list.push({ key, label });
    if (there) {
      add("better", bin ? "right here, wrong in comparison" : "higher score here than in comparison");
      add("worse", bin ? "wrong here, right in comparison" : "lower score here than in comparison");
    }
    if (kind !== "clean" && clean >= 0) {
      add("flip_down", bin ? `flipped right → wrong under ${kind}` : `lower score under ${kind} than clean`);
      add("flip_up", bin ? `flipped wrong → right under ${kind}` : `higher score under ${kind} than clean`);
      add("changed", `answer changed under ${kind}`);
    }
    list.push({ key: "failed", label: "unscored or no result here" });
    list.push({ key: "truncated", label: "prompt truncated here" });
    return list;
  }

  /** Does item i (rows `rows` under the condition, `cleanRow` its clean row or -1) match outcome `key`? */
  function matches(key, here, there, rows, cleanRow) {
    switch (key) {
      case "all": return true;
      case "better": case "worse":
        return rows.some((r) => {
          const a = scoreOf(here, r), b = scoreOf(there, r);
          return !isNaN(a) && !isNaN(b) && (key === "better" ? a > b : a < b);
        });
      case "flip_down": case "flip_up": {
        if (cleanRow < 0) return false;
        const c = scoreOf(here, cleanRow);
        if (isNaN(c)) return false;
        return rows.some((r) => {
          const v = scoreOf(here, r);
          return !isNaN(v) && (key === "flip_down" ? v < c : v > c);
        });
      }
      case "changed": {
        if (cleanRow < 0 || !here.answers) return false;
        const c = here.answers.get(cleanRow);
        return c !== null && rows.some((r) => { const a = here.answers.get(r); return a !== null && a !== c; });
      }
      case "failed": return rows.some((r) => here.state[r] === MISSING || here.state[r] === UNSCORED);
      case "truncated": return !!here.truncated && rows.some((r) => here.truncated[r] > 0);
      default: return false;
    }
  }

  /** Items shown for (condition, subset) with a count per outcome, and the list for `outcome`. */
  function select(meta, here, there, cond, subset, outcome) {
    const clean = meta.conditions.indexOf("clean");
    const keys = outcomes(meta, cond, there).map((o) => o.key);
    const counts = Object.fromEntries(keys.map((k) => [k, 0]));
    const shown = [];
    let unscored = 0, missing = 0, nrows = 0;
    for (let i = 0; i < meta.n_items; i++) {
      if (subset >= 0 && meta.item_subset[i] !== subset) continue;
      const rows = rowsOf(meta, i, cond);
      if (!rows.length) continue;
      const cleanRow = clean >= 0 ? (rowsOf(meta, i, clean)[0] ?? -1) : -1;
      for (const r of rows) {
        nrows++;
        if (here.state[r] === UNSCORED) unscored++;
        if (here.state[r] === MISSING) missing++;
      }
      for (const k of keys) {
        if (matches(k, here, there, rows, cleanRow)) {
          counts[k]++;
          if (k === outcome) shown.push(i);
        }
      }
    }
    return { counts, shown, unscored, missing, rows: nrows };
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { resolve, strings, scoreOf, rowsOf, outcomes, matches, select, bytesOf };
  }
  if (typeof document === "undefined") return;

  // ---- loading ----------------------------------------------------------------------------------------------
  const store = {};
  const pending = {};
  let meta = null;

  window.EVALSUITE_ITEMS_PUSH = function (key, object, blobs) {
    store[key] = resolve(object, blobs);
    if (key === "meta") start(store[key]);
  };

  function load(key) {
    if (!pending[key]) {
      pending[key] = new Promise((ok, fail) => {
        const s = document.createElement("script");
        s.src = `${meta.slug}/${key}.js`;
        s.onload = () => (store[key] ? ok(store[key]) : fail(new Error(`${s.src} holds no data`)));
        s.onerror = () => fail(new Error(`could not load ${s.src}`));
        document.head.appendChild(s);
      });
    }
    return pending[key];
  }

  async function checkpoint(k) {
    if (k === null || k < 0 || !meta.checkpoints[k].records) return null;
    const data = await load(`c${meta.checkpoints[k].id}`);
    if (!data.answers && data.answer) data.answers = strings(data.answer);
    return data;
  }

  /** Index of the block ([first row, end row) pairs) that holds row r, or -1. */
  function blockOf(blocks, r) {
    let lo = 0, hi = blocks.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (blocks[mid][0] <= r) lo = mid; else hi = mid - 1; }
    return blocks.length && blocks[lo][0] <= r && r < blocks[lo][1] ? lo : -1;
  }

  /** Text of column `name` at row r from loaded blocks {key: columns}, with where its block starts. */
  function cellText(blocks, loaded, prefix, name, r) {
    const j = blockOf(blocks, r);
    const cols = j < 0 ? null : loaded[`${prefix}${j}`];
    if (!cols || !cols[name]) return null;
    const at = r - blocks[j][0];
    const text = cols[name].get(at);
    return text === null ? null : { text, full: cols[name].full(at) };
  }

  async function block(key) {
    const data = await load(key);
    if (!data.columns) {
      data.columns = {};
      for (const name of Object.keys(data)) if (name !== "columns") data.columns[name] = strings(data[name]);
    }
    return data.columns;
  }

  // ---- state and controls --------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const view = { cell: 0, cmp: null, cond: 0, outcome: "all", subset: -1, page: 0 };
  let generation = 0;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function option(select, value, label) {
    const o = el("option", null, label);
    o.value = String(value);
    select.appendChild(o);
    return o;
  }

  function fillCheckpoints(select, withNone) {
    select.replaceChildren();
    if (withNone) option(select, "", "— none —");
    let group = null, groupName = null;
    meta.checkpoints.forEach((c, k) => {
      const name = c.experiment || "base models";
      if (name !== groupName) {
        group = el("optgroup");
        group.label = groupName = name;
        select.appendChild(group);
      }
      const o = option(group, k, c.label + (c.records ? "" : " (no items)"));
      if (!c.records) o.disabled = !withNone;
    });
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const find = (name) => meta.checkpoints.findIndex((c) => c.name === name);
    if (params.has("cell") && find(params.get("cell")) >= 0) view.cell = find(params.get("cell"));
    else view.cell = Math.max(0, meta.checkpoints.findIndex((c) => c.records > 0));
    view.cmp = meta.checkpoints[view.cell].default;
    if (params.get("cmp") === "") view.cmp = null;
    else if (params.has("cmp") && find(params.get("cmp")) >= 0) view.cmp = find(params.get("cmp"));
    const cond = meta.conditions.indexOf(params.get("cond"));
    view.cond = cond >= 0 ? cond : 0;
    view.outcome = params.get("outcome") || "all";
    view.subset = meta.subsets.indexOf(params.get("subset") ?? "\u0000");
    view.page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  }

  function writeHash() {
    const params = new URLSearchParams();
    params.set("cell", meta.checkpoints[view.cell].name);
    params.set("cmp", view.cmp === null ? "" : meta.checkpoints[view.cmp].name);
    params.set("cond", meta.conditions[view.cond]);
    params.set("outcome", view.outcome);
    if (view.subset >= 0) params.set("subset", meta.subsets[view.subset]);
    if (view.page) params.set("page", String(view.page));
    history.replaceState(null, "", "#" + params.toString());
  }

  function start(m) {
    meta = m;
    if (!meta.checkpoints.length) {
      $("status").textContent = "No checkpoint has results for this task.";
      document.body.dataset.ready = "1";
      return;
    }
    meta.ids = strings(meta.item_id);
    fillCheckpoints($("ctl-cell"), false);
    fillCheckpoints($("ctl-compare"), true);
    meta.conditions.forEach((c, k) => option($("ctl-condition"), k, c));
    option($("ctl-subset"), -1, `all (${meta.subsets.length > 1 ? meta.subsets.length + " subsets" : "one subset"})`);
    meta.subsets.forEach((s, k) => option($("ctl-subset"), k, s || "(none)"));
    readHash();
    const on = (id, event, change) => $(id).addEventListener(event, () => {
      change($(id).value);
      view.page = 0;
      refresh();
    });
    on("ctl-cell", "change", (v) => { view.cell = +v; view.cmp = meta.checkpoints[view.cell].default; });
    on("ctl-compare", "change", (v) => { view.cmp = v === "" ? null : +v; });
    on("ctl-condition", "change", (v) => { view.cond = +v; });
    on("ctl-outcome", "change", (v) => { view.outcome = v; });
    on("ctl-subset", "change", (v) => { view.subset = +v; });
    for (const which of ["ref", "parent", "base"]) {
      on(`cmp-${which}`, "click", () => { view.cmp = meta.checkpoints[view.cell][which]; });
    }
    for (const [id, step] of [["prev", -1], ["next", 1], ["prev2", -1], ["next2", 1]]) {
      $(id).addEventListener("click", () => { view.page += step; refresh(); window.scrollTo(0, 0); });
    }
    refresh();
  }

  async function refresh() {
    const gen = ++generation;
    document.body.dataset.ready = "0";
    $("status").textContent = "Loading…";
    try {
      await show(gen);
    } catch (err) {
      if (gen === generation) $("status").textContent = `Could not show the items: ${err.message}`;
      return;
    }
    if (gen === generation) { $("status").textContent = ""; document.body.dataset.ready = "1"; }
  }

  async function show(gen) {
    const c = meta.checkpoints[view.cell];
    const [here, there] = await Promise.all([checkpoint(view.cell), checkpoint(view.cmp)]);
    if (gen !== generation) return;
    $("ctl-cell").value = String(view.cell);
    $("ctl-compare").value = view.cmp === null ? "" : String(view.cmp);
    $("ctl-condition").value = String(view.cond);
    $("ctl-subset").value = String(view.subset);
    for (const which of ["ref", "parent", "base"]) $(`cmp-${which}`).disabled = c[which] === null;
    const notes = [];
    for (const [k, who] of [[view.cell, "this cell"], [view.cmp, "comparison"]]) {
      if (k === null) continue;
      const ck = meta.checkpoints[k];
      for (const s of ck.status) notes.push(`${who} (${ck.name}): ${s}`);
      if (ck.unlisted) notes.push(`${who} (${ck.name}): ${ck.unlisted} records without a row in prompts.parquet`);
    }
    $("ckpt-status").replaceChildren(...notes.map((n) => el("div", null, "⚠ " + n)));
    if (!here) {
      $("summary").textContent = `${c.name} has no item results for this task.`;
      $("items").replaceChildren();
      $("ctl-outcome").replaceChildren();
      return;
    }
    const offered = outcomes(meta, view.cond, there);
    if (!offered.some((o) => o.key === view.outcome)) view.outcome = "all";
    const sel = select(meta, here, there, view.cond, view.subset, view.outcome);
    $("ctl-outcome").replaceChildren();
    for (const o of offered) option($("ctl-outcome"), o.key, `${o.label} (${sel.counts[o.key]})`);
    $("ctl-outcome").value = view.outcome;
    const pages = Math.max(1, Math.ceil(sel.shown.length / PAGE));
    view.page = Math.min(Math.max(0, view.page), pages - 1);
    const first = view.page * PAGE;
    const slice = sel.shown.slice(first, first + PAGE);
    $("summary").textContent = `${sel.counts.all} items (${sel.rows} prompts) under ${meta.conditions[view.cond]}; `
      + `${sel.shown.length} match “${offered.find((o) => o.key === view.outcome).label}”; `
      + `in this cell ${sel.unscored} unscored and ${sel.missing} without a result`
      + (there ? "" : "; no comparison cell chosen");
    const range = `items ${first + 1}–${first + slice.length} of ${sel.shown.length}`;
    $("page-info").textContent = sel.shown.length ? `page ${view.page + 1} of ${pages} (${range})` : "no items";
    for (const id of ["prev", "prev2"]) $(id).disabled = view.page === 0;
    for (const id of ["next", "next2"]) $(id).disabled = view.page >= pages - 1;
    writeHash();

    const clean = meta.conditions.indexOf("clean");
    const shownRows = slice.map((i) => {
      const rows = rowsOf(meta, i, view.cond);
      const cleanRows = view.cond !== clean && clean >= 0 ? rowsOf(meta, i, clean) : [];
      return { i, rows: cleanRows.concat(rows) };
    });
    const allRows = shownRows.flatMap((s) => s.rows);
    const loaded = {};
    const keys = new Set();
    for (const r of allRows) {
      const j = blockOf(meta.blocks, r);
      if (j >= 0) keys.add(`p${j}`);
      for (const k of [view.cell, view.cmp]) {
        if (k === null) continue;
        const c = meta.checkpoints[k], b = blockOf(c.blocks, r);
        if (b >= 0) keys.add(`c${c.id}-b${b}`);
      }
    }
    await Promise.all([...keys].sort().map(async (key) => { loaded[key] = await block(key); }));
    if (gen !== generation) return;
    const cards = shownRows.map((s, n) => card(s, first + n + 1, here, there, loaded));
    $("items").replaceChildren(...cards);
    $("items").dataset.count = String(sel.shown.length);
  }

  // ---- rendering ------------------------------------------------------------------------------------------------
  function samplesFile(k, cond) {
    const suffix = cond === "clean" ? "" : `@${cond}`;
    return `checkpoints/${meta.checkpoints[k].name}/samples_${meta.task}${suffix}.jsonl`;
  }

  function textBlock(found, name, where) {
    if (!found) return null;
    const box = el("div");
    box.appendChild(el("pre", `text ${name}`, found.text));
    if (found.full !== undefined) {
      const mark = `trimmed: ${meta.cap} of ${found.full} characters shown; full text in ${where}`;
      box.appendChild(el("span", "trimmed", mark));
    }
    return box;
  }

  function badge(ck, r) {
    const s = ck.state[r];
    if (s === RIGHT) return el("span", "badge state-right", "✓ right");
    if (s === WRONG) return el("span", "badge state-wrong", "✗ wrong");
    if (s === UNSCORED) return el("span", "badge state-unscored", "unscored");
    if (s === MISSING) return el("span", "badge state-missing", "no result");
    const v = ck.score[r];
    const shown = Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/0+$/, "");
    return el("span", "badge state-scored", meta.scale === "rating_1_10" ? `${shown} / 10` : `score ${shown}`);
  }

  function answerBox(k, ck, loaded, r, who) {
    const box = el("div", `answer ${who === "this cell" ? "here" : "cmp"}`);
    box.appendChild(el("div", "who", `${who}: ${meta.checkpoints[k].label}`));
    const line = el("div");
    line.appendChild(badge(ck, r));
    const answer = ck.answers ? ck.answers.get(r) : null;
    if (answer !== null) line.append(el("span", null, "answer: "), el("code", "answer-text", answer));
    if (ck.truncated && ck.truncated[r] > 0) {
      line.appendChild(el("span", "flag", `prompt truncated (${ck.truncated[r]} requests)`));
    }
    box.appendChild(line);
    const c = meta.checkpoints[k], prefix = `c${c.id}-b`;
    const where = samplesFile(k, meta.conditions[meta.row_cond[r]]);
    if (!meta.texts) box.appendChild(el("p", "note", `responses are not in this report: see ${where}`));
    const response = textBlock(cellText(c.blocks, loaded, prefix, "response", r), "response", where);
    if (response) box.appendChild(response);
    const judgement = textBlock(cellText(c.blocks, loaded, prefix, "judgement", r), "judgement", where);
    if (judgement) {
      const d = el("details");
      d.appendChild(el("summary", null, "judgement"));
      d.appendChild(judgement);
      box.appendChild(d);
    }
    return box;
  }

  function card(s, number, here, there, loaded) {
    const art = el("article", "item");
    art.dataset.item = meta.ids.get(s.i);
    const head = el("header");
    head.appendChild(el("span", "idx", `#${number}`));
    head.appendChild(el("code", null, meta.ids.get(s.i)));
    const subset = meta.subsets[meta.item_subset[s.i]];
    if (subset) head.appendChild(el("span", "subset", subset));
    art.appendChild(head);
    const grid = el("div", "versions");
    for (const r of s.rows) {
      const cond = meta.conditions[meta.row_cond[r]];
      const v = el("div", "version");
      v.dataset.row = String(r);
      v.appendChild(el("h4", null, meta.row_variant[r] < 0 ? cond : `${cond} #${meta.row_variant[r] + 1}`));
      const promptText = cellText(meta.blocks, loaded, "p", "prompt", r);
      const prompt = textBlock(promptText, "prompt", "the run folder's prompts.parquet");
      v.appendChild(prompt || el("p", "note", "no prompt recorded"));
      const target = cellText(meta.blocks, loaded, "p", "target", r);
      if (target) v.appendChild(el("div", "target", `target: ${target.text}`));
      const fmt = cellText(meta.blocks, loaded, "p", "prompt_format", r);
      if (fmt) v.appendChild(el("div", "target", `asked in format ${fmt.text}`));
      v.appendChild(answerBox(view.cell, here, loaded, r, "this cell"));
      if (there) v.appendChild(answerBox(view.cmp, there, loaded, r, "comparison"));
      grid.appendChild(v);
    }
    art.appendChild(grid);
    return art;
  }
})();
