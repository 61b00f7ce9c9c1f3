"""Bad training input is reported well: every problem at once, JSONL rows by their line, and an unwritable
output folder before any model loads, each as one `evalsuite: error:` line with exit code 2."""

from __future__ import annotations

import json
import subprocess

import pytest

from evalsuite.errors import ConfigError
from tests.conftest import EVALSUITE, ROOT


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(EVALSUITE + args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalsuite: error:"), proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("command,out", [
    (["train", "sft"], "file"),
    (["train", "sft"], "/proc/x"),
    (["train", "grid", "--cells", "0:1"], "file"),
    (["train", "dpo", "--from", "{tmp}"], "file"),
])
def test_unwritable_out_fails_before_any_model_loads(tmp_path, command, out):
    # The model does not exist: a run that got as far as loading it would fail on that instead.
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    target = str(existing) if out == "file" else out
    args = [a.format(tmp=tmp_path) for a in command] + ["--out", target, "model=/nonexistent/model"]
    if command[1] == "dpo":
        args = args[:-1]  # DPO takes its model from the SFT cells
    line = _one_error_line(_cli(args))
    assert f"--out {target}" in line
    assert existing.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["results.txt"]


def test_bad_row_is_named_by_its_line_in_one_error_line(tiny_model_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "Add 2 and 3", "response": "5"}) + "\n\n"
                    + json.dumps({"prompt": "Add 1 and 1", "response": ""}) + "\n")
    line = _one_error_line(_cli(["train", "sft", "--out", str(tmp_path / "out"), f"model={tiny_model_dir}",
                                 f"dataset.path={data}"]))
    assert "line 3: response is empty or not a string" in line
    assert not (tmp_path / "out" / "sft").exists()


def test_every_bad_cell_is_named():
    line = _one_error_line(_cli(["train", "grid", "--cells", "0:2,x,0.2:1"]))
    assert "bad cell '0:2'" in line and "lambda_r must be in [0, 1]" in line
    assert "bad cell 'x'" in line and "write cells as LP:LR" in line and "0.2:1'" not in line


def test_parse_cells_collects_every_problem():
    from evalsuite.training.config import parse_cells

    with pytest.raises(ConfigError) as info:
        parse_cells("0:0,1.5:1,a:b,1:1")
    assert str(info.value) == ("bad cell '0:0': trains no token; bad cell '1.5:1': lambda_p must be in [0, 1], got 1.5; "
                               "bad cell 'a:b': write cells as LP:LR, e.g. 0.2:1")


def test_config_errors_name_every_problem():
    from evalsuite.training.config import load_run_config, load_sft_config
    from evalsuite.training.dpo import DPORunConfig

    with pytest.raises(ConfigError) as info:
        load_sft_config(None, ["lambda_p=2", "training.learning_rat=1e-5", "training.seed=3", "oops", "lambda_r=0.5"])
    message = str(info.value)
    assert "\n" not in message
    for part in ("lambda_p must be in [0, 1]", "training.learning_rat is not", "did you mean learning_rate",
                 "training.seed is set by evalsuite: use seed", "override 'oops' is not KEY=VALUE"):
        assert part in message, part
    with pytest.raises(ConfigError) as info:
        load_run_config(DPORunConfig, None, ["beta=0", "training.lr=1", "training.beta=0.2"])
    message = str(info.value)
    assert "beta" in message.split(";")[0] and "training.lr is not" in message and "training.beta is set by" in message
