"""evalsuite: weighted instruction tuning (WIT) grids, DPO on every cell, and robustness evaluation.

Pipeline, one sub-package per stage:
    models/      embedded and user checkpoints -> plain Hugging Face safetensors dirs
    backends/    one generation/scoring interface over transformers, vLLM and OpenAI-compatible servers
    cli/         the `evalsuite` command
"""

__version__ = "0.1.0"
