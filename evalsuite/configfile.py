"""Config files and their errors, shared by every config evalsuite reads (backends, training, ...)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from evalsuite.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: PyYAML (YAML 1.1) reads `1e-5` as the string "1e-5", and learning rates are
    written that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a mapping, with clear errors."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def validation_problems(exc: ValidationError, root: str) -> str:
    """pydantic's errors as one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or root}: {err['msg']}" for err in exc.errors())


def apply_override(data: dict[str, Any], override: str) -> None:
    """`training.learning_rate=1e-5` → data["training"]["learning_rate"] = 1e-5 (value parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not KEY=VALUE")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    try:
        node[parts[-1]] = parse_yaml(raw) if raw else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({str(exc).splitlines()[0]})") from None


def load_validated(cls: type[ModelT], path: Path | None, overrides: Sequence[str] = (), *, what: str = "config",
                   root: str = "config") -> ModelT:
    """A config of type `cls` from an optional YAML file plus KEY=VALUE overrides. One error names every malformed
    override and every invalid field."""
    data = load_config_file(path) if path is not None else {}
    problems = []
    for override in overrides:
        try:
            apply_override(data, override)
        except ConfigError as exc:
            problems.append(str(exc))
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        problems.append(validation_problems(exc, root))
    if problems:
        raise ConfigError(f"invalid {what}{f' {path}' if path else ''}: {'; '.join(problems)}") from None
    return config
