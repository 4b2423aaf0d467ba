"""Compose conf/ with Hydra into params.yaml, exactly as `dvc exp run` does.

DVC's Hydra integration writes `OmegaConf.to_yaml` of the resolved composition; writing
the same text here keeps the committed params.yaml byte-identical to what DVC produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.fsutil import atomic_write_text

CONFIG_NAME = "config"


def compose(
    conf_dir: str | Path = "conf", overrides: Sequence[str] = (), config_name: str = CONFIG_NAME
) -> dict[str, Any]:
    """Return the resolved composition of `conf_dir/<config_name>.yaml` with `overrides`."""
    return _to_container(_compose(conf_dir, overrides, config_name))


def _compose(conf_dir: str | Path, overrides: Sequence[str], config_name: str = CONFIG_NAME) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    folder = Path(conf_dir).resolve()
    if not (folder / f"{config_name}.yaml").is_file():
        raise ConfigError(f"{folder}/{config_name}.yaml not found")
    try:
        with initialize_config_dir(str(folder), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(
            f"cannot compose {folder} with overrides {list(overrides)}: {exc}"
        ) from exc
    return cfg


def _to_container(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def compose_to_file(
    out: str | Path = "params.yaml", conf_dir: str | Path = "conf", overrides: Sequence[str] = ()
) -> Path:
    from omegaconf import OmegaConf

    cfg = _compose(conf_dir, overrides)
    atomic_write_text(out, OmegaConf.to_yaml(cfg))
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m zoo.pipeline.compose [OVERRIDES...]`: write params.yaml."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp")
    parser.add_argument("--out", default="params.yaml")
    parser.add_argument("--conf", default="conf")
    args = parser.parse_args(argv)
    try:
        path = compose_to_file(args.out, args.conf, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"composed {args.conf} {' '.join(args.overrides)} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
