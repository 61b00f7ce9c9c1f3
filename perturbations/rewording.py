"""Offline deterministic rewording: instruction-template and clause-level rewrites that keep the meaning.

Every rule is a regex with one or more replacements; a match is a candidate site when it lies in an
editable field and clear of protected spans. Rules are deliberately conservative (contractions, fixed
synonymous phrases, request framing): a rewrite that could change what is asked does not belong here.
The case of a match's first letter is kept ("Do not" → "Don't", "do not" → "don't").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IMPERATIVES = ("write", "give", "list", "explain", "describe", "create", "generate", "tell", "provide", "compose",
               "summarize", "rewrite", "find", "make", "suggest", "draft", "design", "imagine", "help", "answer",
               "translate", "name", "identify", "classify", "edit", "plan", "outline", "share", "come up")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    replacements: tuple[str, ...]  # may use \1.. groups


def _word(phrase: str) -> str:
    return r"\b" + re.escape(phrase).replace(r"\ ", r"\s+") + r"\b"


def _pair_rules(name: str, pairs: list[tuple[str, str]], both: bool = True) -> list[Rule]:
    rules = []
    for a, b in pairs:
        rules.append(Rule(f"{name}:{a}", re.compile(_word(a), re.IGNORECASE), (b,)))
        if both:
            rules.append(Rule(f"{name}:{b}", re.compile(_word(b), re.IGNORECASE), (a,)))
    return rules


CONTRACTIONS = [("do not", "don't"), ("does not", "doesn't"), ("is not", "isn't"), ("are not", "aren't"),
                ("cannot", "can't"), ("will not", "won't"), ("should not", "shouldn't"), ("did not", "didn't"),
                ("it is", "it's"), ("what is", "what's"), ("that is", "that's"), ("I am", "I'm"), ("you are", "you're"),
                ("there is", "there's"), ("let us", "let's"), ("I would", "I'd"), ("we are", "we're"), ("they are", "they're")]
SYNONYMS = [("make sure", "ensure"), ("for example", "for instance"), ("additionally", "in addition"),
            ("which of the following", "which one of the following"), ("suggest", "recommend"), ("entire", "whole"),
            ("your answer", "your response"), ("I want you to", "I would like you to"), ("help me", "assist me"),
            ("can you", "could you"), ("brief", "short"), ("start your", "begin your"), ("end your", "finish your"),
            ("give me", "provide me with"), ("tell me", "let me know"), ("in order to", "so as to"),
            ("however,", "that said,"), ("a lot of", "many"), ("whether or not", "whether"),
            ("most likely", "most probably"), ("is called", "is known as"), ("are called", "are known as"),
            ("is referred to as", "is called"), ("associated with", "linked with"), ("results in", "leads to"),
            ("result in", "lead to"), ("suppose that", "assume that"), ("often", "frequently"),
            ("usually", "typically"), ("useful", "helpful"), ("select", "choose"), ("occurs", "happens"),
            ("approximately", "roughly"), ("best explains", "best accounts for"), ("main", "primary"),
            ("which of these", "which one of these"), ("is caused by", "results from"), ("are caused by", "result from"),
            ("the following sentence", "this sentence"), ("the following statement", "this statement"),
            ("the following argument", "this argument"), ("how do I", "how can I"), ("want to", "would like to")]
# one direction only: the reverse is not always the same meaning ("since" can be temporal)
ONE_WAY = [("because", "since"), ("find the", "determine the"), ("find a", "identify a"),
           ("this question refers to the following information.", "use the following information to answer this question."),
           ("is the following sentence plausible?", "is this sentence plausible?"), ("in which", "where"),
           ("give a", "provide a"), ("give an", "provide an"), ("write a", "compose a"), ("I need", "I require")]

RULES: tuple[Rule, ...] = tuple(
    _pair_rules("contraction", CONTRACTIONS)
    + _pair_rules("synonym", SYNONYMS)
    + _pair_rules("one-way", ONE_WAY, both=False)
    + [
        # request framing of an imperative at the start of the text or of a sentence
        Rule("framing:add", re.compile(r"(?:^|(?<=[.!?]\s))(" + "|".join(v.capitalize() for v in IMPERATIVES) + r")\b"),
             ("Please \\1", "I would like you to \\1", "Kindly \\1", "I'd like you to \\1")),
        # a question at the very start of the text, announced as one
        Rule("framing:question", re.compile(r"^(?=(?:What|How|Why|Where|When|Who|Which|Is|Are|Can|Do|Does)\b[^\n]*\?)"),
             ("I have a question. ", "Quick question: ")),
        Rule("framing:drop", re.compile(r"(?:^|(?<=[.!?]\s))(?:Please|Kindly),?\s+([a-z])"), ("\\1",)),
    ]
)


def keep_case(replacement: str, matched: str) -> str:
    if not replacement or not matched:
        return replacement
    if matched[0].isupper():
        return replacement[0].upper() + replacement[1:]
    if matched[0].islower() and not replacement.startswith("I "):
        return replacement[0].lower() + replacement[1:]
    return replacement


def expand(rule: Rule, match: re.Match[str], replacement: str) -> str:
    text = match.expand(replacement)
    if rule.name.startswith("framing:add"):  # "Please Write" -> "Please write"
        head, _, verb = text.rpartition(" ")
        return f"{head} {verb.lower()}" if head else text
    if rule.name == "framing:drop":  # "Please write" -> "Write"
        return text.upper()
    if rule.name == "framing:question":
        return text
    return keep_case(text, match.group(0))
