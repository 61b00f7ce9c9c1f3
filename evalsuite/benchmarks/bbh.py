"""BIG-Bench Hard: lm-eval's zero-shot setting (the WIT paper's) and its 3-shot chain-of-thought setting.

Everything task-specific comes from lm-eval's own task YAMLs (`bbh/zeroshot/<task>.yaml`,
`bbh/cot_fewshot/<task>.yaml`): the description, "Q: {input}\\nA:" (or "...A: Let's think step by
step.\\n" with the three worked exemplars), the stop strings, the per-task answer filters and the
exact-match options.
- `zeroshot`: filters `strict-match` (the whole response) and `flexible-extract` (the task's regex, e.g.
  `(\\([A-Z]\\))` for multiple choice, True/False, a number); exact match ignoring case and a few
  characters (lm-eval's `regexes_to_ignore`).
- `cot`: filter `get-answer`, the text after "the answer is " up to the final character; exact match.
Rows: `input`, `target` (and `task` when several tasks share one file).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from pydantic import PositiveInt

from evalsuite.backends import GenerationRequest
from evalsuite.benchmarks.base import Benchmark, Item, Request, Sample, generation_arguments, raw_response
from evalsuite.benchmarks.data import load_split, subsample
from evalsuite.benchmarks.lmeval import exact_match, filters_of, metric_options, render, task_config, tasks_dir
from evalsuite.benchmarks.prompting import Prompter, Shot
from evalsuite.benchmarks.registry import register
from evalsuite.errors import ConfigError
from evalsuite.rows import read_jsonl_rows

HUB_ID = "SaylorTwift/bbh"
# Named as a source: the 3 exemplars per task in lm-eval's `bbh/fewshot/<task>.yaml` (81 real BBH items in
# BBH's own format, from the BBH repository's prompts). Not the test split: a smoke-test source for machines
# with no copy of BBH, refused for CoT, whose prompts contain these very items with worked answers.
EXEMPLARS = "lm-eval-exemplars"
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default where a task sets none


def task_names() -> list[str]:
    # `_bbh_zeroshot.yaml` is lm-eval's group file, not a task
    return sorted(p.stem for p in (tasks_dir() / "bbh" / "zeroshot").glob("*.yaml") if not p.stem.startswith("_"))


def load_task_rows(source: Any, task: str) -> list[dict[str, Any]] | None:
    """A task's rows from a folder of `<task>.json` files (BIG-Bench-Hard's `{"examples": [...]}` layout) or
    `<task>.jsonl` files, a single file with a `task` column, a prepared data folder, or the hub."""
    if str(source) == EXEMPLARS:
        return [{"input": s["input"], "target": s["target"]}
                for s in task_config(f"bbh/fewshot/{task}.yaml")["fewshot_config"]["samples"]]
    path = Path(str(source)).expanduser()
    if path.is_dir():
        folder = path / "bbh" if (path / "bbh").is_dir() else path
        for candidate in (folder / f"{task}.json", folder / f"{task}.jsonl"):
            if candidate.is_file():
                return _read_task_file(candidate)
        return None
    if path.is_file():
        rows = load_split(path, "bbh", "test")
        return [r for r in rows if r.get("task") == task]
    return load_split(source, "bbh", "test", hub_name=task, required=False)


def source_of(source: Any) -> str:
    """Where BBH items really come from: a prepared folder's recorded `bbh_source`, else `source` itself."""
    manifest = Path(str(source)).expanduser() / "evalsuite-data.json"
    if manifest.is_file():
        return str(json.loads(manifest.read_text()).get("bbh_source") or source)
    return str(source)


def _read_task_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "examples" in data:
            return data["examples"]
        if isinstance(data, list):
            return data
        raise ConfigError(f"{path}: expected BIG-Bench-Hard's {{\"examples\": [...]}} or a list of rows")
    return read_jsonl_rows(path)


@register
class BBH(Benchmark):
    name = "bbh"
    variants = ("zeroshot", "cot")

    def __init__(self, variant: str | None = None, tasks: Sequence[str] | None = None,
                 max_new_tokens: PositiveInt | None = None) -> None:
        super().__init__(variant)
        self.max_new_tokens = max_new_tokens  # None: the task's own (lm-eval's `max_gen_toks`)
        known = task_names()
        unknown = sorted(set(tasks or ()) - set(known))
        if unknown:
            raise ConfigError(f"unknown BBH task(s) {', '.join(unknown)}")
        self.tasks = list(tasks) if tasks else known
        folder = "zeroshot" if self.variant == "zeroshot" else "cot_fewshot"
        self.configs = {t: task_config(f"bbh/{folder}/{t}.yaml") for t in self.tasks}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "tasks": self.tasks, "max_new_tokens": self.max_new_tokens}

    def provenance(self, source: Any = HUB_ID) -> dict[str, Any]:
        return {"bbh_source": source_of(source)}

    def load(self, source: Any = HUB_ID, limit: int | None = None, seed: int | None = None) -> list[Item]:
        if source_of(source) == EXEMPLARS and self.variant == "cot":
            raise ConfigError(f"bbh:cot cannot run on the {EXEMPLARS} source: its 3-shot CoT prompts contain these "
                              "same items with their worked answers (use BBH's test split: --bbh-source / --data)")
        items: list[Item] = []
        found = 0
        for task in self.tasks:
            rows = load_task_rows(source, task)
            if rows is None:
                continue
            found += 1
            seen: Counter[str] = Counter()
            for i, row in enumerate(rows):
                if not isinstance(row.get("input"), str) or not isinstance(row.get("target"), str):
                    raise ConfigError(f"BBH {task} row {i}: needs string `input` and `target`")
                doc = {"input": row["input"], "target": row["target"]}
                base = f"{task}/{hashlib.sha256(row['input'].encode()).hexdigest()[:12]}"
                items.append(Item(base if not seen[base] else f"{base}-{seen[base]}", task, doc, row["target"]))
                seen[base] += 1
        if not found:
            raise ConfigError(f"no BBH task data found in {source}")
        return subsample(items, lambda it: it.id, lambda it: it.subset, limit, seed)

    def perturbation_item(self, item: Item) -> Any:
        from perturbations.benchmarks import bbh_item

        return bbh_item(item.id, item.subset, item.doc, cot=self.variant == "cot")

    def clean_prompt(self, item: Item) -> str:
        return render(self.configs[item.subset]["doc_to_text"], item.doc)

    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        config = self.configs[item.subset]
        shots = [Shot(render(config["doc_to_text"], s), s["target"])
                 for s in config.get("fewshot_config", {}).get("samples", [])][: config.get("num_fewshot", 0)]
        context = prompter.context(self.prompt_turns(item)[0], description=config.get("description", ""),
                                   shots=shots, target_delimiter=config.get("target_delimiter", " "),
                                   fewshot_delimiter=config.get("fewshot_delimiter", "\n\n"))
        gen = config["generation_kwargs"]
        max_new = self.max_new_tokens or gen.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
        return [GenerationRequest(prompt=context, max_new_tokens=max_new, stop=tuple(gen["until"]))]

    def primary_for(self) -> tuple[str, str]:
        return ("exact_match", "flexible-extract") if self.variant == "zeroshot" else ("exact_match", "get-answer")

    @staticmethod
    def _read_back(item: Item, text: str) -> str:
        """An answer to a relabelled variant with its option labels rewritten in BBH's "(A)" (the targets')."""
        if item.perturbed is None or not item.perturbed.option_style:
            return text
        from perturbations.benchmarks import split_bbh_options
        from perturbations.document import relabel

        _, options = split_bbh_options(item.doc["input"])
        return relabel(text, item.perturbed.option_style, "(A)", len(options or ()))

    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        samples: list[Sample] = []
        for task in self.tasks:
            idx = [i for i, it in enumerate(items) if it.subset == task]
            if not idx:
                continue
            config = self.configs[task]
            options = metric_options(config, "exact_match")
            raw = [responses[i][0].text for i in idx]
            texts = [self._read_back(items[i], text) for i, text in zip(idx, raw)]
            docs = [items[i].doc for i in idx]
            for pipeline in filters_of(config):
                for doc_id, (i, text, said, extracted) in enumerate(zip(idx, texts, raw, pipeline.apply(texts, docs))):
                    item = items[i]
                    samples.append(Sample(
                        doc_id=doc_id, item_id=item.id, perturbed=item.perturbed, subset=task, doc=item.doc, target=item.target,
                        arguments=[generation_arguments(r) for r in requests[i]], resps=[[text]],
                        filtered_resps=[extracted], filter=pipeline.name,
                        metrics={"exact_match": exact_match(extracted, item.target, options)},
                        prompt_format=prompter.format, extra=raw_response(said, text)))
        return samples
