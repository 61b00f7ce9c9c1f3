"""AlpacaEval: win rate of the model's answers against reference answers, judged pairwise, through the
`alpaca-eval` package.

alpaca-eval supplies everything that defines the metric: the annotator config (`alpaca_eval_gpt4` by
default: the AlpacaEval 1.0 ranking prompt and `ranking_parser`), the seeded random order of the two
outputs per instruction, and `get_winrate`. Only the completions go through our `Judge` (any OpenAI-compatible endpoint or a local checkpoint,
cached, retried when the ranking cannot be parsed). The reported metric is the plain win rate (AlpacaEval
1.0's, the WIT paper's); the length-controlled one is not computed (see `AlpacaEval.aggregate`), so scoring
never touches the network.
Rows: `instruction` and the reference `output` (AlpacaEval's layout; the prepared data holds the 805
instructions with gpt4_1106_preview outputs, the hub's `tatsu-lab/alpaca_eval` the 1.0 references).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

from pydantic import PositiveInt

from evalsuite.backends import GenerationRequest
from evalsuite.benchmarks.base import Benchmark, Item, Request, Sample, generation_arguments
from evalsuite.benchmarks.data import load_split, subsample
from evalsuite.benchmarks.judge import Judge
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.registry import register
from evalsuite.errors import ConfigError, EvalsuiteError

HUB_ID = "tatsu-lab/alpaca_eval"
ANNOTATOR = "alpaca_eval_gpt4"
MAX_NEW_TOKENS = 2048


def load_rows(source: Any) -> list[dict[str, Any]]:
    path = Path(str(source)).expanduser()
    folder = path / "alpacaeval" if (path / "alpacaeval").is_dir() else path
    if folder.is_dir() and (folder / "test.json").is_file():
        rows = json.loads((folder / "test.json").read_text())
    else:
        rows = load_split(source, "alpacaeval", "test" if path.exists() else "eval", hub_name="alpaca_eval")
    for i, row in enumerate(rows):
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise ConfigError(f"AlpacaEval row {i}: needs string `instruction` and reference `output`")
    return rows


def _ranked(text: str) -> int | None:
    from alpaca_eval.completion_parsers import ranking_parser

    try:
        value = ranking_parser(text)[0]
    except ValueError:  # empty completion
        return None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


@register
class AlpacaEval(Benchmark):
    name = "alpacaeval"
    variants = ("winrate",)
    needs_judge = True

    primary = ("win", "none")

    def __init__(self, variant: str | None = None, judge: Judge | None = None,
                 max_new_tokens: PositiveInt | None = None, annotator: str = ANNOTATOR) -> None:
        super().__init__(variant)
        self.judge = judge
        self.annotator = annotator
        self.max_new_tokens = max_new_tokens or MAX_NEW_TOKENS

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "annotator": self.annotator, "max_new_tokens": self.max_new_tokens,
                "judge": self.judge.describe() if self.judge else None}

    def load(self, source: Any = HUB_ID, limit: int | None = None, seed: int | None = None) -> list[Item]:
        items = []
        for row in load_rows(source):
            digest = hashlib.sha256(row["instruction"].encode()).hexdigest()[:12]
            items.append(Item(f"alpacaeval/{digest}", row.get("dataset", "alpacaeval"),
                              {"instruction": row["instruction"], "output": row["output"],
                               "generator": row.get("generator", "reference"), "dataset": row.get("dataset", "")},
                              row["output"]))
        return subsample(items, lambda it: it.id, lambda it: "all", limit, seed)

    def perturbation_item(self, item: Item) -> Any:
        from perturbations.benchmarks import alpacaeval_item

        return alpacaeval_item(item.id, item.doc)

    def clean_prompt(self, item: Item) -> str:
        return item.doc["instruction"]

    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        # a perturbed instruction is asked; the judge compares answers to the original one
        return [GenerationRequest(prompt=prompter.context(self.prompt_turns(item)[0]), max_new_tokens=self.max_new_tokens)]

    def judgement(self, sample: Sample) -> str | None:
        text = sample.extra.get("raw_completion")
        return text if isinstance(text, str) else None

    def annotate(self, instructions: Sequence[str], references: Sequence[str], outputs: Sequence[str]) -> list[dict[str, Any]]:
        """alpaca-eval's pairwise annotations of (reference, output) per position, in the order given: alpaca-eval's
        prompt, seeded output order and parser; our judge answers the completions. Positional (`is_ordered`),
        because several variants of one item share its instruction."""
        from alpaca_eval.annotators import PairwiseAnnotator
        from alpaca_eval.utils import prompt_to_chatml

        def completions(prompts: Sequence[str], **_: Any) -> dict[str, list[Any]]:  # alpaca-eval's fn_completions
            verdicts = self.judge.complete([prompt_to_chatml(p) for p in prompts], _ranked)
            return {"completions": [v.text for v in verdicts], "price_per_example": [0.0] * len(prompts),
                    "time_per_example": [0.0] * len(prompts)}

        annotator = PairwiseAnnotator(annotators_config=self.annotator, caching_path=None, is_avoid_reannotations=False)
        for single in annotator.annotators.values():
            single.fn_completions = completions
        reference = [{"instruction": i, "output": r, "generator": "reference"} for i, r in zip(instructions, references)]
        model = [{"instruction": i, "output": o, "generator": "model"} for i, o in zip(instructions, outputs)]
        annotations = annotator.annotate_head2head(outputs_1=reference, outputs_2=model, is_ordered=True)
        if len(annotations) != len(outputs) or any(a["instruction"] != i for a, i in zip(annotations, instructions)):
            raise EvalsuiteError(f"alpaca-eval returned {len(annotations)} annotations for {len(outputs)} answers, "
                                 "not one per answer in order")
        return annotations

    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        if self.judge is None:
            raise ConfigError("AlpacaEval needs a judge (--judge-model ...)")
        outputs = [resps[0].text for resps in responses]
        annotations = self.annotate([it.doc["instruction"] for it in items], [it.doc["output"] for it in items], outputs)
        samples = []
        for i, (item, reqs, output, ann) in enumerate(zip(items, requests, outputs, annotations)):
            pref = ann.get("preference")
            valid = pref is not None and not (isinstance(pref, float) and math.isnan(pref))
            # alpaca-eval's preference: 1 = reference wins, 2 = the model wins, 1.5 = draw.
            metrics = {"win": (float(pref) - 1.0) if valid else None, "judge_failed": float(not valid)}
            samples.append(Sample(doc_id=i, item_id=item.id, perturbed=item.perturbed, subset="alpacaeval", doc=item.doc,
                                  target=item.doc["output"], arguments=[generation_arguments(r) for r in reqs],
                                  resps=[[output]], filtered_resps=[float(pref) if valid else None], filter="none",
                                  metrics=metrics, prompt_format=prompter.format,
                                  extra={"raw_completion": ann.get("preference_raw_completion")}))
        return samples

    def aggregate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """lm-eval-style means plus alpaca-eval's own `get_winrate` over every judged sample (all prompt-format
        groups, all variants: computed from the samples, nothing else). The length-controlled win rate is not
        computed: its GLM needs alpaca-eval's `df_gamed.csv` from the hub and instruction indices of the full
        805-item set in alpaca-eval's order, which subsets and perturbed variants do not have."""
        from alpaca_eval.metrics import get_winrate

        results = super().aggregate(samples)
        row = results["all"] if samples else results.setdefault("all", {"n": 0})
        row["judge_failed_count"] = int(sum(s.metrics["judge_failed"] for s in samples))
        judged = [{"preference": s.filtered_resps[0]} for s in samples if s.filtered_resps[0] is not None]
        if judged:
            row.update({f"{k},none": float(v) for k, v in get_winrate(judged).items()})
        row["reported"] = "win_rate"
        return results
