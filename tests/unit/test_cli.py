"""The CLI as users run it: a subprocess, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys



def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evalsuite", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("evalsuite: error: ") and pattern in lines[-1], proc.stderr
    assert len([l for l in lines if l.startswith("evalsuite: error")]) == 1


def test_help_lists_the_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("demo", "models", "generate"):
        assert cmd in proc.stdout
    assert "prepare" in run_cli("models", "--help").stdout


def test_unknown_model_name():
    assert_one_line_error(run_cli("models", "prepare", "no-such-model"), "unknown model 'no-such-model'")


def test_unreadable_paths(tmp_path):
    assert_one_line_error(run_cli("models", "prepare", str(tmp_path / "nope" / "m.gguf")), "not found")
    (tmp_path / "not-a-model").mkdir()
    assert_one_line_error(run_cli("models", "prepare", str(tmp_path / "not-a-model")), "no config.json")
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    assert_one_line_error(run_cli("models", "prepare", str(text)), "not a GGUF file")


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    assert_one_line_error(run_cli("models", "prepare", str(bad)), "corrupt GGUF file")


def test_unreachable_openai_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("generate", "hi", "--backend", "openai", "--model", "m", "--base-url", f"http://127.0.0.1:{port}/v1")
    assert_one_line_error(proc, "failed after 4 attempts")  # default: 3 retries


def test_malformed_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend:\n  kind: hf\n  batch_size: -3\n")
    proc = run_cli("generate", "hi", "--config", str(cfg), "--model", str(tmp_path))
    assert_one_line_error(proc, "batch_size")


def test_missing_checkpoint_dir(tmp_path):
    proc = run_cli("generate", "hi", "--model", str(tmp_path / "ckpt"))
    assert_one_line_error(proc, "checkpoint not found")


def test_generate_on_a_tiny_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "gen.jsonl"
    proc = run_cli("generate", "hello", "world", "--raw", "--model", str(tiny_model_dir), "--max-new-tokens", "4",
                   "--dtype", "fp32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [__import__("json").loads(l) for l in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["hello", "world"]
    assert all(r["num_tokens"] <= 4 and r["finish_reason"] in ("stop", "length") for r in rows)
