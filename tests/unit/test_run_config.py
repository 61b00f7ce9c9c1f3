"""`evalsuite run --config FILE`: the file fills what the flags leave open, flags win, and a bad file is a
clear error before any model is loaded."""

from __future__ import annotations

import subprocess

import pytest

from evalsuite.errors import ConfigError
from evalsuite.run.config import RunFile, judge_spec, load_run_file, run_settings
from tests.conftest import EVALSUITE, ROOT

FILE = """
backend: {kind: hf, dtype: float32, prefix_min_tokens: 64}
run:
  benchmarks: [mmlu, ifeval]
  perturb: typo, format
  variants: 3
  limit: 5
benchmark_options:
  mmlu: {num_fewshot: 5}
judge: {model: judge-model, base_url: "http://127.0.0.1:9/v1", max_new_tokens: 512}
"""


def test_file_values_fill_the_settings_and_flags_override_them(tmp_path):
    (tmp_path / "run.yaml").write_text(FILE)
    file = load_run_file(tmp_path / "run.yaml")
    settings = run_settings(file)
    assert settings.benchmarks == ["mmlu", "ifeval"] and settings.kinds == ["typo", "format"]
    assert (settings.variants, settings.limit, settings.severity, settings.seed) == (3, 5, 0.1, 1234)
    assert settings.backend == {"kind": "hf", "dtype": "float32", "batch_size": 16, "prefix_min_tokens": 64}
    assert settings.options == {"mmlu": {"num_fewshot": 5}}
    over = run_settings(file, benchmarks="bbh", perturb="", variants=1, dtype="bfloat16", batch_size=4)
    assert over.benchmarks == ["bbh"] and over.kinds == [] and over.variants == 1
    assert over.backend["dtype"] == "bfloat16" and over.backend["batch_size"] == 4 and over.limit == 5
    defaults = run_settings(RunFile())
    assert defaults.benchmarks == ["mmlu", "bbh", "ifeval"] and defaults.kinds == ["typo", "rephrase", "format"]


def test_judge_comes_from_the_file_unless_a_flag_says_otherwise(tmp_path):
    (tmp_path / "run.yaml").write_text(FILE)
    file = load_run_file(tmp_path / "run.yaml")
    spec = judge_spec(file, max_new_tokens=64)
    assert (spec.model, spec.base_url, spec.max_new_tokens) == ("judge-model", "http://127.0.0.1:9/v1", 64)
    assert judge_spec(RunFile()) is None
    assert judge_spec(RunFile(), model="m").max_new_tokens == 2048


@pytest.mark.parametrize("text, problem", [
    ("run: {variants: 0}", "run.variants"),
    ("run: {benchmark: [mmlu]}", "run.benchmark"),
    ("judge: {base_url: x}", "judge.model"),
    ("- just a list", "mapping"),
])
def test_a_malformed_file_names_the_problem(tmp_path, text, problem):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        load_run_file(tmp_path / "bad.yaml")


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="unknown perturbation kind"):
        run_settings(RunFile(), perturb="typo,noise")


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text("run: {severity: 3}")
    proc = subprocess.run(EVALSUITE + ["run", "--models", str(tmp_path), "--config", str(tmp_path / "bad.yaml"),
                                       "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "run.severity" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_paraphrase_section_and_its_flags(tmp_path):
    from evalsuite.run.config import paraphrase_spec

    (tmp_path / "run.yaml").write_text("paraphrase: {model: /models/p}\n")
    file = load_run_file(tmp_path / "run.yaml")
    assert paraphrase_spec(file).model == "/models/p" and paraphrase_spec(file).base_url is None
    assert paraphrase_spec(file, model="served", base_url="http://h/v1").model == "served"
    assert paraphrase_spec(RunFile()) is None


def test_a_paraphrase_model_without_the_rephrase_kind_is_refused(tmp_path):
    proc = subprocess.run(EVALSUITE + ["run", "--models", str(tmp_path), "--perturb", "typo", "--paraphrase-model", "m",
                                       "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "rephrase kind" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_run_help_shows_every_default():
    """Defaults are written "(default: X)": rich read the old "[default: X]" as markup and dropped it, leaving " ."."""
    proc = subprocess.run(EVALSUITE + ["run", "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "COLUMNS": "250"})
    assert proc.returncode == 0
    for default in ("(default: mmlu,bbh,ifeval)", "(default: 2)", "(default: 0.1)", "(default: 1234)", "(default: 16)",
                    "(default: response_length)"):
        assert default in proc.stdout, default
    assert " ." not in proc.stdout


def test_run_json_records_settings_as_json_values(tmp_path):
    """Numeric options stay numbers, a judge is recorded by its identity (never an object's repr)."""
    from evalsuite.backends import HFConfig
    from evalsuite.benchmarks.judge import Judge, JudgeCache
    from evalsuite.run.types import RunSettings

    judge = Judge(HFConfig(model="judge-model"), cache=JudgeCache(tmp_path / "j.sqlite"))
    settings = RunSettings(benchmarks=["mmlu", "mtbench"], options={"mmlu": {"num_fewshot": 5}, "mtbench": {"judge": judge}})
    record = settings.record()
    assert record["options"]["mmlu"] == {"num_fewshot": 5}
    assert record["options"]["mtbench"]["judge"]["model"] == "judge-model"
    import json

    assert json.loads(json.dumps(record)) == record
