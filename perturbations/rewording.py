"""Offline deterministic rewording: contractions, fixed phrases and request framing that keep the meaning.

Every rule is a regex with one or more replacements; a match is a candidate site when it lies in an
editable field and clear of protected spans. A rule is here only if its rewrite keeps the meaning and the
grammar wherever its pattern can match in a benchmark prompt (MMLU stems about science, law and medicine,
BBH, IFEval, AlpacaEval, MT-Bench instructions), and only in the directions where that holds: "suggest" →
"recommend" fails on "the findings suggest anemia", "in which" → "where" on "in which year", "don't" →
"do not" on "Don't you agree?". Each rule says why it is safe (`Rule.why`; the table in
docs/perturbations.md). Phrases match as whole words, the first letter in either case and the rest as
written, so an all-caps "is NOT" (emphasis) is left alone; the case of a match's first letter is kept
("Do not" → "Don't").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    replacements: tuple[str, ...]  # may use \1.. groups
    why: str  # why the rewrite keeps the meaning wherever the pattern matches


@dataclass(frozen=True)
class Rewrite:
    """`source` → `target`, and `target` → `source` too when `both`: one fixed-phrase rule (or two)."""

    group: str  # contraction | synonym | instruction
    source: str
    target: str
    why: str
    both: bool = False
    not_after: tuple[str, ...] = ()  # words that give `source` another sense when just before it


def either_case(word: str) -> str:
    """`word` with its first letter in either case, the rest as written."""
    head = word[0]
    return (f"[{head.lower()}{head.upper()}]" if head.isalpha() else re.escape(head)) + re.escape(word[1:])


def phrase_pattern(phrase: str, not_after: tuple[str, ...] = ()) -> re.Pattern[str]:
    """`phrase` as whole words (spaces or tabs between them, not line breaks; either apostrophe), not
    right after any of `not_after`."""
    words = [either_case(phrase.split(" ")[0])] + [re.escape(w) for w in phrase.split(" ")[1:]]
    body = r"[^\S\n]+".join(words).replace("'", "['’]")
    start = r"\b" if phrase[0].isalnum() else ""
    end = r"\b" if phrase[-1].isalnum() else ""  # "for example," ends at its comma
    guards = "".join(rf"(?<!\b{either_case(w)} )" for w in not_after)
    return re.compile(guards + start + body + end)


def phrase_rules(rewrites: list[Rewrite]) -> list[Rule]:
    rules = []
    for r in rewrites:
        rules.append(Rule(f"{r.group}:{r.source}", phrase_pattern(r.source, r.not_after), (r.target,), r.why))
        if r.both:
            rules.append(Rule(f"{r.group}:{r.target}", phrase_pattern(r.target), (r.source,), r.why))
    return rules


NEGATION = ("a negative auxiliary contracts anywhere it stands, clause ends included; only this direction: "
            "expanding breaks negative questions (\"Don't you agree?\" → \"Do not you agree?\")")
PRONOUN_BE = ("the contraction has one reading, and the full form stands wherever it does; only this "
              "direction: contracting breaks a clause end (\"who you are.\" → \"who you're.\")")
REWRITES = [
    Rewrite("contraction", "do not", "don't", NEGATION + "; not after an article, where it names a thing "
            "(\"a do not resuscitate order\")", not_after=("a", "the")),
    Rewrite("contraction", "does not", "doesn't", NEGATION),
    Rewrite("contraction", "did not", "didn't", NEGATION),
    Rewrite("contraction", "is not", "isn't", NEGATION),
    Rewrite("contraction", "are not", "aren't", NEGATION),
    Rewrite("contraction", "should not", "shouldn't", NEGATION),
    Rewrite("contraction", "cannot", "can't", NEGATION + " (\"Can't you …?\" → \"Cannot you …?\")"),
    Rewrite("contraction", "I'm", "I am", PRONOUN_BE),
    Rewrite("contraction", "you're", "you are", PRONOUN_BE),
    Rewrite("contraction", "we're", "we are", PRONOUN_BE),
    Rewrite("contraction", "they're", "they are", PRONOUN_BE + " (\"where they are.\")"),
    Rewrite("contraction", "let's", "let us", "\"let's\" is only the suggestion \"let us\"; only this direction: "
            "\"let us know\" (allow us to know) is no suggestion"),
    Rewrite("contraction", "I'd like", "I would like", "before \"like\", \"I'd\" can only be \"I would\" (not "
            "\"I had\"), and with \"like\" present neither form ends a clause", both=True),
    Rewrite("synonym", "for example,", "for instance,", "with the comma both are the sentence adverb \"e.g.\" "
            "(without it, \"for example 2\" is a noun phrase)", both=True),
    Rewrite("synonym", "additionally,", "in addition,", "a sentence adverb meaning \"also\" either way; only this "
            "direction: \"in addition\" can be arithmetic (\"In addition, carry the one\")"),
    Rewrite("synonym", "which of the following is", "which one of the following is", "the singular \"is\" "
            "already asks for one option, so \"one\" adds nothing (before \"are\" it would narrow a question "
            "that may have several answers)", both=True),
    Rewrite("synonym", "which of these is", "which one of these is", "as for \"which of the following is\"",
            both=True),
    Rewrite("synonym", "suppose that", "assume that", "both introduce a hypothesis; only this direction: "
            "\"assume that risk\" means take it on"),
    Rewrite("synonym", "most probably", "most likely", "both are the adverb; only this direction: \"the most "
            "likely diagnosis\" is an adjective (\"the most probably diagnosis\")"),
    Rewrite("synonym", "is referred to as", "is called", "both name a thing; only this direction: \"the "
            "function is called twice\" is a call"),
    Rewrite("synonym", "is caused by", "results from", "the same cause, stated from the effect; only this "
            "direction: \"results from the experiment\" are findings"),
    Rewrite("synonym", "are caused by", "result from", "as for \"is caused by\""),
    Rewrite("synonym", "frequently", "often", "the same frequency adverb; only this direction: \"every so often\""),
    Rewrite("synonym", "usually", "typically", "both mean \"in most cases\"; only this direction: \"a typically "
            "British dish\" means characteristically"),
    Rewrite("synonym", "approximately", "roughly", "both hedge a quantity; only this direction: \"handled "
            "roughly\" means harshly"),
    Rewrite("synonym", "best accounts for", "best explains", "with \"best\", \"accounts for\" is explaining "
            "(not making up a share); only this direction: \"best explains why\""),
    Rewrite("synonym", "so as to", "in order to", "both mark a purpose; only this direction: \"arrange them "
            "in order to find the median\" is about sorting"),
    Rewrite("instruction", "make sure that", "ensure that", "with \"that\" and a clause both ask for the same "
            "check; only this direction: \"ensure that outcome\" has a noun object"),
    Rewrite("instruction", "your answer", "your response", "what the model writes back, either way; only this "
            "direction: \"your response to stress\" is a reaction"),
    Rewrite("instruction", "start your response with", "begin your response with", "the same instruction about "
            "the reply's opening", both=True),
    Rewrite("instruction", "end your response with", "finish your response with", "the same instruction about "
            "the reply's closing (\"with\" makes \"finish\" mean end, not complete)", both=True),
    Rewrite("instruction", "I want you to", "I would like you to", "the same request, politer or plainer; not "
            "after \"do\"/\"did\" (\"Do I want you to\" cannot become \"Do I would like you to\")", both=True,
            not_after=("do", "did")),
    Rewrite("instruction", "assist me", "help me", "\"assist me\" is helping; only this direction: \"help me "
            "understand\" → \"assist me understand\""),
    Rewrite("instruction", "provide me with", "give me", "the same request for something; only this direction: "
            "\"give me a hand\""),
    Rewrite("instruction", "let me know", "tell me", "the same request for information; only this direction: "
            "\"tell me a story\""),
    Rewrite("instruction", "give an example", "provide an example", "the same request for an example",
            both=True),
    Rewrite("instruction", "the following sentence:", "this sentence:", "with the colon right after, \"this\" "
            "points at the text that follows; only this direction: \"does not include this sentence\" means itself"),
    Rewrite("instruction", "the following statement:", "this statement:", "as for \"the following sentence:\""),
    Rewrite("instruction", "the following argument:", "this argument:", "as for \"the following sentence:\""),
    Rewrite("instruction", "this question refers to the following information.",
            "use the following information to answer this question.", "MMLU's passage preamble, reworded as the "
            "same instruction"),
    Rewrite("instruction", "is the following sentence plausible?", "is this sentence plausible?",
            "BBH's question about the quoted sentence right after it"),
]

# Sentence-initial words that are always imperatives, and those that may also be nouns ("List of", "Share
# prices", "Answer: B"): the latter count only before an object ("List the", "Name three", "Help me").
VERBS = ("write", "give", "explain", "describe", "create", "generate", "tell", "provide", "compose", "summarize",
         "rewrite", "find", "make", "suggest", "imagine", "translate", "identify", "classify", "come up")
NOUN_VERBS = ("list", "name", "answer", "plan", "design", "outline", "draft", "edit", "share", "help")
OBJECT_START = (r"(?:(?:the|a|an|this|that|these|those|my|your|his|her|its|our|their|some|any|all|each|every|me|us|"
                r"him|them|it|one|two|three|four|five|six|seven|eight|nine|ten|several)\b|\d)")
SENTENCE_START = r"(?:^|(?<=[.!?]\s))"
IMPERATIVE = ("((?:" + "|".join(v.capitalize() for v in VERBS) + r")\b"
              + "|(?:" + "|".join(v.capitalize() for v in NOUN_VERBS) + rf")(?=[^\S\n]+{OBJECT_START}))")
QUESTION_WORDS = ("What", "How", "Why", "Where", "When", "Who", "Which", "Is", "Are", "Can", "Do", "Does")

RULES: tuple[Rule, ...] = tuple(
    phrase_rules(REWRITES)
    + [
        Rule("framing:add", re.compile(SENTENCE_START + IMPERATIVE),
             ("Please \\1", "I would like you to \\1", "Kindly \\1", "I'd like you to \\1"),
             "an imperative opening a sentence is a request; asking it politely asks the same (words that may "
             "be nouns count only before an object: \"List the\", not \"List of\")"),
        Rule("framing:question",
             re.compile(rf"^(?=(?:{'|'.join(QUESTION_WORDS)})\b(?:[^\n.!?]|\.(?=\d))*\?)"),
             ("I have a question. ", "Quick question: "),
             "a first sentence that is a question stays the same question when announced as one"),
        Rule("framing:drop",
             re.compile(SENTENCE_START + rf"Please,?[^\S\n]+(?!{OBJECT_START}|(?:yourself|everyone)\b)([a-z])"),
             ("\\1",),
             "\"Please\" before an imperative is politeness only (not before an object: \"Please the "
             "customer\" is the verb)"),
    ]
)


def keep_case(replacement: str, matched: str) -> str:
    if not replacement or not matched:
        return replacement
    if matched[0].isupper():
        return replacement[0].upper() + replacement[1:]
    if matched[0].islower() and not replacement.startswith(("I ", "I'")):
        return replacement[0].lower() + replacement[1:]
    return replacement


def expand(rule: Rule, match: re.Match[str], replacement: str) -> str:
    text = match.expand(replacement)
    if rule.name == "framing:add":  # "Please Write up" -> "Please write up"
        cut = len(text) - len(match.group(1))
        return text[:cut] + text[cut].lower() + text[cut + 1:]
    if rule.name == "framing:drop":  # "Please write" -> "Write"
        return text.upper()
    if rule.name == "framing:question":
        return text
    return keep_case(text, match.group(0))
