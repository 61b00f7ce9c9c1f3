"""IFEval: Google's verifiable-instruction benchmark, scored by lm-eval's port of Google's checkers.

Greedy generation up to 1,280 new tokens (lm-eval's setting) on the bare prompt (or the prompt as a user
turn under a chat template). Each response is checked strictly and loosely (the loose check also tries the
response without its first / last line and without `*`), giving the four metrics
`prompt_level_strict_acc`, `inst_level_strict_acc`, `prompt_level_loose_acc`, `inst_level_loose_acc`; the
instruction-level ones average over all instructions (lm-eval's `agg_inst_level_acc`).
Determinism: langdetect and `random` are seeded before every check (`seed_checkers`). The sentence splitter
is NLTK's `punkt_tab` (see `nltk_data.py`; the result records whether the official model was used).
Rows: Google's `input_data.jsonl` layout (`key, prompt, instruction_id_list, kwargs`), as in `google/IFEval`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import PositiveInt

from evalsuite.backends import GenerationRequest
from evalsuite.benchmarks.base import Benchmark, Item, Request, Sample, generation_arguments
from evalsuite.benchmarks.data import load_split, subsample
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.registry import register
from evalsuite.errors import ConfigError

HUB_ID = "google/IFEval"
MAX_GEN_TOKS = 1280
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


def load_rows(source: Any) -> list[dict[str, Any]]:
    rows = load_split(source, "ifeval", "test" if Path(str(source)).exists() else "train")
    for i, row in enumerate(rows):
        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
        if not isinstance(row.get("prompt"), str) or not isinstance(ids, list) or not isinstance(kwargs, list) \
                or len(ids) != len(kwargs):
            raise ConfigError(f"IFEval row {i}: needs prompt, instruction_id_list and kwargs of the same length")
    return rows


def offline_text(source: Any) -> Iterable[str]:
    """English text for the fallback sentence splitter: the prepared AlpacaEval reference outputs if present,
    else the IFEval prompts."""
    folder = Path(str(source)).expanduser()
    alpaca = (folder if folder.is_dir() else folder.parent) / "alpacaeval" / "test.json"
    if alpaca.is_file():
        return [r["output"] for r in json.loads(alpaca.read_text())]
    return [r["prompt"] for r in load_rows(source)]


class Checker:
    """lm-eval's strict and loose IFEval checks with langdetect seeded. `training_text` is English text for a
    fallback sentence splitter, used only where NLTK's official `punkt_tab` is missing (see `nltk_data`)."""

    def __init__(self, training_text: Callable[[], Iterable[str]], log: Any = print) -> None:
        from evalsuite.benchmarks.nltk_data import ensure_punkt

        self.punkt = ensure_punkt(training_text, log)

    def check(self, doc: dict[str, Any], response: str) -> tuple[Any, Any]:
        from lm_eval.tasks.ifeval import utils

        inp = utils.InputExample(key=doc.get("key", 0), instruction_id_list=doc["instruction_id_list"],
                                 prompt=doc["prompt"], kwargs=doc["kwargs"])
        seed_checkers()
        strict = utils.test_instruction_following_strict(inp, response)
        seed_checkers()
        loose = utils.test_instruction_following_loose(inp, response)
        return strict, loose


def seed_checkers() -> None:
    """Google's checkers draw from unseeded generators: langdetect, and `random` wherever a kwarg is unusable
    (IFEval keys 1122 and 1129 ask for the "letter" '#' and '!', so `letter_frequency` picks a random letter).
    Seeding both before each check makes every verdict reproducible."""
    import random

    from langdetect import DetectorFactory

    DetectorFactory.seed = 0
    random.seed(0)


@register
class IFEval(Benchmark):
    name = "ifeval"
    variants = ("default",)

    primary = ("prompt_level_strict_acc", "none")

    def __init__(self, variant: str | None = None, max_new_tokens: PositiveInt | None = None) -> None:
        super().__init__(variant)
        self.max_new_tokens = max_new_tokens or MAX_GEN_TOKS

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "max_new_tokens": self.max_new_tokens}

    def provenance(self, source: Any = HUB_ID) -> dict[str, Any]:
        """Which sentence splitter the checkers use (official `punkt_tab` or a fallback trained offline on the
        data's English text): sentence-count instructions can be judged differently by the two."""
        return {"punkt": Checker(lambda: offline_text(source)).punkt}

    def load(self, source: Any = HUB_ID, limit: int | None = None, seed: int | None = None) -> list[Item]:
        items = [Item(f"ifeval/{row['key']}", "ifeval",
                      {"key": row["key"], "prompt": row["prompt"], "instruction_id_list": row["instruction_id_list"],
                       "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in row["kwargs"]]}, 0)
                 for row in load_rows(source)]
        return subsample(items, lambda it: it.id, lambda it: it.subset, limit, seed)

    def item_result(self, sample: Sample) -> tuple[Any, float | None]:
        return None, sample.metrics["prompt_level_strict_acc"]  # free text: no answer to compare across variants

    def perturbation_item(self, item: Item) -> Any:
        from perturbations.benchmarks import ifeval_item

        return ifeval_item(item.id, item.doc)

    def clean_prompt(self, item: Item) -> str:
        return item.doc["prompt"]

    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        return [GenerationRequest(prompt=prompter.context(self.prompt_turns(item)[0]), max_new_tokens=self.max_new_tokens)]

    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        checker = Checker(lambda: [it.doc["prompt"] for it in items])  # the splitter `provenance` chose, if it ran
        samples = []
        for i, (item, reqs, resps) in enumerate(zip(items, requests, responses)):
            text = resps[0].text
            strict, loose = checker.check(item.doc, text)
            metrics = {"prompt_level_strict_acc": float(strict.follow_all_instructions),
                       "inst_level_strict_acc": [float(x) for x in strict.follow_instruction_list],
                       "prompt_level_loose_acc": float(loose.follow_all_instructions),
                       "inst_level_loose_acc": [float(x) for x in loose.follow_instruction_list]}
            samples.append(Sample(doc_id=i, item_id=item.id, perturbed=item.perturbed, subset=item.subset, doc=item.doc, target=0,
                                  arguments=[generation_arguments(r) for r in reqs], resps=[[text]],
                                  filtered_resps=[text], filter="none", metrics=metrics, prompt_format=prompter.format))
        return samples


def score_responses(rows: Sequence[dict[str, Any]], source: Any, log: Any = print) -> tuple[list[dict], list[dict], dict]:
    """`evalsuite score ifeval`: rows `{"prompt", "response"}` → Google's `eval_results_strict.jsonl` and
    `eval_results_loose.jsonl` rows and the four metrics. Instruction ids and kwargs are looked up by prompt."""
    by_prompt = {r["prompt"]: r for r in load_rows(source)}
    checker = Checker(lambda: offline_text(source), log)
    strict_rows, loose_rows = [], []
    for n, row in enumerate(rows, 1):
        prompt, response = row.get("prompt"), row.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ConfigError(f"responses row {n}: needs string `prompt` and `response`")
        if prompt not in by_prompt:
            raise ConfigError(f"responses row {n}: prompt not found in the IFEval data ({prompt[:60]!r}...)")
        doc = by_prompt[prompt]
        doc = {**doc, "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in doc["kwargs"]]}
        strict, loose = checker.check(doc, response)
        strict_rows.append(asdict(strict))
        loose_rows.append(asdict(loose))
    summary = {"punkt": checker.punkt, "n": len(rows)}
    for level, outs in (("strict", strict_rows), ("loose", loose_rows)):
        flat = [x for o in outs for x in o["follow_instruction_list"]]
        summary[f"prompt_level_{level}_acc"] = sum(o["follow_all_instructions"] for o in outs) / max(len(outs), 1)
        summary[f"inst_level_{level}_acc"] = sum(flat) / max(len(flat), 1)
    return strict_rows, loose_rows, summary
