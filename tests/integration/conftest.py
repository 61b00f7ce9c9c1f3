from __future__ import annotations

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
