"""The durable request store and the stored backend: answered once, never duplicated, keyed by what can
change an answer, and safe against SIGKILL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from evalsuite.backends import GenerationRequest, HFConfig, LoglikelihoodRequest, ScoreRequest, load_backend
from evalsuite.store.backend import StoredBackend
from evalsuite.store import RequestStore
from tests.conftest import ROOT

PROMPTS = [f"Item {i}: the quick brown fox" for i in range(12)]


def _requests():
    return [GenerationRequest(prompt=p, max_new_tokens=6) for p in PROMPTS]


def test_answers_are_stored_once_and_reused(tiny_model_dir, tmp_path):
    store = RequestStore(tmp_path / "store.sqlite")
    with load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32")) as engine:
        stored = StoredBackend(engine, store, commit_every=5)
        reqs = _requests() + [_requests()[0]]  # a duplicate within the call is answered once
        first = stored.generate(reqs)
        assert stored.answered == 12 and store.count() == 12
        again = StoredBackend(engine, store)
        assert again.generate(reqs) == first and again.answered == 0
        assert first == engine.generate(reqs)  # what the model itself says
        ll = [LoglikelihoodRequest("The quick brown", " fox"), LoglikelihoodRequest("Item 1:", " the")]
        assert again.loglikelihood(ll) == engine.loglikelihood(ll) and again.answered == 2
        sc = [ScoreRequest("The quick", tuple(first[0].token_ids))]
        assert again.score(sc) == engine.score(sc) and store.count() == 15
        assert again.generate([GenerationRequest(prompt=PROMPTS[0], max_new_tokens=7)]) and again.answered == 4
    with load_backend(HFConfig(model=str(tiny_model_dir), dtype="bfloat16")) as bf16:
        assert StoredBackend(bf16, store).model == stored.model  # same weights...
        other = StoredBackend(bf16, store)
        other.generate(reqs[:2])
        assert other.answered == 2  # ...but another dtype is another answer
    kinds = sorted({r["kind"] for r in store.rows()})
    assert kinds == ["generate", "loglikelihood", "score"]


def test_the_engine_gets_every_miss_at_once_and_answers_are_committed_as_they_come(tiny_model_dir, tmp_path):
    """The commit size is not the engine batch: one call hands the backend all 12 misses (so an engine with
    continuous batching has work queued), while the store commits every 5 answers as they arrive; a failure
    after 7 answers keeps those 7 (and a re-run asks only for the other 5)."""
    store = RequestStore(tmp_path / "store.sqlite")
    calls, committed = [], []
    with load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32", batch_size=2)) as engine:
        real = engine.generate

        def recorded(requests, *, progress=False, on_result=None):
            calls.append(len(requests))

            def seen(i, answer):
                committed.append(store.count())  # what the store holds when each answer arrives
                on_result(i, answer)
                if fail and len(committed) == 7:
                    raise RuntimeError("engine died")
            return real(requests, progress=progress, on_result=seen)

        engine.generate = recorded
        fail = True
        with pytest.raises(RuntimeError, match="engine died"):
            StoredBackend(engine, store, commit_every=5).generate(_requests())
        assert calls == [12] and committed == [0, 0, 0, 0, 0, 5, 5] and store.count() == 7
        fail, calls[:] = False, []
        stored = StoredBackend(engine, store, commit_every=5)
        out = stored.generate(_requests())
        assert calls == [5] and stored.answered == 5 and store.count() == 12
        engine.generate = real
        assert out == engine.generate(_requests())
        limited = StoredBackend(engine, RequestStore(tmp_path / "other.sqlite"), commit_every=5, engine_batch=4)
        engine.generate = recorded
        calls[:] = []
        assert limited.generate(_requests()) == out and calls == [4, 4, 4]


def test_moved_checkpoint_keeps_its_answers_and_other_weights_do_not(tiny_model_dir, tmp_path):
    from tests.conftest import build_tiny_model

    store = RequestStore(tmp_path / "store.sqlite")
    moved = tmp_path / "moved"
    shutil.copytree(tiny_model_dir, moved)
    other = build_tiny_model(tmp_path / "other", seed=1)
    with load_backend(HFConfig(model=str(tiny_model_dir), dtype="float32")) as a:
        StoredBackend(a, store).generate(_requests())
    with load_backend(HFConfig(model=str(moved), dtype="float32")) as b:
        s = StoredBackend(b, store)
        s.generate(_requests())
        assert s.answered == 0
    with load_backend(HFConfig(model=str(other), dtype="float32")) as c:
        s = StoredBackend(c, store)
        s.generate(_requests())
        assert s.answered == 12


WORKER = """
import sys, time
from evalsuite.backends import GenerationRequest, HFConfig, load_backend
from evalsuite.store.backend import StoredBackend
from evalsuite.store import RequestStore
model, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
reqs = [GenerationRequest(prompt=f"Item {i}: the quick brown fox", max_new_tokens=24) for i in range(n)]
with load_backend(HFConfig(model=model, dtype="float32", batch_size=4)) as engine:
    out = StoredBackend(engine, RequestStore(db), commit_every=2).generate(reqs)  # one call of 16, commits of 2
print("DONE", [g.text for g in out])
"""


def test_sigkill_during_a_large_batch_loses_at_most_the_uncommitted_part(tiny_model_dir, tmp_path):
    """A real process SIGKILLed while answering one large call (16 requests, batches of 4, commits of 2): the
    store stays consistent, at most the uncommitted part is lost, nothing committed is lost or duplicated, and
    the re-run answers only the rest and ends with the uninterrupted run's answers."""
    import time

    db = tmp_path / "killed.sqlite"
    args = [sys.executable, "-c", WORKER, str(tiny_model_dir), str(db), "16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    if con.execute("SELECT COUNT(*) FROM requests").fetchone()[0] >= 4:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    assert 4 <= done < 16 and done % 2 == 0  # whole batches only
    rerun = subprocess.run(args, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean = subprocess.run([sys.executable, "-c", WORKER, str(tiny_model_dir), str(tmp_path / "clean.sqlite"), "16"],
                           env=env, capture_output=True, text=True)
    assert rerun.stdout.splitlines()[-1] == clean.stdout.splitlines()[-1]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM requests").fetchone() == (16, 16)


def test_store_rejects_nothing_silently(tmp_path):
    store = RequestStore(tmp_path / "s.sqlite")
    store.put([("k1", "m", "{}", "generate", "{}", '{"text": "a"}')])
    store.put([("k1", "m", "{}", "generate", "{}", '{"text": "b"}')])  # a second answer never replaces the first
    assert store.get(["k1", "k2"]) == {"k1": '{"text": "a"}'} and store.count() == 1
    from evalsuite.errors import EvalsuiteError

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(EvalsuiteError, match="not a readable request store"):
        RequestStore(junk)
    assert junk.read_bytes() == b"not a database at all" * 100  # untouched


@pytest.mark.parametrize("overwrite", ["in_place", "copy_keeping_mtime", "rename_onto"])
def test_weights_changed_in_place_are_never_answered_from_the_store(tiny_model_dir, tmp_path, overwrite):
    """Re-training into the same folder or copying other weights over it, by any route (a write into the file,
    `cp -p` which keeps the old mtime, an atomic rename): the folder's size and mtime can stay the same, but the
    store must ask the new weights, and give their answers."""
    from tests.conftest import build_tiny_model

    store = RequestStore(tmp_path / "store.sqlite")
    ckpt = tmp_path / "cell"
    shutil.copytree(tiny_model_dir, ckpt)
    other = build_tiny_model(tmp_path / "retrained", seed=7)
    with load_backend(HFConfig(model=str(ckpt), dtype="float32")) as a:
        old = StoredBackend(a, store).generate(_requests())
    weights, new = ckpt / "model.safetensors", other / "model.safetensors"
    stat = weights.stat()
    if overwrite == "in_place":
        weights.write_bytes(new.read_bytes())
    elif overwrite == "copy_keeping_mtime":
        shutil.copyfile(new, weights)
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        shutil.copyfile(new, ckpt / "tmp.bin")
        os.replace(ckpt / "tmp.bin", weights)
    assert weights.stat().st_size == stat.st_size
    with load_backend(HFConfig(model=str(ckpt), dtype="float32")) as b:
        s = StoredBackend(b, store)
        answers = s.generate(_requests())
        assert s.answered == 12 and answers == b.generate(_requests()) and answers != old


def test_tokenizer_chat_template_and_generation_config_are_part_of_the_identity(tiny_model_dir, tmp_path):
    """The model identity covers the tokenizer files (the chat template lives in tokenizer_config.json),
    generation_config.json and a tokenizer override, not only the weights."""
    import json

    from evalsuite.store import model_identity

    store = RequestStore(tmp_path / "store.sqlite")
    ckpt = tmp_path / "cell"
    shutil.copytree(tiny_model_dir, ckpt)
    config = HFConfig(model=str(ckpt))
    seen = {model_identity(config, store)}
    tok_config = ckpt / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    data["chat_template"] = "{{ messages[0]['content'] }}"
    tok_config.write_text(json.dumps(data))
    seen.add(model_identity(config, store))
    (ckpt / "generation_config.json").write_text(json.dumps({"do_sample": False, "eos_token_id": 2}))
    seen.add(model_identity(config, store))
    seen.add(model_identity(HFConfig(model=str(ckpt), tokenizer=str(tiny_model_dir)), store))
    assert len(seen) == 4
    moved = tmp_path / "moved"
    shutil.copytree(ckpt, moved)
    assert model_identity(HFConfig(model=str(moved)), store) == model_identity(config, store)  # a move keeps it
