"""LLM paraphrase for the `rephrase` kind: a fixed prompt, seeded sampling, a disk cache, and checks that
reject a paraphrase that answers the question, drops protected text, or changes numbers or quoted text.

`complete(messages, seed, temperature) -> str` is any chat completion: `openai_completer` talks to an
OpenAI-compatible endpoint (key read from the environment, never stored); evalsuite passes its own
backends the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Callable, Sequence

from perturbations.base import Skip
from perturbations.spans import survives

Complete = Callable[[list[dict[str, str]], int, float], str]

SYSTEM = "You rewrite requests in different words. You never answer them."
PROMPT = ("Rewrite the request below so that it asks for exactly the same thing in different words.\n"
          "Keep every number, every quoted text, every name and every formatting requirement exactly as written.\n"
          "Do not answer it, do not add or remove anything. Reply with the rewritten request only.\n\n"
          "Request:\n{text}")
ANSWER_OPENERS = re.compile(r"^\s*(sure\b|certainly\b|of course\b|here is\b|here's\b|the answer\b|answer\s*:|"
                            r"as an ai\b|i'm sorry\b|i cannot\b)", re.IGNORECASE)
LABEL_PREFIX = re.compile(r"^\s*(rewritten request|rewritten|request|paraphrase)\s*:\s*", re.IGNORECASE)
NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")


def clean(output: str) -> str:
    """The paraphrase without a leading "Rewritten request:" label or wrapping quotes the model added."""
    text = LABEL_PREFIX.sub("", output.strip())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“":
        text = text[1:-1].strip()
    return text


def rejection(original: str, paraphrase: str, protected: Sequence[str]) -> str | None:
    """Why `paraphrase` is not an acceptable rewording of `original`, or None."""
    if not paraphrase.strip():
        return "empty"
    if " ".join(paraphrase.split()) == " ".join(original.split()):
        return "unchanged"
    if ANSWER_OPENERS.search(paraphrase):
        return "answers instead of rephrasing"
    if len(paraphrase) > 2 * len(original) + 80:
        return "much longer than the original (answers or adds to it)"
    if original.rstrip().endswith("?") and "?" not in paraphrase:
        return "no longer a question (answers it?)"
    if sorted(NUMBER.findall(original)) != sorted(NUMBER.findall(paraphrase)):
        return "changed the numbers"
    missing = survives(original, paraphrase, protected)
    if missing:
        return "dropped protected text: " + ", ".join(repr(m) for m in missing[:3])
    return None


class Cache:
    """Completions by request key in one SQLite file (WAL; safe across processes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with closing(sqlite3.connect(path, timeout=60)) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def get(self, key: str) -> str | None:
        with closing(sqlite3.connect(self.path, timeout=60)) as db:
            row = db.execute("SELECT text FROM completions WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

    def put(self, key: str, text: str) -> None:
        with closing(sqlite3.connect(self.path, timeout=60)) as db, db:
            db.execute("INSERT OR REPLACE INTO completions (key, text) VALUES (?, ?)", (key, text))


class Paraphraser:
    def __init__(self, complete: Complete, name: str, cache: Cache | None = None, attempts: int = 3,
                 temperature: float = 0.7) -> None:
        self.complete, self.name, self.cache = complete, name, cache
        self.attempts, self.temperature = attempts, temperature

    def identity(self) -> str:
        digest = hashlib.sha256((SYSTEM + PROMPT).encode()).hexdigest()[:8]
        return f"llm:{self.name}:prompt-{digest}:t{self.temperature}:x{self.attempts}"

    def _ask(self, messages: list[dict[str, str]], seed: int) -> str:
        key = hashlib.sha256(json.dumps([self.name, messages, seed, self.temperature]).encode()).hexdigest()
        hit = self.cache.get(key) if self.cache else None
        if hit is not None:
            return hit
        text = self.complete(messages, seed, self.temperature)
        if self.cache:
            self.cache.put(key, text)
        return text

    def paraphrase(self, text: str, protected: Sequence[str], rng: random.Random) -> str:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT.format(text=text)}]
        reasons = []
        for _ in range(self.attempts):
            out = clean(self._ask(messages, rng.getrandbits(31)))
            why = rejection(text, out, protected)
            if why is None:
                return out
            reasons.append(why)
        raise Skip(f"all {self.attempts} paraphrases rejected: " + "; ".join(reasons))


def api_key(base_url: str, api_key_env: str | None) -> str | None:
    """The key to send, or None: the variable the user named, or OPENAI_API_KEY for OpenAI's own endpoint only,
    so a user's key never reaches another server unasked; a key over plain http off this machine is warned
    about. The same policy as evalsuite's OpenAI-compatible backend (this package cannot import it)."""
    import ipaddress
    import logging
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    env = api_key_env or ("OPENAI_API_KEY" if url.scheme == "https" and url.hostname == "api.openai.com" else None)
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ValueError(f"environment variable {env} (the API key for {base_url}) is not set or empty")
    try:
        loopback = url.hostname == "localhost" or ipaddress.ip_address(url.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if url.scheme == "http" and not loopback:
        logging.getLogger(__name__).warning("the API key from %s goes to %s over plain http: use https", env,
                                            url.hostname)
    return key


def openai_completer(base_url: str, model: str, api_key_env: str | None = None, max_tokens: int = 512,
                     timeout: float = 120.0) -> Complete:
    """Chat completions from an OpenAI-compatible endpoint; the key as `api_key` decides. (evalsuite itself
    paraphrases through its own backend, which adds bounded retries and reply checks.)"""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key(base_url, api_key_env) or "EMPTY", timeout=timeout)

    def complete(messages: list[dict[str, str]], seed: int, temperature: float) -> str:
        reply = client.chat.completions.create(model=model, messages=messages, seed=seed,  # type: ignore[arg-type]
                                               temperature=temperature, max_tokens=max_tokens)
        return reply.choices[0].message.content or ""

    return complete
