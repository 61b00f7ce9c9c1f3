"""The bad-input catalogue: what a new user gets wrong, each answered by exactly one `evalsuite: error:` line
and exit code 2, before any model loads, losing nothing that was there (a previous run's results stay as
they were). The CLI runs in-process (`evalsuite.cli.main`, the console entry point) so the catalogue stays
fast; `test_cli.py` and the other CLI tests run it as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SENTINEL = "a previous run's results\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Folders the cases point at: models with one checkpoint, an empty folder, a file, data, a previous run."""
    root = tmp_path_factory.mktemp("bad-input")
    models = root / "models"
    models.mkdir()
    (models / "base").symlink_to(tiny_model_dir)
    (root / "empty").mkdir()
    (root / "file.txt").write_text("not a folder")
    data = root / "mmlu"
    data.mkdir()
    (data / "test.jsonl").write_text(json.dumps({"question": "Q?", "subject": "anatomy", "choices": list("abcd"),
                                                 "answer": 0}) + "\n")
    bad_jsonl = root / "bad.jsonl"
    bad_jsonl.write_text('{"task": "navigate", "input": "x", "target": "Yes", "response": "Yes"}\n{oops\n')
    no_prompt = root / "requests.jsonl"
    no_prompt.write_text('{"text": "hi"}\n')
    return {"root": root, "models": models, "data": data, "bad_jsonl": bad_jsonl, "no_prompt": no_prompt}


def config(world: dict[str, Path], text: str) -> str:
    path = world["root"] / f"cfg{abs(hash(text))}.yaml"
    path.write_text(text)
    return str(path)


def previous_run(world: dict[str, Path], name: str) -> Path:
    out = world["root"] / "runs" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.csv").write_text(SENTINEL)
    return out


# (name, argv with {placeholders}, what the error line must say)
RUN = ["run", "--models", "{models}", "--data", "{data}", "--out", "{out}"]
CASES = [
    ("generate: negative max-new-tokens", ["generate", "--max-new-tokens", "-5", "x"], "--max-new-tokens"),
    ("generate: negative temperature", ["generate", "--temperature", "-1", "x"], "--temperature"),
    ("generate: top-p 0", ["generate", "--top-p", "0", "x", "--model", "{models}/base"], "top_p"),
    ("generate: out under /proc", ["generate", "x", "--out", "/proc/x/out.jsonl", "--model", "{models}/base"], "/proc/x"),
    ("generate: out is a folder", ["generate", "x", "--out", "{root}", "--model", "{models}/base"], "is a folder"),
    ("generate: input row without a prompt", ["generate", "--input", "{no_prompt}"], "needs `prompt`"),
    ("generate: unknown backend", ["generate", "x", "--backend", "bogus", "--model", "{models}/base"], "kind"),
    ("run: missing --models", ["run"], "Missing option '--models'"),
    ("run: unknown flag", [*RUN, "--bogus"], "No such option: --bogus"),
    ("run: variants 0", [*RUN, "--variants", "0"], "run.variants"),
    ("run: severity 2", [*RUN, "--severity", "2"], "run.severity"),
    ("run: severity 0", [*RUN, "--severity", "0"], "run.severity"),
    ("run: unknown prompt format", [*RUN, "--prompt-format", "weird"], "run.prompt_format"),
    ("run: negative limit", [*RUN, "--limit", "-1"], "run.limit"),
    ("run: batch size 0", [*RUN, "--batch-size", "0"], "batch_size"),
    ("run: unknown dtype", [*RUN, "--dtype", "fp64"], "dtype"),
    ("run: unknown POSIX normaliser", [*RUN, "--posix", "bogus"], "run.posix"),
    ("run: unknown benchmark", [*RUN, "--benchmarks", "mmlu,notabench"], "unknown benchmark 'notabench'"),
    ("run: unknown perturbation kind", [*RUN, "--perturb", "typo,noise"], "unknown perturbation kind(s) noise"),
    ("run: misspelt benchmark option", [*RUN, "--config", "cfg:benchmark_options: {mmlu: {max_new_token: 5}}"],
     "did you mean max_new_tokens?"),
    ("run: option of an unknown benchmark", [*RUN, "--config", "cfg:benchmark_options: {mmmlu: {num_fewshot: 5}}"],
     "did you mean mmlu?"),
    ("run: bad option value", [*RUN, "--config", "cfg:benchmark_options: {mmlu: {num_fewshot: -1}}"], "num_fewshot"),
    ("run: option of the wrong type", [*RUN, "--config", "cfg:benchmark_options: {mmlu: {num_fewshot: five}}"],
     "num_fewshot: Input should be a valid integer"),
    ("run: a list option given as one word", [*RUN, "--benchmarks", "bbh", "--config",
                                              "cfg:benchmark_options: {bbh: {tasks: navigate}}"], "tasks:"),
    ("run: judge key variable unset", [*RUN, "--benchmarks", "mmlu,mtbench", "--judge-model", "m", "--judge-base-url",
                                       "http://127.0.0.1:9/v1", "--judge-api-key-env", "EVALSUITE_TEST_UNSET_KEY"],
     "EVALSUITE_TEST_UNSET_KEY"),
    ("run: local judge checkpoint missing", [*RUN, "--benchmarks", "mmlu,alpacaeval", "--judge-model", "{root}/nope"],
     "checkpoint not found"),
    ("run: unknown BBH task", [*RUN, "--benchmarks", "bbh", "--config", "cfg:benchmark_options: {bbh: {tasks: [nota]}}"],
     "unknown BBH task"),
    ("run: unknown section key", [*RUN, "--config", "cfg:run: {benchmark: [mmlu]}"], "run.benchmark"),
    ("run: model in the backend section", [*RUN, "--config", "cfg:backend: {model: x}"], "backend.model"),
    ("run: YAML that does not parse", [*RUN, "--config", "cfg:run: [unclosed"], "not valid YAML"),
    ("run: missing run file", [*RUN, "--config", "{root}/nope.yaml"], "cannot read config"),
    ("run: judge benchmark without a judge", [*RUN, "--benchmarks", "mmlu,alpacaeval"], "need(s) a judge"),
    ("run: paraphraser without rephrase", [*RUN, "--perturb", "typo", "--paraphrase-model", "m"], "rephrase kind"),
    ("run: models folder missing", ["run", "--models", "{root}/nope", "--out", "{out}"], "is not a folder"),
    ("run: no checkpoint in the models folder", ["run", "--models", "{root}/empty", "--data", "{data}", "--out", "{out}"],
     "no checkpoint below"),
    ("run: out under /proc", ["run", "--models", "{models}", "--out", "/proc/x"], "/proc/x"),
    ("run: out is a file", ["run", "--models", "{models}", "--out", "{root}/file.txt"], "is a file"),
    ("run: store is not a database", [*RUN, "--perturb", ""], "not a readable request store"),
    ("eval: store is not a database", ["eval", "--store", "{root}/file.txt", "--data", "{data}", "--out", "{out}",
                                       "--model", "{models}/base"], "not a readable request store"),
    ("eval: out under /proc", ["eval", "--out", "/proc/x", "--model", "{models}/base"], "/proc/x"),
    ("eval: out is a file", ["eval", "--out", "{root}/file.txt", "--model", "{models}/base"], "is a file"),
    ("eval: unknown benchmark", ["eval", "--benchmarks", "notabench", "--out", "{out}", "--model", "{models}/base"],
     "unknown benchmark"),
    ("eval: limit 0", ["eval", "--limit", "0", "--out", "{out}"], "--limit"),
    ("eval: negative few-shot", ["eval", "--num-fewshot", "-1", "--out", "{out}"], "--num-fewshot"),
    ("eval: unknown prompt format", ["eval", "--prompt-format", "weird", "--out", "{out}"], "--prompt-format"),
    ("eval: judge benchmark without a judge", ["eval", "--benchmarks", "mtbench", "--data", "{data}", "--out", "{out}",
                                               "--model", "{models}/base"], "need(s) a judge"),
    ("perturb: out under /proc", ["perturb", "--benchmark", "mmlu", "--kind", "typo", "--out", "/proc/x/v.jsonl"], "/proc/x"),
    ("perturb: out is a folder", ["perturb", "--benchmark", "mmlu", "--kind", "typo", "--out", "{root}"], "is a folder"),
    ("perturb: unknown kind", ["perturb", "--benchmark", "mmlu", "--kind", "noise", "--data", "{data}",
                               "--out", "{root}/v.jsonl"], "unknown perturbation kind"),
    ("perturb: severity 0", ["perturb", "--benchmark", "mmlu", "--kind", "typo", "--severity", "0", "--data", "{data}",
                             "--out", "{root}/v.jsonl"], "--severity"),
    ("perturb: variants 0", ["perturb", "--benchmark", "mmlu", "--kind", "typo", "--variants", "0",
                             "--out", "{root}/v.jsonl"], "--variants"),
    ("score: responses file missing", ["score", "bbh", "--responses", "{root}/nope.jsonl", "--out", "{out}"], "cannot read"),
    ("score: responses line not JSON", ["score", "bbh", "--responses", "{bad_jsonl}", "--out", "{out}"], "bad.jsonl:2"),
    ("score: out is a file", ["score", "bbh", "--responses", "{bad_jsonl}", "--out", "{root}/file.txt"], "is a file"),
    ("score: unknown benchmark", ["score", "notabench", "--responses", "{bad_jsonl}", "--out", "{out}"], "handles"),
    ("data prepare: packages folder without the wheels", ["data", "prepare", "--dest", "{root}/d", "--packages", "{root}/empty"],
     "has no wheel of"),
    ("data prepare: packages folder missing", ["data", "prepare", "--dest", "{root}/d", "--packages", "{root}/nope"],
     "is not a folder"),
    ("train sft: out is a file", ["train", "sft", "--out", "{root}/file.txt"], "is a file"),
    ("train grid: bad cells", ["train", "grid", "--cells", "0:2,x", "--out", "{out}"], "bad cell"),
    ("models prepare: unknown model", ["models", "prepare", "no-such-model"], "unknown model"),
]


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """`evalsuite ARGV` through the console entry point, in this process: (exit code, stderr)."""
    from evalsuite.cli import main

    old = sys.argv
    sys.argv = ["evalsuite", *argv]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_loses_nothing(world, capsys, name, argv, expected, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(world["root"] / "cache"))
    out = previous_run(world, name.replace(" ", "_").replace(":", ""))
    if name == "run: store is not a database":
        (out / "requests.sqlite").write_bytes(b"somebody's file" * 50)
    subs = {k: str(v) for k, v in world.items()} | {"out": str(out)}
    args = [config(world, a[4:]) if a.startswith("cfg:") else a.format(**subs) for a in argv]
    code, err = cli(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("evalsuite: error: "), err
    assert expected in lines[0], lines[0]
    assert (out / "results.csv").read_text() == SENTINEL  # nothing lost
    assert not (out / "run.json").exists() and not list(out.glob("checkpoints"))
    if name == "run: store is not a database":
        assert (out / "requests.sqlite").read_bytes() == b"somebody's file" * 50


def chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("what", ["store file", "run folder"])
def test_a_store_or_folder_that_cannot_be_written_is_refused_before_any_work(world, capsys, tmp_path, what):
    """Read-only even for root (an immutable file or folder, `chattr +i`): the run stops before any model loads
    instead of losing its answers, and leaves run.json and the table as they were."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text(SENTINEL)
    target = out / "requests.sqlite" if what == "store file" else out
    if what == "store file":
        from evalsuite.store import RequestStore

        RequestStore(target)
    if not chattr(target, "+i"):
        pytest.skip("this filesystem has no immutable attribute (chattr +i)")
    try:
        code, err = cli(["run", "--models", str(world["models"]), "--data", str(world["data"]), "--out", str(out),
                         "--benchmarks", "mmlu", "--perturb", ""], capsys)
    finally:
        chattr(target, "-i")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("evalsuite: error: "), err
    assert ("cannot use request store" if what == "store file" else "not a folder evalsuite can write to") in lines[0]
    assert (out / "results.csv").read_text() == SENTINEL and not (out / "run.json").exists()
