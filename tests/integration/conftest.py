from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.backends import HFConfig, load_backend

CHAT_PROMPTS = [
    "What is the capital of France?",
    "List three primary colors.",
    "Write one sentence about cats.",
    "What is 15 plus 27?",
    "Name a famous physicist and say why they are known.",
    "Give a synonym for 'happy'.",
    "How many days are in a week?",
    "Explain what photosynthesis is in one sentence.",
]
LL_PAIRS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is", " London"),
    ("Question: What is 2 + 2?\nAnswer:", " 4"),
    ("Question: What is 2 + 2?\nAnswer:", " 5"),
    ("The following are multiple choice questions (with answers) about biology.\n\nWhich organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC. Ribosome\nD. Golgi\nAnswer:", " B"),
    ("The following are multiple choice questions (with answers) about biology.\n\nWhich organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC. Ribosome\nD. Golgi\nAnswer:", " A"),
    ("", "Hello world"),
    ("Water boils at ", "100 degrees Celsius at sea level."),
]


@pytest.fixture(scope="session")
def hf_fp32(smollm2_dir):
    backend = load_backend(HFConfig(model=str(smollm2_dir), dtype="float32", batch_size=8))
    yield backend
    backend.close()


# The packaged demo study (`make demo`) shrunk for the suite: the same grid, stages, benchmarks, kinds, POSIX,
# report and notebook; fewer steps, items and tokens.
DEMO_SHRINK = [
    "sft.training.max_steps=1", "sft.training.save_steps=1", "dpo.training.max_steps=1", "dpo.training.save_steps=1",
    "eval.run.limit=1", "eval.benchmark_options.mmlu.subjects=[marketing, sociology]",
    "eval.benchmark_options.bbh.max_new_tokens=16", "eval.benchmark_options.ifeval.max_new_tokens=24",
]


def demo_cli(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [a for o in DEMO_SHRINK for a in ("--set", o)]
    return subprocess.run([sys.executable, "-m", "evalsuite", "demo", "--out", str(out), *args, *extra],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """(study folder, the finished `evalsuite demo` process): run once, shared by the demo and browser tests.
    EVALSUITE_DEMO_STUDY=DIR uses a demo study already there instead (a full `make demo`'s reports/demo, e.g. for
    the browser test's screenshot; the demo tests' size checks expect the shrunk run)."""
    if os.environ.get("EVALSUITE_DEMO_STUDY"):
        out = Path(os.environ["EVALSUITE_DEMO_STUDY"]).resolve()
        return out, subprocess.CompletedProcess([], 0, stdout="", stderr="")
    out = tmp_path_factory.mktemp("demo") / "study"
    proc = demo_cli(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc
