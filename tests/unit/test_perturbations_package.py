import subprocess
import sys


def test_perturbations_does_not_import_evalsuite():
    """Every module of the package, kinds included, loads without evalsuite."""
    code = ("import sys, perturbations, perturbations.llm, perturbations.benchmarks; perturbations.kind_names(); "
            "assert not any(m.split('.')[0] == 'evalsuite' for m in sys.modules), 'evalsuite imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _reword(text, seed=1):
    """Offline rephrase at severity 1: every non-overlapping rule site rewritten."""
    from perturbations import Document, Field, Item, get_kind, perturb

    return perturb(Item("k", (Document((Field("prompt", text),)),)), get_kind("rephrase"), 0, seed, 1.0).text or text


# (text, what a meaning-changing rule made of it): each was produced by the rules before this rule review
MEANING_CHANGES = [
    ("Which of the following findings would suggest a diagnosis of anemia?", "recommend"),
    ("In which year did the war end?", "Where year"),
    ("A primary school teacher asks the class a question.", "main school"),
    ("The sun is a main sequence star.", "primary sequence"),
    ("A short circuit in the wiring causes the fuse to blow.", "brief circuit"),
    ("Find the smallest whole number that is divisible by both.", "entire number"),
    ("The road that leads to the town is closed.", "results in the town"),
    ("In the program, the function is called twice.", "known as twice"),
    ("The plant needs a lot of water.", "many water"),
    ("How many apples did she buy?", "a lot of apples"),
    ("Why do you want to learn Python?", "would like to"),
    ("I asked him to tell me a story.", "let me know a story"),
    ("In addition to salt, add pepper.", "dditionally to"),
    ("The results from the experiment were published.", "caused by the experiment"),
    ("Help me find the book I lost.", "determine the book"),
    ("Write a function that sorts a list.", "ompose a function"),
    ("Which of the following are prime?", "one of the following are"),
    ("What is the most likely diagnosis?", "most probably diagnosis"),
    ("The firm must choose to invest or not.", "select to"),
    ("The machine has a useful life of ten years.", "helpful life"),
    ("The plane was late because of fog.", "since of"),
    ("I need to finish this by noon.", "require to"),
    ("The court will let us know its ruling.", "let's know"),
    ("A will not witnessed by two people is invalid.", "won't"),
    ("Don't you think the plan is late?", "Do not you"),
    ("Tell me who you are.", "you're."),
    ("The effect is known as early as 1900.", "called early"),
    ("She signed a do not resuscitate order.", "don't resuscitate"),
    ("Arrange the numbers in order to find the median.", "so as to"),
    ("DO NOT use any commas.", "Don't"),
]


def test_meaning_changing_rewrites_are_gone():
    """The rule review's failure cases (MMLU-like stems and instructions): none is rewritten into the
    meaning-changing form any more, whatever the seed."""
    for text, bad in MEANING_CHANGES:
        for seed in range(4):
            assert bad not in _reword(text, seed), (text, seed)
    assert "primary school" in _reword("A primary school teacher asks the class a question.")
    assert _reword("The road that leads to the town is closed.") == "The road that leads to the town is closed."


# One example per rule: the text and what that rule alone makes of it (framing:add and framing:question use
# their first replacement)
RULE_EXAMPLES = {
    "contraction:do not": ("They do not agree.", "They don't agree."),
    "contraction:does not": ("It does not hold.", "It doesn't hold."),
    "contraction:did not": ("She did not sign.", "She didn't sign."),
    "contraction:is not": ("The claim is not true.", "The claim isn't true."),
    "contraction:are not": ("Commas are not allowed.", "Commas aren't allowed."),
    "contraction:should not": ("It should not be enforced.", "It shouldn't be enforced."),
    "contraction:cannot": ("Lines cannot cross.", "Lines can't cross."),
    "contraction:I'm": ("I'm a nurse.", "I am a nurse."),
    "contraction:you're": ("Imagine you're a cat.", "Imagine you are a cat."),
    "contraction:we're": ("We’re late.", "We are late."),
    "contraction:they're": ("He thinks they're candy.", "He thinks they are candy."),
    "contraction:let's": ("Let's go.", "Let us go."),
    "contraction:I'd like": ("I'd like a poem.", "I would like a poem."),
    "contraction:I would like": ("I would like a poem.", "I'd like a poem."),
    "synonym:for example,": ("For example, 6 is even.", "For instance, 6 is even."),
    "synonym:for instance,": ("Some, for instance, fly.", "Some, for example, fly."),
    "synonym:additionally,": ("Additionally, she smokes.", "In addition, she smokes."),
    "synonym:which of the following is": ("Which of the following is true?", "Which one of the following is true?"),
    "synonym:which one of the following is": ("Which one of the following is true?", "Which of the following is true?"),
    "synonym:which of these is": ("Which of these is true?", "Which one of these is true?"),
    "synonym:which one of these is": ("Which one of these is true?", "Which of these is true?"),
    "synonym:suppose that": ("Suppose that x is even.", "Assume that x is even."),
    "synonym:most probably": ("It is most probably a fish.", "It is most likely a fish."),
    "synonym:is referred to as": ("This is referred to as osmosis.", "This is called osmosis."),
    "synonym:is caused by": ("Scurvy is caused by a deficiency.", "Scurvy results from a deficiency."),
    "synonym:are caused by": ("Tides are caused by the moon.", "Tides result from the moon."),
    "synonym:frequently": ("It occurs frequently in winter.", "It occurs often in winter."),
    "synonym:usually": ("GDP is usually annual.", "GDP is typically annual."),
    "synonym:approximately": ("It weighs approximately 5 kg.", "It weighs roughly 5 kg."),
    "synonym:best accounts for": ("What best accounts for the rise?", "What best explains the rise?"),
    "synonym:so as to": ("It was amended so as to require votes.", "It was amended in order to require votes."),
    "instruction:make sure that": ("Make sure that it is locked.", "Ensure that it is locked."),
    "instruction:your answer": ("Round your answer.", "Round your response."),
    "instruction:start your response with": ("Start your response with Hi.", "Begin your response with Hi."),
    "instruction:begin your response with": ("Begin your response with Hi.", "Start your response with Hi."),
    "instruction:end your response with": ("End your response with Bye.", "Finish your response with Bye."),
    "instruction:finish your response with": ("Finish your response with Bye.", "End your response with Bye."),
    "instruction:I want you to": ("I want you to act.", "I would like you to act."),
    "instruction:I would like you to": ("I would like you to act.", "I want you to act."),
    "instruction:assist me": ("Can you assist me?", "Can you help me?"),
    "instruction:provide me with": ("Provide me with a list.", "Give me a list."),
    "instruction:let me know": ("Let me know if it works.", "Tell me if it works."),
    "instruction:give an example": ("Give an example of a noun.", "Provide an example of a noun."),
    "instruction:provide an example": ("Provide an example of a noun.", "Give an example of a noun."),
    "instruction:the following sentence:": ("Translate the following sentence: Hi.", "Translate this sentence: Hi."),
    "instruction:the following statement:": ("Consider the following statement: P.", "Consider this statement: P."),
    "instruction:the following argument:": ("Assess the following argument: P.", "Assess this argument: P."),
    "instruction:this question refers to the following information.": (
        "This question refers to the following information.\nText.",
        "Use the following information to answer this question.\nText."),
    "instruction:is the following sentence plausible?": ("Is the following sentence plausible? X.",
                                                        "Is this sentence plausible? X."),
    "framing:add": ("Done. List the rivers.", "Done. Please list the rivers."),
    "framing:question": ("What is osmosis? Be brief.", "I have a question. What is osmosis? Be brief."),
    "framing:drop": ("Please write a haiku.", "Write a haiku."),
}


def test_every_rule_has_a_reason_and_fires_on_an_example():
    """Each kept rule says why it is safe, and rewrites its example as expected (so no rule is dead: the old
    `however,` rule never matched, its word boundary sat after the comma)."""
    from perturbations.rewording import RULES, expand

    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) and set(names) == set(RULE_EXAMPLES)
    for rule in RULES:
        assert len(rule.why.split()) >= 5, rule.name
        text, expected = RULE_EXAMPLES[rule.name]
        m = rule.pattern.search(text)
        assert m is not None, rule.name
        assert text[:m.start()] + expand(rule, m, rule.replacements[0]) + text[m.end():] == expected, rule.name


def test_rules_leave_other_senses_and_emphasis_alone():
    """Guards of the kept rules: capitals, line breaks, compounds after an article, inverted questions,
    nouns that look like imperatives, and "which of the following" with a plural verb."""
    from perturbations.rewording import RULES

    def fired(text):
        return {r.name for r in RULES if r.pattern.search(text)}

    assert "contraction:do not" not in fired("DO NOT use commas.") | fired("the do not call list") | fired("do\nnot")
    assert "instruction:I want you to" not in fired("What do I want you to do?")
    assert "framing:add" not in fired("Share prices fell.") | fired("Answer: B") | fired("List of rivers.")
    assert "framing:add" in fired("Answer the question.") and "framing:add" in fired("Name 3 rivers.")
    assert "framing:drop" not in fired("Please the customer.") | fired("Kindly old men helped.")
    assert "framing:question" not in fired("Do not use commas. Why?")
    assert not {n for n in fired("Which of the following are true?") if n.startswith("synonym:which")}


def test_docs_table_gives_every_rule_its_direction_and_reason():
    """docs/perturbations.md lists every rule with its direction and the reason from the code."""
    from pathlib import Path

    from perturbations.rewording import RULES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "perturbations.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    for rule in RULES:
        assert rule.name in rows, rule.name
        assert ("one-way" in rows[rule.name]) != ("both ways" in rows[rule.name]), rule.name
        assert rule.why.replace("|", "\\|") in rows[rule.name], rule.name


def test_template_kind_and_variant_cap_without_evalsuite():
    """`template`: the clean text under the other prompt format, one variant per item however many are asked
    (`max_variants`), severity 0 skipped; other kinds keep no cap."""
    from perturbations import OTHER_PROMPT_FORMAT, Change, Document, Field, Item, get_kind, perturb, perturb_items

    assert OTHER_PROMPT_FORMAT == "other"
    item = Item("t/1", (Document((Field("prompt", "Write a haiku."),)), Document((Field("prompt", "Again."),))))
    kind = get_kind("template")
    assert kind.max_variants == 1 and kind.variant_count(5) == 1 and kind.variant_count(0) == 0
    assert get_kind("typo").max_variants is None and get_kind("typo").variant_count(5) == 5
    rows = [v.to_row() for v in perturb_items([item, item], kind, variants=3, seed=1, severity=0.3)]
    assert [r["variant"] for r in rows] == [0, 0]
    assert rows[0]["turns"] == ["Write a haiku.", "Again."] and rows[0]["prompt_format"] == "other"
    assert rows[0]["edit_distance"] == 0 and rows[0]["skipped_reason"] is None
    assert perturb(item, kind, 0, 1, 0.3).changes == [Change(0, "layout", "prompt_format", "'run'", "'other'")]
    skipped = perturb(item, kind, 0, 1, 0.0)
    assert skipped.skipped_reason == "severity 0" and skipped.prompt_format is None
    assert len(list(perturb_items([item], get_kind("typo"), variants=3, seed=1, severity=0.3))) == 3
