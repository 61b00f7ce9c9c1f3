"""One evaluation run from a run file and the flags over it: settings checked, judge and paraphraser made, the
folders and store checked, then `run_models`, and the judge and paraphraser closed whatever happens. What
`evalsuite run` and a study's evaluation units both do."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from evalsuite.errors import ConfigError
from evalsuite.run.config import RunFile, judge_spec, paraphrase_spec, run_settings
from evalsuite.run.discovery import Selection
from evalsuite.run.types import RunSettings


def settings_from(file: RunFile, **flags: Any) -> RunSettings:
    """The run's settings (flags over the file), its data defaulting to the prepared folder when there is one."""
    from evalsuite.benchmarks.prepare import prepared_or

    settings = run_settings(file, **flags)
    settings.data = prepared_or(settings.data, None)
    return settings


@contextmanager
def evaluation(file: RunFile, settings: RunSettings, models: Path, out: Path, selection: Selection = Selection(), *,
               judge_flags: dict[str, Any] | None = None, paraphrase_flags: dict[str, Any] | None = None
               ) -> Iterator[Callable[[Any], Any]]:
    """Everything checked and the judge and paraphraser made; yields `run(tracker)`, which evaluates. A judge is
    loaded only when it first judges; a paraphraser model only once every cheap check has passed."""
    from evalsuite.benchmarks.judge import make_judge
    from evalsuite.benchmarks.runner import build_benchmarks
    from evalsuite.perturb import load_paraphraser
    from evalsuite.run.pipeline import preflight, run_models

    spec = judge_spec(file, **(judge_flags or {}))
    rephrase = paraphrase_spec(file, **(paraphrase_flags or {}))
    if rephrase and "rephrase" not in settings.kinds:
        raise ConfigError("a paraphrase model applies to the rephrase kind, which this run does not include")
    if not models.expanduser().is_dir():
        raise ConfigError(f"--models {models} is not a folder")
    judge = spec and make_judge(spec.model, spec.base_url, spec.api_key_env, spec.max_new_tokens, spec.backend)
    paraphrase_backend = None
    try:
        if judge:
            for name in ("mtbench", "alpacaeval"):
                if any(b.partition(":")[0] == name for b in settings.benchmarks):
                    settings.options.setdefault(name, {})["judge"] = judge
        build_benchmarks(settings.benchmarks, settings.options)  # every benchmark, option and judge checked
        preflight(models, out, selection)  # and the folders and the store, before a paraphraser model loads
        if rephrase:
            settings.paraphraser, paraphrase_backend = load_paraphraser(rephrase.model, rephrase.base_url,
                                                                        rephrase.api_key_env)
        yield lambda tracker: run_models(models, settings, out, tracker, selection)
    finally:
        for held in (judge, paraphrase_backend):
            if held is not None:
                held.close()
