import pytest

from evalsuite.backends import HFConfig, OpenAIConfig, VLLMConfig, parse_backend_config
from evalsuite.backends.config import load_config_file
from evalsuite.errors import ConfigError


def test_kind_selects_the_config_class_and_aliases_dtypes():
    assert isinstance(parse_backend_config({"model": "m"}), HFConfig)
    cfg = parse_backend_config({"kind": "vllm", "model": "m", "dtype": "bf16"})
    assert isinstance(cfg, VLLMConfig) and cfg.dtype == "bfloat16"
    cfg = parse_backend_config({"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"})
    assert isinstance(cfg, OpenAIConfig) and cfg.api_key_env is None  # no key unless the user names its variable


@pytest.mark.parametrize(
    "data,message",
    [
        ({"kind": "tpu", "model": "m"}, "kind"),
        ({"model": "m", "dtype": "int3"}, "dtype"),
        ({"model": "m", "batch_size": 0}, "batch_size"),
        ({"model": "m", "base_url": "http://x"}, "base_url"),  # openai-only field on hf: rejected, not ignored
        ({"kind": "openai", "model": "m"}, "base_url"),
    ],
)
def test_bad_configs_give_one_readable_error(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_backend_config(data)
    assert "\n" not in str(info.value)


def test_config_files(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("backend:\n  kind: hf\n  dtype: fp32\n")
    assert load_config_file(good) == {"backend": {"kind": "hf", "dtype": "fp32"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(lst)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.yaml")
