"""The NLTK sentence splitter IFEval's checkers need (`punkt_tab`), offline if need be.

Order: an installed official `punkt_tab` → `nltk.download("punkt_tab")` into evalsuite's cache (not tried
offline: `HF_HUB_OFFLINE=1` or `EVALSUITE_OFFLINE=1`) → a Punkt
model trained here with NLTK's own `PunktTrainer` on English text available offline (the prepared
AlpacaEval reference outputs, else the IFEval prompts), saved in the `punkt_tab` format and marked as a
fallback. Which one was used is returned and written into every IFEval result, because sentence counts
(the `length_constraints:number_sentences` checker) can differ between the two.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

FALLBACK_MARKER = "EVALSUITE_FALLBACK.json"


def nltk_dir() -> Path:
    from evalsuite.paths import cache_dir

    return cache_dir() / "nltk_data"


def ensure_punkt(training_text: Callable[[], Iterable[str]], log: Callable[[str], None] = print) -> str:
    """`official` or `trained-fallback (<sha256 of the training text>)`."""
    import nltk

    root = nltk_dir()
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    model = root / "tokenizers" / "punkt_tab" / "english"
    if (model / FALLBACK_MARKER).is_file():
        return f"trained-fallback ({json.loads((model / FALLBACK_MARKER).read_text())['text_sha256'][:12]})"
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return "official"
    except LookupError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    if offline():
        return train_fallback(model, list(training_text()), log)
    try:
        if nltk.download("punkt_tab", download_dir=str(root), quiet=True, raise_on_error=True):
            nltk.data.find("tokenizers/punkt_tab/english/")
            return "official"
    except Exception:  # no network, blocked host, bad archive: all mean "train our own"
        pass
    return train_fallback(model, list(training_text()), log)


def offline() -> bool:
    """The user said not to touch the network (the Hugging Face offline switches evalsuite's tests and offline
    users set): no download is tried."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "EVALSUITE_OFFLINE"))


def train_fallback(model: Path, texts: list[str], log: Callable[[str], None]) -> str:
    from nltk.tokenize.punkt import PunktTrainer, save_punkt_params

    text = "\n\n".join(texts)
    if not text.strip():
        from evalsuite.errors import EvalsuiteError

        raise EvalsuiteError("IFEval needs NLTK's punkt_tab: it is not installed, cannot be downloaded, and there is "
                             "no text to train a fallback on (run `evalsuite data prepare`)")
    digest = hashlib.sha256(text.encode()).hexdigest()
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train(text, finalize=True)
    model.parent.mkdir(parents=True, exist_ok=True)  # the model dir itself is created private by NLTK
    save_punkt_params(trainer.get_params(), dir=str(model))
    (model / FALLBACK_MARKER).write_text(json.dumps({"text_sha256": digest, "characters": len(text)}) + "\n")
    log(f"warning: NLTK punkt_tab is not installed and cannot be downloaded; trained a fallback Punkt model on "
        f"{len(text):,} characters of offline text ({model}). Sentence counts may differ from the official model.")
    return f"trained-fallback ({digest[:12]})"
