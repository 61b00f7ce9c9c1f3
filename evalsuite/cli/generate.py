"""`evalsuite generate`: answer prompts through any backend (handy for smoke tests and for scripting)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from evalsuite.cli import common
from evalsuite.cli.common import shown
from evalsuite.errors import ConfigError
from evalsuite.models import DEFAULT_MODEL

console = Console()


def read_requests_file(path: Path) -> list[dict]:
    """JSONL rows with `prompt` (raw) or `messages` (chat) or `instruction` (sent as one user message)."""
    from evalsuite.rows import read_jsonl

    rows = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict) or not ({"prompt", "messages", "instruction"} & row.keys()):
            raise ConfigError(f"{path}:{n}: each row needs `prompt`, `messages` or `instruction`")
        rows.append(row)
    return rows


def generate(
    prompts: Annotated[Optional[list[str]], typer.Argument(help="Prompts (sent as user messages unless --raw).")] = None,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="JSONL of prompt/messages/instruction rows.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write JSONL results here.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Send prompts as raw text instead of chat messages.")] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 128,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0: greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus mass, in (0, 1].")] = 1.0,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop string (repeatable).")] = None,
    model: common.ModelOpt = DEFAULT_MODEL,
    backend: common.BackendOpt = None,
    dtype: common.DTypeOpt = None,
    config: common.ConfigOpt = None,
    base_url: common.BaseUrlOpt = None,
    api_key_env: common.ApiKeyEnvOpt = None,
    tokenizer: common.TokenizerOpt = None,
    batch_size: common.BatchOpt = None,
    trust_remote_code: common.TrustOpt = False,
) -> None:
    """Generate completions for prompts given as arguments or in a JSONL file."""
    from evalsuite.backends import GenerationRequest, load_backend

    from evalsuite.paths import atomic_write, ensure_output_file

    if out:
        ensure_output_file(out)  # before any work: an unwritable --out must not cost the generations
    rows = [{"prompt": p} if raw else {"instruction": p} for p in prompts or []]
    if input_file:
        rows += read_requests_file(input_file)
    if not rows:
        raise ConfigError("nothing to generate: give prompts as arguments or --input FILE.jsonl")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=tuple(stop or ()))
    requests = []
    for n, row in enumerate(rows, 1):
        try:
            if "instruction" in row:
                requests.append(GenerationRequest(messages=[{"role": "user", "content": row["instruction"]}], **settings))
            else:
                requests.append(GenerationRequest(prompt=row.get("prompt"), messages=row.get("messages"), **settings))
        except ValueError as exc:  # the request's own checks: top_p in (0, 1], exactly one of prompt / messages
            raise ConfigError(f"request {n}: {exc}") from None
    from evalsuite.backends.config import backend_config

    cfg = backend_config(
        model=model, backend=backend, dtype=dtype, config=config, base_url=base_url, api_key_env=api_key_env,
        tokenizer=tokenizer, batch_size=batch_size, trust_remote_code=trust_remote_code,
    )
    with load_backend(cfg) as engine:
        results = engine.generate(requests, progress=True)
    records = [
        {**row, "response": g.text, "finish_reason": g.finish_reason, "num_tokens": len(g.token_ids) if g.token_ids is not None else None}
        for row, g in zip(rows, results)
    ]
    if out:
        atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        console.print(f"wrote {len(records)} rows to {shown(str(out))}")
    else:
        for r in records:
            console.print(f"[bold]>[/bold] {shown(str(r.get('instruction') or r.get('prompt') or r.get('messages')))}", highlight=False)
            console.print(shown(r["response"]), highlight=False)
