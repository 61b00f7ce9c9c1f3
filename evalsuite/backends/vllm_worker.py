"""Runs inside vLLM's worker process (`worker_extension_cls`): swaps the engine's weights in place for a checkpoint
of the same model, here base weights + a LoRA adapter merged by peft. vLLM's own `reload_weights` re-applies its
post-load processing (the CPU backend repacks linear weights), so the engine answers exactly as one started on the
merged weights would, without a restart or a merged copy on disk. Called by name through `LLM.collective_rpc`:
only paths and a dtype name cross the process boundary."""

from __future__ import annotations


class WeightSwap:
    def evalsuite_swap_weights(self, base: str, adapter: str | None, dtype: str) -> bool:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.reload_weights(weights_iterator=iter(list(model.state_dict().items())))  # type: ignore[attr-defined]
        return True
