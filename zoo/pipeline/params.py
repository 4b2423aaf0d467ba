"""Typed views of the composed configuration (params.yaml) that the stages read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ConfigError
from zoo.training.config import TrainConfig, from_mapping

# Where each training flow's settings sit in params.yaml ("" is the top level).
FLOWS: dict[str, str] = {"vision": "", "text": "text"}


@dataclass(frozen=True)
class DataConfig:
    name: str
    limit_train: int | None = None
    limit_eval: int | None = None
    max_length: int = 64


@dataclass(frozen=True)
class ModelConfig:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlowConfig:
    flow: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `make params` (or `dvc exp run`) to compose it")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return params


def _section(params: Mapping[str, Any], dotted: str) -> Mapping[str, Any]:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"params: missing section {dotted!r}")
        node = node[part]
    if not isinstance(node, Mapping):
        raise ConfigError(f"params: {dotted!r} must be a mapping")
    return node


def store_url(params: Mapping[str, Any]) -> str:
    """The store the pipeline publishes to: `storage.url`, a param DVC tracks, so that
    `-S storage.url=s3://bucket/prefix` re-runs `register` and publishes there. ($ZOO_STORE
    is for people; a stage reading it would publish where DVC cannot see.)"""
    url = _section(params, "storage").get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"params: storage.url must be a store URL (a folder, s3://bucket/prefix or "
            f"hf://org/repo), got {url!r}"
        )
    return url


def train_key(flow: str) -> str:
    """Where a flow's training settings sit in params.yaml (`train`, `text.train`)."""
    return f"{FLOWS[flow]}.train" if FLOWS[flow] else "train"


def flow_config(params: Mapping[str, Any], flow: str) -> FlowConfig:
    if flow not in FLOWS:
        raise ConfigError(f"unknown flow {flow!r}; valid flows: {', '.join(FLOWS)}")
    prefix = f"{FLOWS[flow]}." if FLOWS[flow] else ""
    return FlowConfig(
        flow=flow,
        data=from_mapping(DataConfig, _section(params, prefix + "data"), prefix + "data"),
        model=from_mapping(ModelConfig, _section(params, prefix + "model"), prefix + "model"),
        train=from_mapping(TrainConfig, _section(params, prefix + "train"), prefix + "train"),
    )
