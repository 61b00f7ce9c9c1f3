"""Training: the WIT loss, the SFT trainer, the (λp, λr) grid.

`wit_loss` is cheap to import; the trainer pulls in TRL, so it is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from evalsuite.training.loss import wit_loss

__all__ = ["wit_loss", "WITConfig", "WITTrainer", "WITCollator"]


def __getattr__(name: str) -> Any:
    if name in ("WITConfig", "WITTrainer", "WITCollator"):
        from evalsuite.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
