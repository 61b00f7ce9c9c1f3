"""MT-Bench: FastChat's 80 two-turn questions, single-answer grading by an LLM judge.

Generation (FastChat `gen_model_answer`): turn 1, then turn 2 with the model's own turn-1 answer in the
conversation; the category's temperature (`TEMPERATURES`; below 1e-4 means greedy), sampled turns seeded
from the question id; at most 1,024 new tokens.
Judging (FastChat `gen_judgment --mode single`): `single-v1` for turn 1 and `single-v1-multi-turn` for turn
2, or their `-math-` versions with GPT-4's reference answers for math, reasoning and coding; the judge
answers greedily (up to 2,048 tokens); the rating is the number in `[[n]]` (else in `[n]`), FastChat's two
patterns. A judgement with no rating is asked again (see `judge.py`); one that never yields a rating is
recorded as failed and excluded from the score, and the failures are counted in the results.
Score: the mean rating over both turns (1-10), and per turn and per category.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Sequence

from pydantic import PositiveInt

from evalsuite.backends import GenerationRequest
from evalsuite.benchmarks.base import Benchmark, Item, Request, Sample, generation_arguments, join_turns
from evalsuite.benchmarks.data import subsample
from evalsuite.benchmarks.judge import Judge
from evalsuite.benchmarks.prompting import Prompter
from evalsuite.benchmarks.registry import register
from evalsuite.errors import ConfigError
from evalsuite.rows import read_jsonl_rows

TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
                "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
MAX_NEW_TOKENS = 1024
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(judgement: str) -> float | None:
    """FastChat's rating parser: `[[n]]`, else `[n]`; None when neither is there."""
    match = ONE_SCORE.search(judgement) or ONE_SCORE_BACKUP.search(judgement)
    if not match:
        return None
    try:
        return float(ast.literal_eval(match.groups()[0]))
    except (ValueError, SyntaxError):
        return None


def load_files(source: Any) -> tuple[list[dict], dict[str, dict], dict[int, list[str]]]:
    """Questions, judge prompts by name, GPT-4 reference answers by question id, from a prepared data folder
    (`mtbench/`) or a FastChat `llm_judge/data/mt_bench`-like folder (with `judge_prompts.jsonl` beside it)."""
    folder = Path(str(source)).expanduser()
    folder = folder / "mtbench" if (folder / "mtbench").is_dir() else folder
    judge_file = next((p for p in (folder / "judge_prompts.jsonl", folder.parent / "judge_prompts.jsonl") if p.is_file()), None)
    if not (folder / "question.jsonl").is_file() or judge_file is None:
        raise ConfigError(f"MT-Bench data needs question.jsonl and judge_prompts.jsonl in {folder} (run `evalsuite data prepare`)")
    refs = {}
    ref_file = folder / "reference_answer" / "gpt-4.jsonl"
    if ref_file.is_file():
        refs = {r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl_rows(ref_file)}
    return read_jsonl_rows(folder / "question.jsonl"), {p["name"]: p for p in read_jsonl_rows(judge_file)}, refs


@register
class MTBench(Benchmark):
    name = "mtbench"
    variants = ("single",)

    primary = ("score", "none")
    scale = "rating_1_10"

    needs_judge = True

    def __init__(self, variant: str | None = None, judge: Judge | None = None,
                 max_new_tokens: PositiveInt | None = None) -> None:
        super().__init__(variant)
        self.judge = judge
        self.max_new_tokens = max_new_tokens or MAX_NEW_TOKENS

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "max_new_tokens": self.max_new_tokens,
                "judge": self.judge.describe() if self.judge else None}

    def load(self, source: Any = None, limit: int | None = None, seed: int | None = None) -> list[Item]:
        """Each question with its GPT-4 reference answers as `target` (math, reasoning, coding) and the two
        judge prompt templates of its category as `grading`."""
        if source is None:
            raise ConfigError("MT-Bench needs its data folder: run `evalsuite data prepare` or pass --data")
        questions, judge_prompts, references = load_files(source)
        missing = sorted({f"{n}{t}" for n in ("single-v1", "single-math-v1") for t in ("", "-multi-turn")} - set(judge_prompts))
        if missing:
            raise ConfigError(f"MT-Bench judge_prompts.jsonl lacks FastChat's {', '.join(missing)} prompt(s)")
        items = []
        for q in questions:
            needs_ref = q["category"] in NEED_REF_CATS
            if needs_ref and q["question_id"] not in references:
                raise ConfigError(f"MT-Bench question {q['question_id']} ({q['category']}) has no reference answer")
            name = "single-math-v1" if needs_ref else "single-v1"
            templates = {1: judge_prompts[name], 2: judge_prompts[f"{name}-multi-turn"]}
            items.append(Item(f"mtbench/{q['question_id']}", q["category"], q, references.get(q["question_id"]),
                              grading={"judge_prompts": templates}))
        return subsample(items, lambda it: it.id, lambda it: it.subset, limit, seed)

    def _turn_request(self, item: Item, prompter: Prompter, answers: Sequence[str]) -> GenerationRequest:
        turns = self.prompt_turns(item)  # a perturbed item asks its variant turns; the judge sees the originals
        k = len(answers)
        temperature = TEMPERATURES.get(item.subset, 0.7)
        greedy = temperature < 1e-4
        prompt = prompter.conversation([*zip(turns[:k], answers), (turns[k], None)])
        return GenerationRequest(prompt=prompt, max_new_tokens=self.max_new_tokens,
                                 temperature=0.0 if greedy else temperature,
                                 seed=None if greedy else int(item.doc["question_id"]) * 10 + k)

    def clean_prompt(self, item: Item) -> str:
        return join_turns(item.doc["turns"])

    def prompt_turns(self, item: Item) -> list[str]:
        return item.turns(item.doc["turns"])

    def judgement(self, sample: Sample) -> str | None:
        texts = [j["text"] for j in sample.extra.get("judgements", [])]
        return join_turns(texts) if texts else None

    def perturbation_item(self, item: Item) -> Any:
        from perturbations.benchmarks import mtbench_item

        return mtbench_item(item.id, item.doc)

    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        return [self._turn_request(item, prompter, [])]

    def followup(self, item: Item, prompter: Prompter, responses: Sequence[Any]) -> list[Request]:
        answers = [r.text.strip() for r in responses]
        return [self._turn_request(item, prompter, answers)] if len(answers) < len(item.doc["turns"]) else []

    def judge_messages(self, item: Item, answers: Sequence[str], turn: int) -> list[dict[str, str]]:
        """FastChat's single-answer grading conversation for `turn` (1 or 2)."""
        q = item.doc
        template = item.grading["judge_prompts"][turn]
        kwargs: dict[str, str] = {}
        if q["category"] in NEED_REF_CATS:
            ref = item.target
            kwargs["ref_answer_1"] = ref[0]
            if turn == 2:
                kwargs["ref_answer_2"] = ref[1]
        if turn == 2:
            user = template["prompt_template"].format(question_1=q["turns"][0], question_2=q["turns"][1],
                                                      answer_1=answers[0], answer_2=answers[1], **kwargs)
        else:
            user = template["prompt_template"].format(question=q["turns"][0], answer=answers[0], **kwargs)
        return [{"role": "system", "content": template["system_prompt"]}, {"role": "user", "content": user}]

    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        if self.judge is None:
            raise ConfigError("MT-Bench needs a judge (--judge-model ...)")
        answers = [[r.text.strip() for r in resps] for resps in responses]
        convs = [self.judge_messages(it, ans, turn) for it, ans in zip(items, answers) for turn in (1, 2)]
        verdicts = iter(self.judge.complete(convs, parse_rating))
        samples = []
        for i, (item, reqs, ans) in enumerate(zip(items, requests, answers)):
            turn_verdicts = [next(verdicts), next(verdicts)]
            ratings = [v.value for v in turn_verdicts]
            metrics: dict[str, Any] = {"score": [r for r in ratings if r is not None],
                                       "judge_failed": float(sum(r is None for r in ratings))}
            for turn, rating in enumerate(ratings, 1):
                metrics[f"score_turn{turn}"] = rating
            samples.append(Sample(
                doc_id=i, item_id=item.id, perturbed=item.perturbed, subset=item.subset, doc=item.doc, target=item.target,
                arguments=[generation_arguments(r) for r in reqs], resps=[[a] for a in ans], filtered_resps=ratings,
                filter="none", metrics=metrics, prompt_format=prompter.format,
                extra={"judgements": [{"text": v.text, "attempts": v.attempts} for v in turn_verdicts],
                       "judge": self.judge.name}))
        return samples

    def aggregate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        results = super().aggregate(samples)
        for scope, row in results.items():
            members = [s for s in samples if scope == "all" or s.subset == scope]
            row["judge_failed_count"] = int(sum(s.metrics["judge_failed"] for s in members))
        return results
