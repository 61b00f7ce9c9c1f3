"""The whole evaluation of one checkpoint as a user times it: `evalsuite run` against the `lm_eval` CLI on the same
tasks, items, backend and dtype, wall time from the shell (start-up, imports, model load and writing included),
in one run.

    .venv/bin/python perf/eval_e2e.py [--model smollm2-135m-instruct] [--mmlu-subjects 6] [--per-subset 5]
        [--bbh-tasks 4] [--ifeval 10] [--max-new-tokens 64] [--backend hf] [--dtype float32] [--out /tmp/eval-e2e]

The items: the first N of MMLU's first subjects (log-likelihood, 0-shot), of BBH's first tasks (zero-shot,
generative) and of IFEval (generative), all from the offline data (`evalsuite data prepare`), written once as the
data both tools read (lm-eval through local JSON tasks that `include` its own task YAMLs, so its prompts,
answer extraction and metrics are its own). Generation is capped at `--max-new-tokens` for both (lm-eval:
`--gen_kwargs max_gen_toks=N`). Both use batch size 16.

1. Clean: `evalsuite run --perturb ''` vs one `lm_eval` run; both tools' scores are printed side by side.
2. Clean + typo, rephrase and format (2 variants each): one `evalsuite run`, against what a user of lm-eval does:
   four runs, on the data and on three perturbed copies (our variants' texts, given to lm-eval as each task's
   `doc_to_text`, so both tools ask the same prompts; the format kind's relabelled options keep lm-eval's own
   choice labels, the same number of requests).
3. Where the time goes: each CLI's start-up (`--help`), the model load (the same for both), and the rest.

Prints wall times and the ratios lm-eval / evalsuite (target ≥ 1.5 on the clean run here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def env() -> dict[str, str]:
    """Offline, and lm-eval's IFEval checkers on the sentence splitter ours use (evalsuite's NLTK data folder)."""
    from evalsuite.benchmarks.nltk_data import nltk_dir

    return {**os.environ, **OFFLINE, "NLTK_DATA": str(nltk_dir())}


def timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env(), cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return wall


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def select(data: Path, args: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Our data folder with just the chosen rows (both tools read these), and the subsets chosen."""
    from evalsuite.rows import read_rows

    folder = out / "data"
    shutil.rmtree(folder, ignore_errors=True)
    mmlu = read_rows(str(data / "mmlu" / "test.jsonl"))
    subjects = sorted({r["subject"] for r in mmlu})[: args.mmlu_subjects]
    rows = [r for s in subjects for r in [x for x in mmlu if x["subject"] == s][: args.per_subset]]
    write_jsonl(folder / "mmlu" / "test.jsonl", rows)
    tasks = sorted(p.stem for p in (data / "bbh").glob("*.json"))[: args.bbh_tasks]
    for task in tasks:
        doc = json.loads((data / "bbh" / f"{task}.json").read_text())
        (folder / "bbh").mkdir(parents=True, exist_ok=True)
        (folder / "bbh" / f"{task}.json").write_text(json.dumps({**doc, "examples": doc["examples"][: args.per_subset]}))
    ifeval = read_rows(str(next((data / "ifeval").glob("test.*"))))[: args.ifeval]
    write_jsonl(folder / "ifeval" / "test.jsonl", ifeval)
    bbh = sum(len(json.loads((folder / "bbh" / f"{t}.json").read_text())["examples"]) for t in tasks)
    return folder, {"mmlu": subjects, "bbh": tasks, "counts": {"mmlu": len(rows), "bbh": bbh, "ifeval": len(ifeval)}}


LM_TASKS = {"mmlu": ("mmlu/default/_default_template_yaml", "test"), "bbh": ("bbh/zeroshot/{subset}.yaml", "test"),
            "ifeval": ("ifeval/ifeval.yaml", "train")}


def conditions(folder: Path, args: argparse.Namespace, kinds: list[str]) -> dict[str, dict[tuple[str, str], list[dict]]]:
    """Per condition (clean, each kind): (benchmark, subset) -> the rows to ask, built by our own run code (the
    items' docs as lm-eval reads them; a variant's row also carries its prompt body, `variant_text`)."""
    from evalsuite.run.pipeline import prepare_tasks
    from evalsuite.run.types import RunSettings

    settings = RunSettings(benchmarks=specs(args), kinds=kinds, data=str(folder), options=run_options(args))
    out: dict[str, dict[tuple[str, str], list[dict]]] = {c: {} for c in ["clean", *kinds]}
    for task in prepare_tasks(settings, lambda _: None):
        name = task.bench.name
        for item in task.items:
            out["clean"].setdefault((name, item.subset), []).append(item.doc)
        for kind, (variants, _) in task.variants.items():
            for v in variants:
                out[kind].setdefault((name, v.subset), []).append({**v.doc, "variant_text": v.perturbed.text})
    return out


def lm_eval_tasks(rows: dict[tuple[str, str], list[dict]], out: Path) -> list[str]:
    """lm-eval task YAMLs, one per subset, over `rows` (with `variant_text`: asked in that text)."""
    from evalsuite.benchmarks.lmeval import tasks_dir

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for (bench, subset), docs in rows.items():
        include, split = LM_TASKS[bench]
        name = f"e2e_{bench}_{subset}" if bench != "ifeval" else "e2e_ifeval"
        files = {split: write_jsonl(out / "files" / f"{name}.jsonl", docs)}
        extra: dict = {"doc_to_text": "{{variant_text}}"} if "variant_text" in docs[0] else {}
        if bench == "mmlu":
            files["dev"] = files["test"]  # never read at 0-shot; lm-eval's MMLU YAML names a few-shot split
            extra |= {"num_fewshot": 0, "description": "The following are multiple choice questions (with answers) "
                                                       f"about {subset.replace('_', ' ')}.\n\n"}
        config = {"task": name, "include": str(tasks_dir() / include.format(subset=subset)), "dataset_path": "json",
                  "dataset_name": None, "dataset_kwargs": {"data_files": files}, **extra}
        (out / f"{name}.yaml").write_text(json.dumps(config))
        names.append(name)
    return names


def specs(args: argparse.Namespace) -> list[str]:
    chosen = args.benchmarks.split(",")
    return [spec for name, spec in (("mmlu", "mmlu"), ("bbh", "bbh:zeroshot"), ("ifeval", "ifeval")) if name in chosen]


def run_options(args: argparse.Namespace) -> dict:
    return {"bbh": {"max_new_tokens": args.max_new_tokens}, "ifeval": {"max_new_tokens": args.max_new_tokens}}


def ours(model: Path, folder: Path, args: argparse.Namespace, kinds: str, out: Path) -> tuple[float, dict]:
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "backend": {"kind": args.backend, "dtype": args.dtype, "batch_size": 16,
                    **({"max_length": 2048, "gpu_memory_utilization": 0.5} if args.backend == "vllm" else {})},
        "run": {"benchmarks": specs(args), "data": str(folder)},
        "benchmark_options": run_options(args)}))
    shutil.rmtree(out / "run", ignore_errors=True)
    wall = timed([str(BIN / "evalsuite"), "run", "--models", str(model), "--config", str(run_file), "--perturb", kinds,
                  "--out", str(out / "run"), "--no-report"], out / "evalsuite.log")
    import pandas as pd

    table = pd.read_parquet(out / "run" / "results.parquet")
    clean = table[(table["condition"] == "clean") & (table["metric"] == "score")]
    return wall, {r.benchmark: round(float(r.value), 4) for r in clean.itertuples()}


def theirs(model: Path, tasks: list[str], include: Path, args: argparse.Namespace, out: Path) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model_args = f"pretrained={model},dtype={args.dtype}" + ("" if args.backend == "hf" else
                                                 ",gpu_memory_utilization=0.5,max_model_len=2048")
    wall = timed([str(BIN / "lm_eval"), "--model", args.backend, "--model_args", model_args, "--tasks", ",".join(tasks),
                  "--include_path", str(include), "--batch_size", "16",
                  *(["--device", "cpu"] if args.backend == "hf" else []),
                  # the checkpoint's manifest says chat_template, so evalsuite renders every prompt in it; lm-eval
                  # does so when asked (one user turn at 0-shot), else the two would score different prompts
                  "--apply_chat_template", "--gen_kwargs",
                  f"max_gen_toks={args.max_new_tokens}", "--output_path", str(out / "results"), "--seed", "0"],
                 out / "lm_eval.log")
    results = json.loads(next((out / "results").rglob("results_*.json")).read_text())["results"]
    return wall, results


def lm_scores(results: dict) -> dict:
    """lm-eval's results per benchmark, item-weighted as our table reports them (MMLU acc, BBH exact match,
    IFEval prompt-level strict)."""
    def mean(prefix: str, metric: str) -> float | None:
        vals = [(r[metric], r.get("samples", 1)) for k, r in results.items() if k.startswith(prefix) and metric in r]
        return round(sum(v for v, _ in vals) / len(vals), 4) if vals else None
    return {"mmlu": mean("e2e_mmlu_", "acc,none"), "bbh": mean("e2e_bbh_", "exact_match,flexible-extract")
            or mean("e2e_bbh_", "exact_match,none"), "ifeval": mean("e2e_ifeval", "prompt_level_strict_acc,none")}


def startup(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, env=env())
    return time.perf_counter() - start


def model_load(model: Path, dtype: str) -> float:
    code = ("import time, torch; t=time.perf_counter(); from transformers import AutoModelForCausalLM; "
            f"AutoModelForCausalLM.from_pretrained({str(model)!r}, dtype=getattr(torch, {dtype!r})); "
            "print(time.perf_counter()-t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--mmlu-subjects", type=int, default=6)
    parser.add_argument("--per-subset", type=int, default=5)
    parser.add_argument("--bbh-tasks", type=int, default=4)
    parser.add_argument("--ifeval", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", type=Path, default=Path("/tmp/eval-e2e"))
    parser.add_argument("--benchmarks", default="mmlu,bbh,ifeval", help="any of mmlu, bbh, ifeval")
    parser.add_argument("--skip-perturbed", action="store_true")
    args = parser.parse_args()

    from evalsuite.benchmarks.prepare import default_data_dir, prepare_data
    from evalsuite.models.prepare import resolve_model

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    weights = Path(resolve_model(args.model))
    models = out / "models"  # the checkpoint as the one model `evalsuite run --models` finds
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir()
    (models / "model").symlink_to(weights)
    # BBH offline: lm-eval's few-shot exemplars (3 per task; no BBH test split ships in a PyPI package)
    data = prepare_data(default_data_dir(), bbh_source="lm-eval-exemplars", log=lambda _: None)
    folder, subsets = select(data, args, out)
    n = subsets["counts"]
    print(f"model {weights.name} ({args.backend}, {args.dtype}); MMLU {n['mmlu']} items of {len(subsets['mmlu'])} "
          f"subjects (log-likelihood), BBH zero-shot {n['bbh']} items of {len(subsets['bbh'])} tasks, "
          f"IFEval {n['ifeval']}; "
          f"generation capped at {args.max_new_tokens} tokens; batch 16")

    kinds = [] if args.skip_perturbed else ["typo", "rephrase", "format"]
    asked = conditions(folder, args, kinds)  # builds the IFEval sentence splitter where it is missing
    tasks = lm_eval_tasks(asked["clean"], out / "lm_tasks" / "clean")
    t_lm, lm_res = theirs(weights, tasks, out / "lm_tasks" / "clean", args, out / "lm_clean")
    t_ours, our_scores = ours(models, folder, args, "", out / "ours_clean")
    print("\n1. clean, one checkpoint (wall s, from the shell)")
    print(f"   evalsuite run --perturb ''   {t_ours:7.1f}")
    print(f"   lm_eval                      {t_lm:7.1f}   lm-eval / evalsuite = {t_lm / t_ours:.2f}x (target >= 1.5)")
    print(f"   scores: evalsuite {our_scores}")
    print(f"           lm-eval   {lm_scores(lm_res)}")

    results = {"clean": {"evalsuite_s": t_ours, "lm_eval_s": t_lm, "ratio": t_lm / t_ours,
                         "evalsuite_scores": our_scores, "lm_eval_scores": lm_scores(lm_res)}}
    if not args.skip_perturbed:
        t_lm_all = t_lm
        for kind in kinds:
            k_tasks = lm_eval_tasks(asked[kind], out / "lm_tasks" / kind)
            t_lm_all += theirs(weights, k_tasks, out / "lm_tasks" / kind, args, out / f"lm_{kind}")[0]
        t_ours_all, _ = ours(models, folder, args, ",".join(kinds), out / "ours_all")
        print("\n2. clean + typo, rephrase, format (2 variants per item each)")
        print(f"   evalsuite run (one run, POSIX included)  {t_ours_all:7.1f}")
        print(f"   lm_eval, four runs (clean + 3 copies)     {t_lm_all:7.1f}   ratio {t_lm_all / t_ours_all:.2f}x")
        results["perturbed"] = {"evalsuite_s": t_ours_all, "lm_eval_s": t_lm_all, "ratio": t_lm_all / t_ours_all}

    s_ours = startup([str(BIN / "evalsuite"), "run", "--help"])
    s_lm = startup([str(BIN / "lm_eval"), "--help"])
    load = model_load(weights, args.dtype)
    print("\n3. where the time goes (clean run)")
    print(f"   CLI start-up (--help):  evalsuite {s_ours:5.1f} s   lm_eval {s_lm:5.1f} s")
    print(f"   model load ({args.dtype}): {load:5.1f} s each (same weights, same loader)")
    print(f"   the rest (data, prompts, model calls, scoring, writing): evalsuite {t_ours - s_ours - load:6.1f} s   "
          f"lm_eval {t_lm - s_lm - load:6.1f} s")
    results["startup"] = {"evalsuite_s": s_ours, "lm_eval_s": s_lm, "model_load_s": load}
    (out / "eval_e2e.json").write_text(json.dumps(results, indent=2))
    print(f"\nlogs and results in {out}")


if __name__ == "__main__":
    main()
