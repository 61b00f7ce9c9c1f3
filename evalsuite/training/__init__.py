"""Training: the WIT loss, the SFT trainer, the (λp, λr) grid.

Everything here is loaded on first use: the configs and data code (`evalsuite.training.config`, `.data`) must
import without torch, so that the CLI reports a bad config or output folder in a second.
"""

from __future__ import annotations

from typing import Any

__all__ = ["wit_loss", "WITConfig", "WITTrainer", "WITCollator"]


def __getattr__(name: str) -> Any:
    if name == "wit_loss":
        from evalsuite.training import loss

        return loss.wit_loss
    if name in ("WITConfig", "WITTrainer", "WITCollator"):
        from evalsuite.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
