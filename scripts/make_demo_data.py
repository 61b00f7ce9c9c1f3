"""Writes evalsuite's demo instruction set: `python scripts/make_demo_data.py` (byte-identical on rerun).

`evalsuite/data/demo_instructions.jsonl` holds Alpaca-format pairs (instruction / input / output) written
for this project from templates and hand-written facts: half with short answers (arithmetic, capitals,
antonyms, chemical symbols, unit conversion, sentiment labels) and half with long ones (worked word
problems, lists, explanations, emails, multiplication tables). The mix gives both sides of the PLW
paper's short/long-completion split (R_g = response tokens / prompt tokens < 1 or >= 1).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20250710
OUT = Path(__file__).resolve().parent.parent / "evalsuite" / "data" / "demo_instructions.jsonl"
PREFS_OUT = OUT.with_name("demo_preferences.jsonl")

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasília", "Argentina": "Buenos Aires", "Egypt": "Cairo", "Kenya": "Nairobi", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens", "Turkey": "Ankara",
    "Mexico": "Mexico City", "Peru": "Lima", "Chile": "Santiago", "Ireland": "Dublin", "Austria": "Vienna",
    "Hungary": "Budapest", "Thailand": "Bangkok", "Vietnam": "Hanoi", "South Korea": "Seoul", "Morocco": "Rabat",
}
ANTONYMS = {
    "hot": "cold", "tall": "short", "happy": "sad", "fast": "slow", "open": "closed", "early": "late",
    "heavy": "light", "strong": "weak", "rich": "poor", "young": "old", "empty": "full", "loud": "quiet",
    "wet": "dry", "hard": "soft", "cheap": "expensive", "inside": "outside", "win": "lose", "begin": "end",
}
ELEMENTS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O", "sodium": "Na",
    "iron": "Fe", "gold": "Au", "silver": "Ag", "copper": "Cu", "potassium": "K", "calcium": "Ca",
    "lead": "Pb", "zinc": "Zn", "chlorine": "Cl", "neon": "Ne",
}
REVIEWS = [
    ("The food was delicious and the staff were friendly.", "Positive"),
    ("I waited an hour and the soup arrived cold.", "Negative"),
    ("This phone's battery lasts all day, I love it.", "Positive"),
    ("The screen cracked after one week of normal use.", "Negative"),
    ("A wonderful film with a moving story and great acting.", "Positive"),
    ("The plot was dull and the ending made no sense.", "Negative"),
    ("Fast delivery and the shoes fit perfectly.", "Positive"),
    ("The hotel room was dirty and smelled of smoke.", "Negative"),
    ("Our guide was knowledgeable and the tour was fun.", "Positive"),
    ("The software crashes every time I open a file.", "Negative"),
]
CATEGORIES = {
    "fruits": ["apple", "banana", "orange", "mango", "pear", "grape", "cherry", "peach"],
    "vegetables": ["carrot", "broccoli", "spinach", "potato", "onion", "pepper", "cabbage", "pea"],
    "mammals": ["dog", "elephant", "whale", "horse", "bat", "tiger", "dolphin", "rabbit"],
    "planets of the solar system": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
    "musical instruments": ["piano", "violin", "guitar", "flute", "drums", "trumpet", "cello", "harp"],
    "programming languages": ["Python", "C", "Java", "Rust", "Go", "JavaScript", "Haskell", "Fortran"],
    "colors of the rainbow": ["red", "orange", "yellow", "green", "blue", "indigo", "violet"],
}
CONCEPTS = {
    "photosynthesis": "Photosynthesis is the process plants, algae and some bacteria use to turn light into chemical "
    "energy. Using sunlight, they combine carbon dioxide from the air with water to make glucose, a sugar that fuels "
    "their growth, and they release oxygen as a by-product. It takes place mostly in the chloroplasts of leaf cells, "
    "where the green pigment chlorophyll absorbs the light.",
    "gravity": "Gravity is the force by which objects with mass attract one another. On Earth it pulls everything "
    "towards the centre of the planet, which is why dropped objects fall and why we have weight. The more massive "
    "an object is, the stronger its pull, and the pull weakens with distance. Gravity also keeps the Moon in orbit "
    "around the Earth and the planets in orbit around the Sun.",
    "a volcano": "A volcano is an opening in the Earth's crust through which molten rock, gas and ash escape from "
    "below the surface. The molten rock, called magma underground and lava once it erupts, cools and hardens into "
    "new rock, so repeated eruptions can build a mountain over time. Volcanoes are common where tectonic plates "
    "meet or pull apart.",
    "the water cycle": "The water cycle is the continuous movement of water on, above and below the Earth's "
    "surface. Heat from the Sun evaporates water from oceans, lakes and rivers; the vapour rises, cools and "
    "condenses into clouds; the water falls back as rain or snow; and it flows over land and through the ground "
    "back into rivers and seas, where the cycle starts again.",
    "inflation": "Inflation is the general rise in prices across an economy over time, which means that a unit of "
    "money buys less than it did before. A little inflation is normal in a growing economy, but high inflation "
    "erodes savings and makes planning hard. Central banks usually try to keep it low and stable, often by "
    "changing interest rates.",
    "a computer algorithm": "An algorithm is a precise, step-by-step set of instructions for solving a problem or "
    "completing a task. Computers follow algorithms to do everything from sorting a list of names to finding the "
    "shortest route on a map. A good algorithm gives the correct result for every valid input and uses as little "
    "time and memory as it can.",
    "the immune system": "The immune system is the body's defence against infection. It is made of cells, tissues "
    "and organs, such as white blood cells, the lymph nodes and the bone marrow, that recognise germs like bacteria "
    "and viruses and destroy them. After an infection it remembers the germ, so it can respond faster the next "
    "time; vaccines work by training this memory safely.",
    "a democracy": "A democracy is a system of government in which power belongs to the people, who rule either "
    "directly or through representatives they elect in free and fair elections. Democracies usually protect rights "
    "such as free speech and a free press, divide power between separate institutions, and hold regular elections "
    "so that leaders can be replaced peacefully.",
    "renewable energy": "Renewable energy comes from sources that are naturally replenished, such as sunlight, "
    "wind, flowing water and the heat inside the Earth. Unlike coal, oil and gas, these sources do not run out on a "
    "human time scale, and they produce little or no greenhouse gas while generating electricity, which is why they "
    "are central to efforts against climate change.",
    "a noun": "A noun is a word that names a person, place, thing or idea, such as 'teacher', 'London', 'table' or "
    "'freedom'. Nouns can be the subject or the object of a sentence, most of them have singular and plural forms, "
    "and proper nouns, the names of particular people or places, begin with a capital letter.",
}
EXPLAIN_TEMPLATES = [
    "Explain what {c} is.",
    "Describe {c} in a short paragraph.",
    "What is {c}? Give a clear explanation.",
    "Can you explain {c} to a high school student?",
]
NAMES = ["Alice", "Ben", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia"]
EVENTS = ["a team lunch", "a project review meeting", "my birthday dinner", "a book club evening",
          "a board game night", "a welcome party for our new colleague"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def short_pairs(rng: random.Random) -> list[dict[str, str]]:
    pairs = []
    for _ in range(40):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op, sym, val = rng.choice([("plus", "+", a + b), ("minus", "-", a - b), ("times", "*", a * b)])
        q = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {sym} {b}.", f"Calculate {a} {sym} {b}."])
        pairs.append({"instruction": q, "input": "", "output": str(val)})
    for country, capital in CAPITALS.items():
        q = rng.choice([f"What is the capital of {country}?", f"Name the capital city of {country}."])
        pairs.append({"instruction": q, "input": "", "output": f"{capital}."})
    for word, opposite in ANTONYMS.items():
        pairs.append({"instruction": f"Give the opposite of the word '{word}'.", "input": "", "output": opposite})
    for element, symbol in ELEMENTS.items():
        pairs.append({"instruction": f"What is the chemical symbol for {element}?", "input": "", "output": symbol})
    for _ in range(20):
        km = rng.randint(2, 50)
        pairs.append({"instruction": f"Convert {km} kilometers to meters.", "input": "",
                      "output": f"{km * 1000} meters."})
    for text, label in REVIEWS * 2:
        pairs.append({"instruction": "Classify the sentiment of the following review as Positive or Negative.",
                      "input": text, "output": label})
    return pairs


def word_problem(rng: random.Random) -> dict[str, str]:
    name, start, bags, per = rng.choice(NAMES), rng.randint(3, 20), rng.randint(2, 6), rng.randint(3, 12)
    given = rng.randint(1, start)
    bought = bags * per
    total = start + bought - given
    q = (f"{name} has {start} marbles, buys {bags} bags with {per} marbles in each bag, and then gives {given} "
         f"marbles to a friend. How many marbles does {name} have now? Show your reasoning.")
    a = (f"{name} starts with {start} marbles. The {bags} bags hold {bags} × {per} = {bought} marbles, so after "
         f"buying them {name} has {start} + {bought} = {start + bought} marbles. Giving away {given} leaves "
         f"{start + bought} - {given} = {total}. {name} has {total} marbles now.")
    return {"instruction": q, "input": "", "output": a}


def long_pairs(rng: random.Random) -> list[dict[str, str]]:
    pairs = [word_problem(rng) for _ in range(40)]
    for category, items in CATEGORIES.items():
        for k in (3, 5):
            chosen = rng.sample(items, k)
            body = "\n".join(f"{i}. {item[0].upper() + item[1:]}" for i, item in enumerate(chosen, 1))
            pairs.append({"instruction": f"List {k} {category}.", "input": "",
                          "output": f"Here are {k} {category}:\n{body}"})
    for concept, text in CONCEPTS.items():
        for template in EXPLAIN_TEMPLATES:
            pairs.append({"instruction": template.format(c=concept), "input": "", "output": text})
    for _ in range(24):
        name, event, day = rng.choice(NAMES), rng.choice(EVENTS), rng.choice(DAYS)
        pairs.append({
            "instruction": "Write a short email inviting a colleague to an event.",
            "input": f"Colleague: {name}. Event: {event}. Day: {day}.",
            "output": (f"Subject: Invitation to {event}\n\nHi {name},\n\nI would like to invite you to {event} on "
                       f"{day}. It would be great to have you there, and it is a good chance to catch up. Please let "
                       "me know by the day before whether you can make it, and tell me if you have any questions."
                       "\n\nBest regards"),
        })
    for n in range(2, 14):
        lines = "\n".join(f"{n} × {i} = {n * i}" for i in range(1, 11))
        pairs.append({"instruction": f"Write the multiplication table of {n} from 1 to 10.", "input": "",
                      "output": lines})
    return pairs


def wrong_number(rng: random.Random, value: int) -> int:
    return value + rng.choice([-10, -2, -1, 1, 2, 10])


def build_preferences() -> list[dict[str, str]]:
    """Preference pairs: a correct answer over a wrong one, and a constraint-following answer over one that
    breaks the constraint (word count, list length, format)."""
    rng = random.Random(SEED + 1)
    rows = []
    for _ in range(40):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        rows.append({"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.",
                     "rejected": f"{a} plus {b} is {wrong_number(rng, a + b)}."})
    capitals = list(CAPITALS.items())
    for country, capital in capitals:
        other = rng.choice([c for _, c in capitals if c != capital])
        rows.append({"prompt": f"What is the capital of {country}?", "chosen": f"The capital of {country} is {capital}.",
                     "rejected": f"The capital of {country} is {other}."})
    for element, symbol in ELEMENTS.items():
        other = rng.choice([s for s in ELEMENTS.values() if s != symbol])
        rows.append({"prompt": f"What is the chemical symbol for {element}? Answer with the symbol only.",
                     "chosen": symbol, "rejected": f"The chemical symbol for {element} is {other}."})
    for word, opposite in ANTONYMS.items():
        rows.append({"prompt": f"Give the opposite of '{word}' in one word.", "chosen": opposite,
                     "rejected": f"The opposite of the word '{word}' is usually said to be '{opposite}', "
                                 "although it depends on the context in which the word is used."})
    for category, items in CATEGORIES.items():
        k = 3
        chosen = rng.sample(items, k)
        extra = rng.sample(items, min(len(items), k + 2))
        rows.append({"prompt": f"List exactly {k} {category}, separated by commas.", "chosen": ", ".join(chosen),
                     "rejected": ", ".join(extra)})
        rows.append({"prompt": f"Name {k} {category} in lowercase letters, one per line.",
                     "chosen": "\n".join(i.lower() for i in chosen),
                     "rejected": "\n".join(i.upper() for i in chosen)})
    rng.shuffle(rows)
    return rows


def build() -> list[dict[str, str]]:
    rng = random.Random(SEED)
    pairs = short_pairs(rng) + long_pairs(rng)
    rng.shuffle(pairs)
    return pairs


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Write evalsuite's demo instruction set.")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--prefs-out", type=Path, default=PREFS_OUT)
    args = ap.parse_args()
    for path, rows in ((args.out, build()), (args.prefs_out, build_preferences())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
