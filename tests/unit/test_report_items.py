"""The report's per-task item pages (evalsuite.report.items): files, escaping, no external URL, identical bytes on
a re-run, the data decoded back equal to the tables, the page script's outcome filters (run in node, and in a
real Chromium where one is installed) against the same filters computed here with pandas."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evalsuite.report import items as report_items
from evalsuite.report.items import write_item_pages

EVIL = "<script>alert(1)</script>"
EXP = "tiny/data#abcd1234"
CHECKPOINTS = [  # name, experiment, stage, λp, λr, parent
    ("base", "", "base", None, None, None),
    ("sft/p0_r1", EXP, "sft", 0.0, 1.0, "/m/base"),
    ("sft/p0.2_r1", EXP, "sft", 0.2, 1.0, "/m/base"),
    ("dpo/p0_r1", EXP, "dpo", 0.0, 1.0, "/x/sft/p0_r1"),
    ("dpo/p0.2_r1" + EVIL, EXP, "dpo", 0.2, 1.0, "/x/sft/p0.2_r1"),
]
MMLU, MT = "mmlu_generative", "mt/bench" + EVIL


@dataclass
class Tables:
    items: pd.DataFrame
    prompts: pd.DataFrame
    checkpoints: pd.DataFrame
    results: pd.DataFrame
    path: Path | None = None


def make_tables(seed: int = 0) -> Tables:
    """Two tasks (0/1 MMLU with subsets, MT-Bench ratings with judgements), clean and typo × 2, five checkpoints;
    a `<script>` in answers, responses, prompts, judgements, a checkpoint name, a task name and a status; one
    checkpoint with no results for MT-Bench, some unscored items, a truncated prompt, an over-long response."""
    rng = np.random.default_rng(seed)
    checkpoints = pd.DataFrame([{"experiment": e, "checkpoint": n, "stage": s, "lambda_p": lp, "lambda_r": lr,
                                 "parent": parent, "base_model": "tiny", "prompt_format": "chatml", "dataset": "d",
                                 "dataset_fingerprint": "f"} for n, e, s, lp, lr, parent in CHECKPOINTS])
    rows, prompts = [], []
    for task, bench, n, binary in ((MMLU, "mmlu", 12, True), (MT, "mtbench", 4, False)):
        for i in range(n):
            item = f"{'algebra' if i % 2 else 'history'}/{i}"
            for cond, variants in (("clean", [None]), ("typo", [0, 1])):
                for v in variants:
                    prompts.append({"task": task, "condition": cond, "item_id": item, "variant": v,
                                    "prompt": f"Q{i} {cond} {v} " + (EVIL if i == 3 else "é ✓ 😀"),
                                    "target": "B" if binary else None, "prompt_format": None})
                    for name, e, s, lp, lr, _ in CHECKPOINTS:
                        if name.startswith("dpo/p0.2") and not binary:
                            continue
                        if binary:
                            score = None if (i == 5 and name == "base") else float(rng.integers(0, 2))
                            correct = None if score is None else score == 1.0
                            answer = EVIL if i == 3 else ("B" if score == 1.0 else "C")
                        else:
                            score, correct, answer = float(rng.integers(1, 11)), None, None
                        rows.append({"experiment": e, "checkpoint": name, "stage": s, "lambda_p": lp,
                                     "lambda_r": lr, "task": task, "benchmark": bench, "condition": cond,
                                     "item_id": item, "subset": item.split("/")[0], "variant": v, "answer": answer,
                                     "score": score, "correct": correct,
                                     "response": f"{name} {i} {cond} {v} {EVIL}" + ("x" * 5000 if i == 1 else ""),
                                     "judgement": None if binary else f"[[{score}]] {EVIL}",
                                     "truncated": 1 if i == 2 and cond == "clean" else 0})
    items = pd.DataFrame(rows).astype({"variant": "Int64", "correct": "boolean"})
    prompts = pd.DataFrame(prompts).astype({"variant": "Int64"})
    results = pd.DataFrame([
        {"checkpoint": "base", "task": MMLU, "condition": "all", "metric": "status", "status": "failed: " + EVIL,
         "benchmark": "mmlu", "score_metric": "exact_match,flexible-extract", "scale": "proportion"},
        {"checkpoint": "sft/p0_r1", "task": MT, "condition": "clean", "metric": "score", "status": "ok",
         "benchmark": "mtbench", "score_metric": "score,none", "scale": "rating_1_10"}])
    return Tables(items, prompts, checkpoints, results)


def read_push(path: Path) -> tuple[str, dict[str, Any]]:
    """A data file decoded as the page decodes it: key and object, blobs resolved (typed arrays as numpy, strings
    as lists)."""
    text = path.read_text(encoding="ascii")
    prefix = "window.EVALSUITE_ITEMS_PUSH("
    assert text.startswith(prefix) and text.endswith("]);\n")
    decoder = json.JSONDecoder()
    key, at = decoder.raw_decode(text, len(prefix))
    obj, at = decoder.raw_decode(text, at + 1)
    blobs, _ = decoder.raw_decode(text, at + 1)
    types = {"u8": "<u1", "u16": "<u2", "i32": "<i4", "f64": "<f8"}

    def resolve(value: Any) -> Any:
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$b" in value:
            raw = base64.b64decode(blobs[value["$b"]])
            return raw if value["t"] == "utf8" else np.frombuffer(raw, dtype=types[value["t"]])
        out = {k: resolve(v) for k, v in value.items()}
        if set(out) >= {"data", "len"}:  # a string column
            starts = np.concatenate([[0], np.cumsum(np.maximum(out["len"], 0))])
            out["values"] = [None if n < 0 else out["data"][starts[i]: starts[i] + n].decode()
                             for i, n in enumerate(out["len"])]
        return out

    return key, resolve(obj)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Tables]:
    out = tmp_path_factory.mktemp("report")
    tables = make_tables()
    return out, write_item_pages(tables, out), tables


def meta_of(out: Path, pages: dict[str, str], task: str) -> dict[str, Any]:
    return read_push(out / pages[task].replace(".html", ".data.js"))[1]


def test_one_page_per_task_with_its_data(written: tuple[Path, dict[str, str], Tables]) -> None:
    out, pages, _ = written
    assert pages == {MMLU: "items/mmlu_generative.html", MT: "items/mt_bench_script_alert_1_script.html"}
    for task, page in pages.items():
        slug = Path(page).stem
        assert (out / page).is_file() and (out / f"items/{slug}.data.js").is_file()
        meta = meta_of(out, pages, task)
        assert meta["task"] == task and meta["conditions"] == ["clean", "typo"]
        for ck in meta["checkpoints"]:
            if ck["records"]:
                assert (out / f"items/{slug}/c{ck['id']}.js").is_file()
                for j in range(len(ck["blocks"])):
                    assert (out / f"items/{slug}/c{ck['id']}-b{j}.js").is_file()
        for j in range(len(meta["blocks"])):
            assert (out / f"items/{slug}/p{j}.js").is_file()
    assert (out / "items/items.js").is_file() and (out / "items/items.css").is_file()
    mt = meta_of(out, pages, MT)
    assert [c["name"] for c in mt["checkpoints"]] == [c[0] for c in CHECKPOINTS[:4]]  # no results, no status: left out
    assert mt["binary"] is False and mt["scale"] == "rating_1_10"
    assert meta_of(out, pages, MMLU)["binary"] is True


def test_everything_escaped_and_nothing_external(written: tuple[Path, dict[str, str], Tables]) -> None:
    out, _, _ = written
    files = [p for p in (out / "items").rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "<script>alert" not in text, path
        if path.suffix == ".js" and path.name != "items.js":
            assert "<" not in text and "</script" not in text.lower(), path  # data: no raw "<" at all
            assert text.isascii(), path
        if path.name.startswith("mt_bench") and path.suffix == ".html":
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the task name, escaped by Jinja
        if path.suffix == ".html":
            for url in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
                assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", url, re.I), url  # relative paths only
    script = (out / "items/items.js").read_text()
    assert "innerHTML" not in script and "http:" not in script and "https:" not in script
    assert not re.search(r"\bfetch\(\s*[\w'\"`]", script)  # no fetch() call (a comment may name it)


def test_identical_bytes_on_a_rerun(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_item_pages(make_tables(), first)
    write_item_pages(make_tables(), second)
    write_item_pages(make_tables(), second)  # over an earlier report: replaced, not added to
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def _decoded(out: Path, pages: dict[str, str], task: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The task's index and, per checkpoint name, its state file with its texts joined from its blocks."""
    meta = meta_of(out, pages, task)
    folder = out / pages[task].replace(".html", "")
    per: dict[str, dict[str, Any]] = {}
    for ck in meta["checkpoints"]:
        if not ck["records"]:
            continue
        _, data = read_push(folder / f"c{ck['id']}.js")
        texts: dict[str, list[Any]] = {"response": [None] * meta["n_rows"], "judgement": [None] * meta["n_rows"]}
        trimmed: dict[int, int] = {}
        for j, (r0, _r1) in enumerate(ck["blocks"]):
            _, block = read_push(folder / f"c{ck['id']}-b{j}.js")
            for name, col in block.items():
                texts[name][r0: r0 + len(col["values"])] = col["values"]
                trimmed.update({r0 + at: full for at, full in col["trimmed"]})
        per[ck["name"]] = {**data, **texts, "trimmed": trimmed}
    return meta, per


def _opt(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _rows(meta: dict[str, Any]) -> pd.DataFrame:
    """Row number -> (item id, condition, variant) from the index."""
    ids = meta["item_id"]["values"]
    starts = meta["item_start"]
    item_of = np.repeat(np.arange(len(ids)), np.diff(starts))
    return pd.DataFrame({"item_id": [ids[i] for i in item_of],
                         "condition": [meta["conditions"][c] for c in meta["row_cond"]],
                         "variant": [None if v < 0 else int(v) for v in meta["row_variant"]]})


def test_data_decode_back_to_the_tables(written: tuple[Path, dict[str, str], Tables]) -> None:
    out, pages, tables = written
    for task in (MMLU, MT):
        meta, per = _decoded(out, pages, task)
        rows = _rows(meta)
        assert meta["n_items"] == rows["item_id"].nunique() and meta["n_rows"] == len(rows)
        order = list(dict.fromkeys(rows["item_id"]))
        assert order == sorted(order, key=report_items.natural_key)
        assert task != MMLU or order.index("algebra/9") < order.index("algebra/11")  # digits as numbers
        mine = tables.items[tables.items["task"] == task]
        for name, data in per.items():
            ck = mine[mine["checkpoint"] == name].copy()
            ck["v"] = ck["variant"].fillna(-1).astype(int)
            lookup = {(r.item_id, r.condition, r.v): r for r in ck.itertuples()}
            for r, key in enumerate(zip(rows["item_id"], rows["condition"], rows["variant"].fillna(-1).astype(int))):
                rec = lookup[key]
                state = int(data["state"][r])
                if pd.isna(rec.score):
                    assert state == report_items.UNSCORED
                elif pd.isna(rec.correct):
                    assert state == report_items.SCORED and data["score"][r] == rec.score
                else:
                    assert state == (report_items.RIGHT if rec.correct else report_items.WRONG)
                if "answer" in data:
                    assert data["answer"]["values"][r] == _opt(rec.answer)
                full = rec.response
                shown = data["response"][r]
                if len(full) > meta["cap"]:
                    assert shown == full[: meta["cap"]] and data["trimmed"][r] == len(full)
                else:
                    assert shown == full and r not in data["trimmed"]
                assert data["judgement"][r] == _opt(rec.judgement)
                assert int(data.get("truncated", np.zeros(meta["n_rows"]))[r]) == rec.truncated
        # prompts: every row's prompt, target
        prompts = tables.prompts[tables.prompts["task"] == task]
        shown = [None] * meta["n_rows"]
        for j, (r0, _) in enumerate(meta["blocks"]):
            _, block = read_push(out / pages[task].replace(".html", "") / f"p{j}.js")
            shown[r0: r0 + len(block["prompt"]["values"])] = block["prompt"]["values"]
        expected = {(p.item_id, p.condition, -1 if pd.isna(p.variant) else int(p.variant)): p.prompt
                    for p in prompts.itertuples()}
        assert shown == [expected[k] for k in zip(rows["item_id"], rows["condition"],
                                                  rows["variant"].fillna(-1).astype(int))]


def test_default_comparisons(written: tuple[Path, dict[str, str], Tables]) -> None:
    out, pages, _ = written
    cks = meta_of(out, pages, MMLU)["checkpoints"]
    names = [c["name"] for c in cks]
    at = {c["name"]: c for c in cks}

    def name(k: int | None) -> str | None:
        return None if k is None else names[k]

    dpo_cell = CHECKPOINTS[4][0]
    assert name(at["sft/p0.2_r1"]["default"]) == "sft/p0_r1"  # the (0, 1) cell of the same stage
    assert name(at[dpo_cell]["ref"]) == "dpo/p0_r1" and name(at[dpo_cell]["parent"]) == "sft/p0.2_r1"
    assert name(at["dpo/p0_r1"]["default"]) == "sft/p0_r1"  # IT itself: its SFT parent
    assert name(at["sft/p0_r1"]["default"]) == "base" and at["base"]["default"] is None
    assert at["base"]["status"] == ["all: failed: " + EVIL]


def expected_outcomes(tables: Tables, task: str, here: str, there: str, cond: str) -> dict[str, int]:
    """The page's outcome counts for (cell, comparison, condition), computed with pandas."""
    items = tables.items[tables.items["task"] == task].copy()
    items["v"] = items["variant"].fillna(-1).astype(int)
    a = items[items["checkpoint"] == here].set_index(["item_id", "condition", "v"])
    b = items[items["checkpoint"] == there].set_index(["item_id", "condition", "v"])
    counts = dict.fromkeys(["all", "better", "worse", "flip_down", "flip_up", "changed", "failed", "truncated"], 0)
    for item in items["item_id"].unique():
        mine = a.loc[item]
        rows = mine.loc[cond]
        clean = mine.loc["clean"].iloc[0]
        counts["all"] += 1
        paired = [(r.score, b.loc[(item, cond, v)].score) for v, r in rows.iterrows()]
        counts["better"] += any(x > y for x, y in paired if not (pd.isna(x) or pd.isna(y)))
        counts["worse"] += any(x < y for x, y in paired if not (pd.isna(x) or pd.isna(y)))
        if cond != "clean" and not pd.isna(clean.score):
            scores = [s for s in rows["score"] if not pd.isna(s)]
            counts["flip_down"] += any(s < clean.score for s in scores)
            counts["flip_up"] += any(s > clean.score for s in scores)
        if cond != "clean" and _opt(clean.answer) is not None:
            counts["changed"] += any(_opt(x) is not None and x != clean.answer for x in rows["answer"])
        counts["failed"] += bool(rows["score"].isna().any())
        counts["truncated"] += bool((rows["truncated"] > 0).any())
    return counts


NODE = r"""
const path = require("path");
const lib = require(process.argv[2]);
const store = {};
global.window = { EVALSUITE_ITEMS_PUSH: (k, o, b) => { store[k] = lib.resolve(o, b); } };
const folder = process.argv[3], slug = process.argv[4];
require(path.join(folder, slug + ".data.js"));
const meta = store.meta;
const data = (name) => {
  const c = meta.checkpoints.find((x) => x.name === name);
  require(path.join(folder, slug, "c" + c.id + ".js"));
  const d = store["c" + c.id];
  if (d.answer) d.answers = lib.strings(d.answer);
  return d;
};
const here = data(process.argv[5]), there = data(process.argv[6]);
const cond = meta.conditions.indexOf(process.argv[7]);
const sel = lib.select(meta, here, there, cond, -1, "flip_down");
console.log(JSON.stringify({ counts: sel.counts, shown: sel.shown.length }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the page script's filters are "
                    "checked in the browser test instead")
@pytest.mark.parametrize("task,here,there", [(MMLU, CHECKPOINTS[4][0], "dpo/p0_r1"), (MMLU, "base", "sft/p0_r1"),
                                             (MT, "sft/p0.2_r1", "sft/p0_r1")])
@pytest.mark.parametrize("cond", ["clean", "typo"])
def test_page_script_filters_match_pandas(written: tuple[Path, dict[str, str], Tables], tmp_path: Path, task: str,
                                          here: str, there: str, cond: str) -> None:
    out, pages, tables = written
    runner = tmp_path / "run.js"
    runner.write_text(NODE)
    slug = Path(pages[task]).stem
    got = json.loads(subprocess.run(
        ["node", str(runner), str(Path(report_items.__file__).parent / "static/items.js"), str(out / "items"), slug,
         here, there, cond], capture_output=True, text=True, check=True).stdout)
    want = expected_outcomes(tables, task, here, there, cond)
    assert got["counts"] == {k: v for k, v in want.items() if k in got["counts"]}
    kinds = {"flip_down", "flip_up", "changed"} if cond != "clean" else set()
    offered = {"all", "better", "worse", "failed", "truncated"} | kinds
    assert set(got["counts"]) == offered
    assert got["shown"] == got["counts"].get("flip_down", 0)


def test_reads_a_run_folder_one_checkpoint_at_a_time(tmp_path: Path) -> None:
    """Tables from `read_run(run, item_columns=[])` (items not in memory): the records are read from the run
    folder's items.parquet, and the pages are the same bytes as from the tables in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evalsuite.run import records

    tables = make_tables()
    run = tmp_path / "run"
    (run / records.ITEMS).mkdir(parents=True)
    items = tables.items.reindex(columns=records.ITEMS_COLUMNS)
    for k, (name, part) in enumerate(items.groupby("checkpoint", sort=False)):
        pq.write_table(pa.Table.from_pandas(part, schema=records.schema(records.ITEMS_TYPES), preserve_index=False),
                       records.item_part(run, k))
    for frame, name, types in ((tables.prompts, records.PROMPTS, records.PROMPTS_TYPES),
                               (tables.checkpoints, records.CHECKPOINTS, records.CHECKPOINTS_TYPES),
                               (tables.results, records.RESULTS, records.RESULTS_TYPES)):
        pq.write_table(pa.Table.from_pandas(frame.reindex(columns=list(types)), schema=records.schema(types),
                                            preserve_index=False), run / name)
    (run / "run.json").write_text(json.dumps({"records_version": records.RECORDS_VERSION}))
    lazy = records.read_run(run, item_columns=[])
    assert lazy.items.empty
    write_item_pages(make_tables(), tmp_path / "memory")
    write_item_pages(lazy, tmp_path / "disk", workers=1)
    write_item_pages(lazy, tmp_path / "pool", workers=2)  # two processes, checkpoints dealt out between them
    names = sorted(p.relative_to(tmp_path / "memory") for p in (tmp_path / "memory").rglob("*") if p.is_file())
    for other in ("disk", "pool"):
        assert names == sorted(p.relative_to(tmp_path / other) for p in (tmp_path / other).rglob("*") if p.is_file())
        for name in names:
            assert (tmp_path / "memory" / name).read_bytes() == (tmp_path / other / name).read_bytes(), (other, name)


def test_experiments_and_empty_tables(tmp_path: Path) -> None:
    tables = make_tables()
    pages = write_item_pages(tables, tmp_path, experiments=["other/grid#00000000"])
    listed = read_push(tmp_path / pages[MMLU].replace(".html", ".data.js"))[1]["checkpoints"]
    assert [c["name"] for c in listed] == ["base"]  # only the base model is not of another experiment
    empty = Tables(tables.items.iloc[0:0], tables.prompts.iloc[0:0], tables.checkpoints, tables.results)
    assert write_item_pages(empty, tmp_path / "none") == {}


def test_page_link() -> None:
    assert report_items.page_link({"t": "items/t.html"}, "t", "dpo/p0.2 r1") == "items/t.html#cell=dpo%2Fp0.2%20r1"
    assert report_items.page_link({}, "t", "x") is None


def _chromium() -> str | None:
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_item_page_in_a_real_browser(written: tuple[Path, dict[str, str], Tables], tmp_path: Path) -> None:
    """From file:// with every other request blocked: no console error, the filters' counts as computed here,
    data shown as text (the `<script>` in answers stays text), a screenshot saved."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: the browser test must run; install chromium and playwright (make setup)")
        pytest.skip("no chromium or playwright here")
    from playwright.sync_api import sync_playwright

    out, pages, tables = written
    here, there = CHECKPOINTS[4][0], "dpo/p0_r1"
    errors: list[str] = []
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chrome.new_page(viewport={"width": 1300, "height": 900})

        def route(r: Any) -> None:
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                errors.append("request " + r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append("dialog " + d.message), d.dismiss()))
        from urllib.parse import quote

        page.goto((out / pages[MMLU]).resolve().as_uri() + "#cell=" + quote(here, safe=""))
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#ctl-compare") == str(
            [c["name"] for c in meta_of(out, pages, MMLU)["checkpoints"]].index(there))
        assert len(page.query_selector_all("#items article.item")) == 12
        page.select_option("#ctl-condition", label="typo")
        page.wait_for_selector("body[data-ready='1']")
        want = expected_outcomes(tables, MMLU, here, there, "typo")
        labels = {o.get_attribute("value"): o.text_content() for o in page.query_selector_all("#ctl-outcome option")}
        for key in ("better", "worse", "flip_down", "flip_up", "changed"):
            assert labels[key].endswith(f"({want[key]})"), (key, labels[key])
        page.select_option("#ctl-outcome", value="flip_down")
        page.wait_for_selector("body[data-ready='1']")
        assert len(page.query_selector_all("#items article.item")) == want["flip_down"]
        assert page.eval_on_selector("#items", "e => e.dataset.count") == str(want["flip_down"])
        assert "outcome=flip_down" in page.evaluate("location.hash")
        page.select_option("#ctl-outcome", value="all")
        page.wait_for_selector("body[data-ready='1']")
        texts = page.eval_on_selector_all("code.answer-text", "els => els.map(e => e.textContent)")
        assert EVIL in texts  # shown as text, not run
        assert page.evaluate("document.querySelectorAll('#items script').length") == 0
        assert page.text_content(".trimmed")  # the 5000-character response is marked as trimmed
        page.screenshot(path=str(tmp_path / "items.png"))
        chrome.close()
    assert errors == []
    assert (tmp_path / "items.png").stat().st_size > 1000
