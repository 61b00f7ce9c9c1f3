"""Items, with what must be protected, for the five benchmarks' rows (the layouts lm-eval, Google's IFEval,
FastChat and alpaca-eval use). With the default layout each item renders exactly the benchmark's own prompt
body, so a variant differs from the clean prompt only by its perturbation:

- MMLU: lm-eval's `"{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:"`; option texts are never edited,
  and words that occur in an option are protected in the question too (the stem must still point at them).
- BBH: lm-eval's `"Q: {input}\\nA:"` (CoT: `"...A: Let's think step by step.\\n"`), with the trailing
  `Options:` block parsed into options. The symbolic content is protected: whole inputs of the formal tasks
  (boolean expressions, arithmetic, web of lies, object counting), dyck sequences, word lists, table rows,
  SVG paths, and in every task names, option words, repeated words (co-reference), months, weekdays,
  directions and order/comparison words.
- IFEval: the prompt, with every string a checker reads from the kwargs protected (keywords, forbidden
  words, end phrase, postscript marker, section splitter, first word, relation, the text to repeat, the
  language name) on top of numbers, number words, quoted text and placeholders.
- MT-Bench: two turns (one item); AlpacaEval: the instruction.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

from perturbations.document import Document, Field, Item, Layout, Options

STOPWORDS = frozenset("the and for are was were with that this from into its his her their our your you not but "
                      "all any can has have had who whom which what when where how why than then them they she "
                      "him one two none both each".split())
# lm-eval's IFEval language codes (`instructions_util.LANGUAGE_CODES`)
LANGUAGES = {"en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi", "fr": "French",
             "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian", "bn": "Bengali", "uk": "Ukrainian",
             "th": "Thai", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "bg": "Bulgarian", "ko": "Korean",
             "pl": "Polish", "he": "Hebrew", "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili",
             "kn": "Kannada", "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish"}
CALENDAR = ("january february march april may june july august september october november december "
            "monday tuesday wednesday thursday friday saturday sunday").split()
DIRECTIONS = "left right forward forwards backward backwards around north south east west up down".split()
# order and comparison words the logic tasks turn on ("Eli finished below Amy")
RELATIONS = ("above below before after older oldest newer newest younger youngest earlier earliest later latest "
             "last leftmost rightmost cheaper cheapest expensive higher lower more less fewer than").split()
BBH_SYMBOLIC = frozenset({"boolean_expressions", "multistep_arithmetic_two", "web_of_lies", "object_counting"})
BBH_TABLE_TASKS = frozenset({"penguins_in_a_table"})
BBH_PROTECT_AFTER = {"dyck_languages": "Input:", "word_sorting": "List:"}
OPTIONS_BLOCK = re.compile(r"\nOptions:\n((?:\([A-Z]\) [^\n]*\n?)+)$")


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{3,}", text)


def option_words(options: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({w.lower() for o in options for w in words(o) if w.lower() not in STOPWORDS}))


def mmlu_item(item_id: str, doc: dict[str, Any]) -> Item:
    choices = tuple(str(c) for c in doc["choices"])
    fields = (Field("question", doc["question"].strip(), protected=option_words(choices)),
              Field("answer", "", label="Answer", editable=False))
    return Item(item_id, (Document(fields, Options(choices, after="question")),), "mmlu")


def split_bbh_options(text: str) -> tuple[str, tuple[str, ...] | None]:
    """BBH's trailing "\\nOptions:\\n(A) ..\\n(B) .." block, when the input has one."""
    m = OPTIONS_BLOCK.search(text)
    if not m:
        return text, None
    lines = m.group(1).rstrip("\n").split("\n")
    if [line[:3] for line in lines] != [f"({chr(65 + i)})" for i in range(len(lines))] or m.group(1).endswith("\n"):
        return text, None
    return text[: m.start()], tuple(line[4:] for line in lines)


def bbh_protected(task: str, stem: str, options: Sequence[str]) -> tuple[str, ...]:
    found = [w for w in words(stem) if w[0].isupper() and w.lower() not in STOPWORDS]  # names (and sentence starts)
    counts = Counter(w.lower() for w in words(stem) if len(w) >= 4)
    found += [w for w, n in counts.items() if n >= 2 and w not in STOPWORDS]
    found += [w for w in words(stem) if w.lower() in CALENDAR or w.lower() in DIRECTIONS or w.lower() in RELATIONS]
    found += list(option_words(options))
    marker = BBH_PROTECT_AFTER.get(task)
    if marker and marker in stem:
        found.append(stem[stem.index(marker):])
    if task in BBH_TABLE_TASKS:
        found += [line for line in stem.split("\n") if line.count(",") >= 2]  # the table's rows
    return tuple(sorted(set(found), key=lambda s: (s.lower(), s)))


def bbh_item(item_id: str, task: str, doc: dict[str, Any], cot: bool = False) -> Item:
    stem, options = split_bbh_options(doc["input"])
    question = Field("question", stem, label="Q", editable=task not in BBH_SYMBOLIC,
                     protected=bbh_protected(task, stem, options or ()))
    answer = Field("answer", "Let's think step by step." if cot else "", label="A", editable=False)
    block = Options(options, heading="Options", after="question") if options else None
    layout = Layout(option_style="(A)")
    return Item(item_id, (Document((question, answer), block, layout, suffix="\n" if cot else ""),), "bbh")


def ifeval_protected(kwargs_list: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    found: list[str] = []
    for kwargs in kwargs_list:
        for key, value in kwargs.items():
            if value is None:
                continue
            if key == "language":
                found += [LANGUAGES.get(value, value), value]
            elif key == "letter":
                found.append(f"letter {value}")
            elif isinstance(value, str):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                found += [str(v) for v in value]
            else:
                found.append(str(value))
    return tuple(sorted({f for f in found if f.strip()}))


def ifeval_item(item_id: str, doc: dict[str, Any]) -> Item:
    field = Field("prompt", doc["prompt"], protected=ifeval_protected(doc.get("kwargs") or []))
    return Item(item_id, (Document((field,)),), "ifeval")


def alpacaeval_item(item_id: str, doc: dict[str, Any]) -> Item:
    return Item(item_id, (Document((Field("prompt", doc["instruction"]),)),), "alpacaeval")


def mtbench_item(item_id: str, doc: dict[str, Any]) -> Item:
    return Item(item_id, tuple(Document((Field("prompt", turn),)) for turn in doc["turns"]), "mtbench")


ADAPTERS = {"mmlu": mmlu_item, "ifeval": ifeval_item, "alpacaeval": alpacaeval_item, "mtbench": mtbench_item}
