"""What an executor costs: the same small study run by `local`, `ray` (a local Ray cluster started by the
driver, start-up included) and `slurm` (submitit's local executor: one process per unit), each from an empty
folder, in the same run.

    .venv/bin/python perf/study_overhead.py [--out /tmp/study-overhead] [--executors local,ray,slurm]

The study: configs/demo.yaml (embedded SmolLM2-135M-Instruct, 4 WIT cells as LoRA adapters + DPO on each, 9
checkpoints evaluated) without the notebook and with a lighter evaluation (MMLU log-likelihood, one item per subject, clean and typo) on data
prepared once beforehand, so every executor runs identical units. Prints each wall time, the ratios to local,
and the target: ray ≤ 1.15 × local + 20 s (start-up). The results tables are compared too: an executor that
is fast but gives another table is a bug, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EVALSUITE = [sys.executable, "-m", "evalsuite"]


def study_file(out: Path, data: Path) -> Path:
    study = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    study.pop("data")
    study.pop("report", None)  # executors compared, not the notebook
    study["eval"]["run"] = {"benchmarks": ["mmlu"], "perturb": ["typo"], "variants": 1, "limit": 1, "data": str(data)}
    study["eval"]["benchmark_options"] = {}
    study["slurm"] = {"cluster": "local", "poll_s": 1.0}
    path = out / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def run(executor: str, config: Path, folder: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(EVALSUITE + ["study", "-c", str(config), "-o", str(folder), "--executor", executor],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{executor} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def table(folder: Path):
    import pandas as pd

    frame = pd.read_parquet(folder / "run" / "results.parquet")
    frame["parent"] = frame.parent.str.replace(str(folder.resolve()), "STUDY", regex=False)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/study-overhead"))
    parser.add_argument("--executors", default="local,ray,slurm")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    subprocess.run(EVALSUITE + ["data", "prepare", "--dest", str(data), "--bbh-source", "lm-eval-exemplars",
                                "--packages", str(ROOT / ".venv" / "evalsuite-wheels")], cwd=ROOT, check=True,
                   capture_output=True)
    config = study_file(args.out, data)
    walls = {}
    for executor in args.executors.split(","):
        folder = args.out / executor
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        walls[executor] = run(executor, config, folder)
        print(f"{executor:6s} {walls[executor]:7.1f} s", flush=True)
    import pandas as pd

    if "local" in walls:
        for executor in walls:
            if executor != "local":
                pd.testing.assert_frame_equal(table(args.out / "local"), table(args.out / executor))
        for executor, wall in walls.items():
            print(f"{executor:6s} / local = {wall / walls['local']:.2f}")
        if "ray" in walls:
            target = 1.15 * walls["local"] + 20
            print(f"target ray <= 1.15 x local + 20 s = {target:.1f} s: {'met' if walls['ray'] <= target else 'MISSED'} "
                  f"(ray {walls['ray']:.1f} s)")
        print("tables: identical across executors")
    print(json.dumps({k: round(v, 1) for k, v in walls.items()}))


if __name__ == "__main__":
    main()
