"""The WIT paper's published grids, shipped with the package, as a grid frame: the same analysis functions run on
the paper's numbers and on a user's run, and the report can put the paper's grid beside the user's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalsuite.analysis.frame import BENCHMARKS, conform, sort_frame

if TYPE_CHECKING:
    import pandas as pd

PAPER_CITATION = ("Chatterjee et al., \"On the Effect of Instruction Tuning Loss on Generalization\", "
                  "Transactions of the ACL (TACL) 2025, arXiv:2507.07817v2")
DATA_FILE = "wit_paper_grids.csv"
# the CSV's metric column → (benchmark, metric) in the grid frame
_METRICS = {**{b: (b, "score") for b in BENCHMARKS}, "avg5_x1.25": ("aggregate_paper", "score"),
            "posix": ("all", "posix")}


def _raw() -> "pd.DataFrame":
    """The shipped CSV as published (columns dataset, model, stage, metric, lambda_p, lambda_r, cell, value)."""
    from importlib.resources import files

    import pandas as pd

    with files("evalsuite.analysis").joinpath("data", DATA_FILE).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def paper_grids() -> "pd.DataFrame":
    """Every published grid: experiment "MODEL/DATASET", condition "clean"; the five benchmarks (metric "score";
    SFT only, Figs. 6–8), the printed aggregate avg5_x1.25 as benchmark "aggregate_paper" (SFT Fig. 2, DPO Fig. 3)
    and POSIX after SFT (Fig. 4) as benchmark "all", metric "posix". No intervals or counts were published:
    low/high/n/p_vs_0_1 are NaN, failed/missing 0."""
    raw = _raw()
    mapped = raw["metric"].map(_METRICS)
    if mapped.isna().any():
        raise ValueError(f"unknown metric in {DATA_FILE}: {sorted(set(raw['metric'][mapped.isna()]))}")
    frame = raw.assign(experiment=raw["model"] + "/" + raw["dataset"], is_base=raw["cell"] == "base",
                       benchmark=[m[0] for m in mapped], metric=[m[1] for m in mapped], condition="clean")
    return sort_frame(conform(frame.drop(columns=["model", "dataset", "cell"])))


def paper_settings() -> list[str]:
    """The 15 published settings as experiment keys "MODEL/DATASET", in the file's order."""
    raw = _raw()
    return list(dict.fromkeys(raw["model"] + "/" + raw["dataset"]))


def paper_setting(name: str) -> str:
    """The experiment key of a setting named "MODEL:DATASET" or "MODEL/DATASET" (case-insensitive), or a
    ConfigError listing the published ones (the report's `--paper` flag)."""
    from evalsuite.errors import ConfigError, did_you_mean

    settings = paper_settings()
    wanted = name.replace(":", "/", 1).casefold()
    for key in settings:
        if key.casefold() == wanted:
            return key
    known = [k.replace("/", ":", 1) for k in settings]
    raise ConfigError(f"no published WIT grid for {name!r}{did_you_mean(name, known)}; "
                      f"the paper has {', '.join(known)}")
