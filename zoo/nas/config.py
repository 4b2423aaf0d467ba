"""A search study as configured in conf/search/<study>.yaml (composed by Hydra), and the
checks that reject a bad one before any trial runs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, NasError
from zoo.nas.metrics import METRICS, metric

SAMPLERS = ("nsga2", "random")
DIRECTIONS = ("maximize", "minimize")
# Overrides under the entry's recipe_variables add keys the recipe declares (checked
# here against the recipe file); every other path must already exist in the composition.
RECIPE_VARIABLES = "recipe_variables"


@dataclass(frozen=True)
class ParamSpec:
    """One dimension of the space: a numeric range, a list of values, or named presets
    (each a set of overrides, e.g. a compression flow with its recipe)."""

    name: str
    path: str | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None
    presets: dict[str, dict[str, Any]] | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None or self.high is not None

    @property
    def is_integer(self) -> bool:
        values = (self.low, self.high, self.step)
        return all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values)


@dataclass(frozen=True)
class Constraint:
    metric: str
    max: float


@dataclass(frozen=True)
class SearchConfig:
    name: str
    entry: str  # the zoo entry every trial builds (a key of the trial's composed `zoo:`)
    trials: int  # completed trials the study ends with
    workers: int  # DVC queue workers running trials side by side
    objectives: dict[str, str]  # metric -> maximize / minimize, in order
    space: dict[str, ParamSpec]
    fixed: list[str] = field(default_factory=list)  # every trial's overrides: its budget
    sampler: str = "nsga2"
    seed: int = 0
    population: int = 4  # NSGA-II generation size
    constraint: Constraint | None = None
    reference: dict[str, float] = field(default_factory=dict)  # hypervolume reference point

    @property
    def metrics(self) -> list[str]:
        names = list(self.objectives)
        if self.constraint is not None and self.constraint.metric not in names:
            names.append(self.constraint.metric)
        return names

    @property
    def stages(self) -> list[str]:
        """DVC targets a trial runs: the stages writing its metrics, and the export its
        publishing reads (DVC runs what they need upstream: data, dense training, ...)."""
        kinds = sorted({METRICS[m].stage for m in self.metrics} | {"export"})
        return [f"{kind}@{self.entry}" for kind in kinds]


# ---- loading ------------------------------------------------------------------------------
def load_search(
    study: str, conf_dir: str | Path = "conf/search", overrides: Sequence[str] = ()
) -> SearchConfig:
    """Compose conf/search/<study>.yaml with Hydra `overrides` (e.g. trials=8) and parse it."""
    from zoo.pipeline.compose import compose

    folder = Path(conf_dir)
    if not (folder / f"{study}.yaml").is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise NasError(f"no study {study!r} in {folder}/ (known: {', '.join(known) or 'none'})")
    try:
        raw = compose(folder, overrides, config_name=study)
    except ConfigError as exc:
        raise NasError(f"study {study!r}: {exc}") from exc
    return parse_search(raw, f"{folder}/{study}.yaml")


def parse_search(raw: Mapping[str, Any], where: str) -> SearchConfig:
    """Check the study's own fields (types, ranges, known metrics); no composition yet."""
    from zoo.training.config import from_mapping

    data = dict(raw)
    space_raw = data.pop("space", None)
    constraint_raw = data.pop("constraint", None)
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise NasError(f"{where}: space must be a non-empty mapping of name: parameter")
    try:
        partial = from_mapping(_Fields, data, where)
        space = {
            str(name): _param(str(name), spec, f"{where}: space.{name}")
            for name, spec in space_raw.items()
        }
        constraint = (
            None
            if constraint_raw is None
            else from_mapping(Constraint, constraint_raw, f"{where}: constraint")
        )
    except ConfigError as exc:
        raise NasError(str(exc)) from exc
    config = SearchConfig(space=space, constraint=constraint, **partial.__dict__)
    _check_fields(config, where)
    return config


@dataclass(frozen=True)
class _Fields:
    """SearchConfig's plain fields, for from_mapping's checks."""

    name: str
    entry: str
    trials: int
    workers: int
    objectives: dict[str, str]
    fixed: list[str] = field(default_factory=list)
    sampler: str = "nsga2"
    seed: int = 0
    population: int = 4
    reference: dict[str, float] = field(default_factory=dict)


def _param(name: str, spec: Any, where: str) -> ParamSpec:
    from zoo.training.config import from_mapping

    if not isinstance(spec, Mapping):
        raise NasError(f"{where}: expected a mapping (path + low/high, choices or presets)")
    param = from_mapping(ParamSpec, {"name": name, **spec}, where)
    kinds = [param.is_range, param.choices is not None, param.presets is not None]
    if sum(kinds) != 1:
        raise NasError(f"{where}: give exactly one of low/high, choices or presets")
    if (param.path is None) != (param.presets is not None):
        raise NasError(f"{where}: a range or choices needs a `path`; presets carry their own")
    if param.is_range:
        _check_range(param, where)
    if param.choices is not None:
        _check_options([_render(v) for v in param.choices], where, "choices")
    if param.presets is not None:
        _check_options(list(param.presets), where, "presets")
        for label, overrides in param.presets.items():
            if not isinstance(overrides, Mapping) or not overrides:
                raise NasError(f"{where}.presets.{label}: expected a mapping of path: value")
    return param


def _check_range(param: ParamSpec, where: str) -> None:
    low, high = param.low, param.high
    if low is None or high is None:
        raise NasError(f"{where}: a range needs both low and high")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise NasError(f"{where}: low and high must be finite numbers")
    if low >= high:
        state = "empty" if low == high else "inverted"
        raise NasError(
            f"{where}: the range [{low}, {high}] is {state}; low must be below high "
            "(for one fixed value, put it in `fixed`)"
        )
    if param.log and low <= 0:
        raise NasError(f"{where}: a log range needs low > 0, got {low}")
    if param.step is not None and (param.step <= 0 or param.step > high - low):
        raise NasError(f"{where}: step {param.step} must be in (0, high - low]")
    if param.log and param.step is not None:
        raise NasError(f"{where}: Optuna takes either log or step, not both")


def _check_options(labels: list[str], where: str, kind: str) -> None:
    if not labels:
        raise NasError(f"{where}: {kind} is empty; list at least one")
    if len(set(labels)) != len(labels):
        raise NasError(f"{where}: {kind} holds duplicates: {labels}")


def _check_fields(config: SearchConfig, where: str) -> None:
    if config.sampler not in SAMPLERS:
        raise NasError(f"{where}: sampler {config.sampler!r} is not one of {SAMPLERS}")
    for key, low in (("trials", 1), ("workers", 1), ("population", 2)):
        if getattr(config, key) < low:
            raise NasError(f"{where}: {key} must be >= {low}, got {getattr(config, key)}")
    if not config.objectives:
        raise NasError(f"{where}: objectives is empty; name at least one metric")
    for name, direction in config.objectives.items():
        metric(name, f"{where}: objectives")
        if direction not in DIRECTIONS:
            raise NasError(f"{where}: objectives.{name}: {direction!r} is not one of {DIRECTIONS}")
    if config.constraint is not None:
        metric(config.constraint.metric, f"{where}: constraint.metric")
    for name in config.reference:
        if name not in config.objectives:
            raise NasError(f"{where}: reference.{name}: not an objective of this study")
    size = space_size(config)
    if size is not None and config.trials > size:
        raise NasError(
            f"{where}: trials is {config.trials} but the space holds only {size} distinct "
            "configurations (a repeated one is not run again); lower trials or widen the space"
        )


# ---- a trial's overrides ------------------------------------------------------------------
def _render(value: Any) -> str:
    """A value as Hydra override text (JSON reads as Hydra's own list / number syntax)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def override(path: str, value: Any) -> str:
    prefix = "++" if f".{RECIPE_VARIABLES}." in path else ""
    return f"{prefix}{path}={_render(value)}"


def choice_values(param: ParamSpec) -> list[Any]:
    """The values Optuna chooses among (lists as their override text: Optuna's
    categorical values are scalars)."""
    if param.presets is not None:
        return list(param.presets)
    assert param.choices is not None
    return [v if _is_scalar(v) else _render(v) for v in param.choices]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def configuration(params: Mapping[str, Any]) -> str:
    """A trial's parameters as one comparable text: equal texts, the same model."""
    return json.dumps(dict(params), sort_keys=True, default=str)


def space_size(config: SearchConfig) -> int | None:
    """How many distinct configurations the space holds (None: a continuous range)."""
    size = 1
    for spec in config.space.values():
        if spec.is_range:
            assert spec.low is not None and spec.high is not None
            step = spec.step if spec.step is not None else (1 if spec.is_integer else None)
            if step is None or spec.log:
                return None
            size *= math.floor((spec.high - spec.low) / step + 1e-9) + 1
        else:
            size *= len(choice_values(spec))
    return size


def trial_stub(base_stub: str, study: str, number: int) -> str:
    """The stub a trial's export carries: the entry's, tagged nas-<study>-t<N>."""
    return f"{base_stub.rsplit('/', 1)[0]}/nas-{study}-t{number}"


def trial_overrides(
    config: SearchConfig, params: Mapping[str, Any], stub: str | None = None
) -> list[str]:
    """The pipeline overrides of one trial: the study's fixed ones, then its parameters
    (and its own stub, so its export is published under the trial's name)."""
    overrides = list(config.fixed)
    if stub is not None:
        overrides.append(f"zoo.{config.entry}.stub={stub}")
    for name, spec in config.space.items():
        value = params[name]
        if spec.presets is not None:
            overrides += [override(p, v) for p, v in spec.presets[value].items()]
        else:
            assert spec.path is not None
            overrides.append(override(spec.path, value))
    return overrides


# ---- checks against the pipeline ----------------------------------------------------------
def check_against_pipeline(config: SearchConfig, conf_dir: str | Path = "conf") -> str:
    """Compose the pipeline as trials will, and reject what no trial could run: an
    unknown parameter path, a value Hydra refuses, an entry the trial's zoo lacks, an
    objective the pipeline does not produce, a recipe variable the recipe lacks. Returns
    the entry's stub as the trials' composition resolves it."""
    from zoo.pipeline.compose import compose

    root = Path(conf_dir).resolve().parent  # recipe paths are relative to the repository
    base = _compose(compose, conf_dir, config.fixed, "the study's `fixed` overrides")
    entries = base.get("zoo") or {}
    if config.entry not in entries:
        raise NasError(
            f"study {config.name}: entry {config.entry!r} is not in the trial's zoo "
            f"({', '.join(entries) or 'empty'}); set `entry` or the `experiment` in `fixed`"
        )
    for name, spec in config.space.items():
        for path in _paths(spec):
            _check_path(base, path, f"space.{name}", config.entry)
    batches = (base.get("bench") or {}).get("batch_sizes") or []
    for name in config.metrics:
        needed = METRICS[name].bench_batch
        if needed is not None and needed not in batches:
            raise NasError(
                f"objective {name}: the pipeline measures batch sizes {batches} only; "
                f"add {needed} to bench.batch_sizes (in `fixed`) or pick another metric"
            )
    for overrides in _corners(config):
        composed = _compose(compose, conf_dir, overrides, "a corner of the space")
        _check_recipe_variables(composed["zoo"][config.entry], config.entry, root)
    return str(entries[config.entry]["stub"])


def _compose(compose: Any, conf_dir: str | Path, overrides: list[str], what: str) -> Any:
    try:
        return compose(conf_dir, overrides)
    except ConfigError as exc:
        raise NasError(f"{what} do not compose: {exc}") from exc


def _paths(spec: ParamSpec) -> list[str]:
    if spec.presets is not None:
        return sorted({p for overrides in spec.presets.values() for p in overrides})
    assert spec.path is not None
    return [spec.path]


def _check_path(composed: Mapping[str, Any], path: str, where: str, entry: str) -> None:
    parts = path.split(".")
    if RECIPE_VARIABLES in parts:
        index = parts.index(RECIPE_VARIABLES)
        if parts[:index] != ["zoo", entry] or len(parts) != index + 2:
            raise NasError(
                f"{where}: {path!r}: recipe variables are set as "
                f"zoo.{entry}.{RECIPE_VARIABLES}.<name>"
            )
        return  # the name is checked against the recipe once composed
    node: Any = composed
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            known = sorted(node) if isinstance(node, Mapping) else []
            raise NasError(
                f"{where}: unknown parameter path {path!r}: "
                f"{'.'.join(parts[: depth + 1])} is not in the composed pipeline config"
                + (f" (there: {', '.join(map(str, known))})" if known else "")
            )
        node = node[part]


def _corners(config: SearchConfig) -> list[list[str]]:
    """Trials' overrides that touch every value kind once before any trial runs: every
    parameter at its first option, then at its last (ranges at low and high), and each
    preset with the rest at their first (each preset may pick another recipe)."""
    first = {name: _pick(spec, 0) for name, spec in config.space.items()}
    picks = [first, {name: _pick(spec, -1) for name, spec in config.space.items()}]
    for name, spec in config.space.items():
        picks += [{**first, name: label} for label in spec.presets or {}]
    corners: list[list[str]] = []
    for params in picks:
        overrides = trial_overrides(config, params)
        if overrides not in corners:
            corners.append(overrides)
    return corners


def _pick(spec: ParamSpec, index: int) -> Any:
    if spec.is_range:
        value = spec.low if index == 0 else spec.high
        return int(value) if spec.is_integer else value  # type: ignore[arg-type]
    return choice_values(spec)[index]


def _check_recipe_variables(entry: Mapping[str, Any], key: str, root: Path) -> None:
    variables = entry.get(RECIPE_VARIABLES) or {}
    if not variables or entry.get("flow") == "dense":  # dense entries read no recipe
        return
    from zoo.recipes.parse import load_yaml

    recipe = root / str(entry["recipe"])
    if not recipe.is_file():
        raise NasError(f"zoo.{key}.recipe: {recipe} not found")
    declared = (load_yaml(recipe.read_text(encoding="utf-8"), str(recipe)) or {}).get(
        "variables"
    ) or {}
    unknown = sorted(set(variables) - set(declared))
    if unknown:
        raise NasError(
            f"zoo.{key}.{RECIPE_VARIABLES}: {unknown} are not variables of {recipe} "
            f"(it declares: {', '.join(sorted(declared)) or 'none'})"
        )
