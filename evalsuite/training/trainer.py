"""`WITTrainer`: TRL's `SFTTrainer` with the WIT loss, normalised over the whole optimizer step.

How the count is made global: the collator writes label −100 on every zero-weight target, so "labels
that are not −100" are exactly the non-zero-weight targets. `Trainer` counts them over all
gradient-accumulation micro-batches of the step (`_get_num_items_in_batch`, overridden here so it
always counts and always sums over data-parallel processes) and passes that count to `compute_loss`
as `num_items_in_batch`. DDP then averages gradients over processes, so the loss is multiplied back by
the number of processes, the same correction `Trainer` and TRL apply.

The per-token log-probs come from TRL's fused LM head (installed by `SFTTrainer`), which never builds
the [B, T, V] logits: the trainer costs what TRL's completion-only SFT costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import pad

from evalsuite.training.loss import (
    IGNORE_INDEX,
    check_lambdas,
    reduce_weighted_nll,
    target_weights,
)


@dataclass
class WITConfig(SFTConfig):
    """`SFTConfig` plus the two WIT weights. The dataset is prepared by `evalsuite.training.data`."""

    lambda_p: float = field(default=0.0, metadata={"help": "Weight of prompt tokens in the loss."})
    lambda_r: float = field(default=1.0, metadata={"help": "Weight of response tokens in the loss."})

    def __post_init__(self) -> None:
        check_lambdas(self.lambda_p, self.lambda_r)
        if self.packing or self.padding_free:
            raise ValueError("WITTrainer does not pack or run padding-free (the paper trains without packing)")
        # Tokenised, masked data comes from evalsuite.training.data; TRL must not re-prepare it.
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__post_init__()


def weighted_labels(input_ids: torch.Tensor, prompt_mask: torch.Tensor, lambda_p: float, lambda_r: float) -> torch.Tensor:
    """Labels = input ids, with −100 on tokens whose weight is 0 (so they leave the count too)."""
    labels = input_ids.clone()
    if lambda_p == 0:
        labels[prompt_mask] = IGNORE_INDEX
    if lambda_r == 0:
        labels[~prompt_mask] = IGNORE_INDEX
    return labels


@dataclass
class WITCollator:
    """Right-pads `input_ids`, `prompt_mask` and the weighted labels of tokenised examples."""

    pad_token_id: int
    lambda_p: float
    lambda_r: float
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [torch.tensor(e["input_ids"], dtype=torch.long) for e in examples]
        masks = [torch.tensor(e["prompt_mask"], dtype=torch.bool) for e in examples]
        labels = [weighted_labels(i, m, self.lambda_p, self.lambda_r) for i, m in zip(ids, masks)]

        def padded(tensors: list[torch.Tensor], value: Any) -> torch.Tensor:
            return pad(tensors, padding_value=value, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)

        return {
            "input_ids": padded(ids, self.pad_token_id),
            "attention_mask": padded([torch.ones_like(i) for i in ids], 0),
            "labels": padded(labels, IGNORE_INDEX),
            "prompt_mask": padded(masks, False),
        }


class WITTrainer(SFTTrainer):
    """SFTTrainer whose loss is `wit_loss` with the count taken over the whole optimizer step."""

    _tag_names = ["trl", "sft", "wit", "evalsuite"]

    def __init__(self, model: Any, args: WITConfig, processing_class: Any, **kwargs: Any) -> None:
        if not isinstance(args, WITConfig):
            raise TypeError("WITTrainer needs args=WITConfig(...)")
        if kwargs.get("data_collator") is None:
            pad_id = processing_class.pad_token_id
            pad_id = processing_class.eos_token_id if pad_id is None else pad_id
            kwargs["data_collator"] = WITCollator(pad_id, args.lambda_p, args.lambda_r, args.pad_to_multiple_of)
        super().__init__(model, args=args, processing_class=processing_class, **kwargs)
        # Our loss is normalised by num_items_in_batch, so Trainer must not divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = True

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "prompt_mask"]

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        count = sum((b["labels"][..., 1:] != IGNORE_INDEX).sum() for b in batch_samples)
        count = torch.as_tensor(count, device=device)
        if self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        prompt_mask = inputs.pop("prompt_mask")
        labels = inputs["labels"]
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        weights = target_weights(labels, prompt_mask, self.args.lambda_p, self.args.lambda_r)
        loss = reduce_weighted_nll(-outputs.log_probs, weights, num_items_in_batch)
        if num_items_in_batch is not None:
            # DDP averages gradients across processes; the count already covers all of them.
            loss = loss * self.accelerator.num_processes
        self._log_token_metrics(mode, inputs, outputs)
        if return_outputs:
            with torch.no_grad():
                full = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, full
        return loss

    def _log_token_metrics(self, mode: str, inputs: dict[str, torch.Tensor], outputs: Any) -> None:
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        if outputs.entropy is not None and num_valid > 0:
            self._metrics[mode]["entropy"].append((gather(outputs.entropy.detach().sum()).sum() / num_valid).item())
        if outputs.is_top1 is not None and num_valid > 0:
            self._metrics[mode]["mean_token_accuracy"].append((gather(outputs.is_top1.sum()).sum() / num_valid).item())
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
