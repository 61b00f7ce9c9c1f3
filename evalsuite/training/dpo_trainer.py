"""`EvalsuiteDPOTrainer`: TRL's `DPOTrainer` fed with pairs already tokenised in the SFT cell's format.

TRL 1.16 re-tokenises every dataset from text; ours arrives as `prompt_ids` / `chosen_ids` /
`rejected_ids` built by `evalsuite.training.preference` (the SFT formatting, token for token), so
preparation is skipped for such datasets and everything else is TRL's.
"""

from __future__ import annotations

from typing import Any

from trl import DPOTrainer

TOKENISED_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


class EvalsuiteDPOTrainer(DPOTrainer):
    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if all(c in (dataset.column_names or []) for c in TOKENISED_COLUMNS):
            return dataset  # already tokenised, in the SFT cell's format; length filtering done upstream
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
