"""Reading JSONL: records are separated by "\n" only. `str.splitlines()` also splits on U+2028, U+2029, U+0085
(and \x1c-\x1e, \x0b, \x0c), which JSON strings may hold unescaped when written with `ensure_ascii=False`."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import EVALSUITE, ROOT

SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x1c", "\x0b", "\x0c"]


def test_jsonl_with_unicode_line_separators_inside_strings(tmp_path):
    from evalsuite.rows import read_jsonl, read_rows

    rows = [{"input": f"first{sep}second", "target": "x"} for sep in SEPARATORS]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n", encoding="utf-8")
    assert [r for _, r in read_jsonl(path)] == rows
    assert read_rows(str(path)) == rows
    path.write_text(path.read_text() + "{broken\n")
    from evalsuite.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"rows.jsonl:{len(rows) + 2}: not valid JSON"):
        read_jsonl(path)


def test_score_cli_reads_responses_holding_line_separators(tmp_path):
    """`evalsuite score bbh` on a valid file written with ensure_ascii=False (it was rejected as invalid JSON)."""
    rows = [{"task": "navigate", "input": "Q\u2028go?", "target": "Yes", "response": "Yes\u2028sure"},
            {"task": "navigate", "input": "Q2", "target": "No", "response": "(A) No\u2029"}]
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = subprocess.run(EVALSUITE + ["score", "bbh", "--responses", str(responses), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = (tmp_path / "out" / "samples_bbh_zeroshot.jsonl").read_text(encoding="utf-8").split("\n")
    assert len([s for s in samples if s]) == 4  # 2 items × 2 filters
