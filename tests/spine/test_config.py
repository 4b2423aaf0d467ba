"""Every config file composes; params.yaml is the committed composition; bad overrides fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zoo.errors import ConfigError
from zoo.pipeline.compose import compose
from zoo.pipeline.params import FLOWS, flow_config

CONF = Path(__file__).resolve().parents[2] / "conf"

# Which package each group option is composed into (see conf/config.yaml).
GROUP_TARGETS = {
    "data": ["data", "data@text.data"],
    "model": ["model", "model@text.model"],
    "stage": ["stage@train", "stage@text.train", "stage@prepare"],
    "storage": ["storage"],
    "experiment": ["experiment"],
    "zoo": ["zoo"],
}
# conf/recipe holds compression recipes (zoo.recipes format), not Hydra configs; conf/search
# holds architecture-search studies, each its own Hydra root (tests/nas checks them).
NOT_HYDRA = {"recipe", "search"}


def every_option() -> list[tuple[str, str]]:
    options = []
    for group in sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_HYDRA):
        for file in sorted((CONF / group).glob("*.yaml")):
            options.append((group, file.stem))
    return options


def test_every_group_is_known() -> None:
    assert {group for group, _ in every_option()} == set(GROUP_TARGETS)


@pytest.mark.parametrize(("group", "option"), every_option())
def test_every_config_file_composes(group: str, option: str) -> None:
    composed = [compose(CONF, [f"{target}={option}"]) for target in GROUP_TARGETS[group]]
    assert all(isinstance(c, dict) and c for c in composed)


def test_committed_params_yaml_is_the_default_composition(repo_root: Path) -> None:
    committed = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert committed == compose(CONF), "params.yaml is stale: run `make params`"


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_flows_parse_into_typed_configs(flow: str) -> None:
    cfg = flow_config(compose(CONF), flow)
    assert cfg.train.epochs >= 1 and cfg.data.name and cfg.model.name


def test_smoke_experiment_shrinks_both_flows() -> None:
    params = compose(CONF, ["experiment=smoke"])
    vision, text = flow_config(params, "vision"), flow_config(params, "text")
    assert vision.train.epochs == 1 and vision.data.limit_train
    assert text.train.epochs == 1 and text.data.limit_train


def test_override_switches_model() -> None:
    assert flow_config(compose(CONF, ["model=mlp"]), "vision").model.name == "mlp"


def test_unknown_model_lists_valid_choices() -> None:
    with pytest.raises(ConfigError) as info:
        compose(CONF, ["model=resnet9000"])
    message = str(info.value)
    assert "resnet9000" in message
    assert all(name in message for name in ("cnn_small", "mlp", "minilm_classifier"))


def test_unknown_dataset_lists_valid_choices() -> None:
    with pytest.raises(ConfigError) as info:
        compose(CONF, ["data=imagenet"])
    assert "fashion_mnist" in str(info.value) and "mnist5k" in str(info.value)


@pytest.mark.parametrize("override", ["model=[", "train.epochs", "=mlp", "train..lr=1"])
def test_malformed_override_is_a_config_error(override: str) -> None:
    with pytest.raises(ConfigError, match="cannot compose"):
        compose(CONF, [override])


def test_unknown_training_key_is_named() -> None:
    params = compose(CONF, ["+train.epohcs=3"])
    with pytest.raises(ConfigError, match=r"train\.epohcs.*epochs"):
        flow_config(params, "vision")


def test_wrong_type_is_named() -> None:
    params = compose(CONF, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"train\.epochs: expected"):
        flow_config(params, "vision")
