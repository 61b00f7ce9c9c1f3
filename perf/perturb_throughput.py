"""Perturbation throughput: variants per second per kind on real benchmark prompts, and, for `typo`, the
ratio against nlpaug applying the same augmenters to the whole text in the same run (what our per-word,
protected-span-aware typo costs over the raw library).

    .venv/bin/python perf/perturb_throughput.py [--benchmark ifeval] [--items 200] [--variants 3]

Needs the prepared data folder (`evalsuite data prepare`). One warm-up pass per kind (nlpaug's lazy
imports and dictionary load), then one timed pass. The LLM rephrase path is bound by the model, not by this
package, and is not timed here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="ifeval")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--severity", type=float, default=0.1)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()

    from perturbations import get_kind, perturb

    from evalsuite.benchmarks.registry import get_benchmark
    from evalsuite.paths import cache_dir

    bench = get_benchmark(args.benchmark)
    data = args.data or str(cache_dir() / "data")
    items = [bench.perturbation_item(it) for it in bench.load(data)][: args.items]
    n = len(items) * args.variants
    print(f"{args.benchmark}: {len(items)} items × {args.variants} variants, severity {args.severity}")
    print(f"{'kind':<10} {'variants/s':>11} {'skipped':>8}")
    rates = {}
    for name in ("typo", "rephrase", "format"):
        kind = get_kind(name)
        perturb(items[0], kind, 0, 0, args.severity)  # warm-up: imports, dictionaries
        start = time.perf_counter()
        skipped = sum(perturb(it, kind, v, 0, args.severity).skipped_reason is not None
                      for it in items for v in range(args.variants))
        rates[name] = n / (time.perf_counter() - start)
        print(f"{name:<10} {rates[name]:>11.1f} {skipped:>8}")

    # Reference: nlpaug's own augmenters on the whole text (no protected spans, no per-word control).
    import nlpaug.augmenter.char as nac
    import nlpaug.augmenter.word as naw

    texts = [it.turns[0].render() for it in items]
    augs = [nac.KeyboardAug(aug_word_p=args.severity), nac.RandomCharAug(action="swap", aug_word_p=args.severity),
            naw.SpellingAug(aug_p=args.severity)]
    for aug in augs:
        aug.augment(texts[0])
    random.seed(0)
    start = time.perf_counter()
    for v in range(args.variants):
        for i, text in enumerate(texts):
            augs[(i + v) % len(augs)].augment(text)
    nlpaug_rate = n / (time.perf_counter() - start)
    print(f"{'nlpaug':<10} {nlpaug_rate:>11.1f}   (whole-text augment, the reference)")
    print(f"typo / nlpaug throughput ratio: {rates['typo'] / nlpaug_rate:.2f}")


if __name__ == "__main__":
    main()
