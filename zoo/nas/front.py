"""A study's Pareto front: its trials, its hypervolume, and its publishing as zoo entries
(each front trial's export, fetched from its DVC experiment, with lineage to the study)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import NasError
from zoo.nas.config import SearchConfig, configuration

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class FrontTrial:
    number: int
    params: dict[str, Any]
    values: list[float]  # in the order of the study's objectives
    metrics: dict[str, float]
    experiment: str
    commit: str
    stub: str


def front(study: optuna.Study) -> list[FrontTrial]:
    """The feasible Pareto-optimal trials (Optuna's best_trials honours the constraint),
    each set of parameters once: the driver prunes a repeated configuration, but a study
    run before it did may hold one twice (DVC's run cache made it the same model), which
    is published once, as the earliest trial."""
    seen: set[str] = set()
    trials = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        key = configuration(t.params)
        if key in seen:
            continue
        seen.add(key)
        trials.append(
            FrontTrial(
                t.number,
                dict(t.params),
                list(t.values),
                dict(t.user_attrs.get("metrics", {})),
                str(t.user_attrs.get("experiment")),
                str(t.user_attrs.get("commit")),
                str(t.user_attrs.get("stub")),
            )
        )
    return trials


def hypervolume(config: SearchConfig, trials: list[FrontTrial]) -> float:
    """The volume the front dominates up to `config.reference` (objectives to maximize
    are negated: Optuna's hypervolume minimizes). 0 for an empty front."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume  # optuna==5.0.0, pinned

    missing = [m for m in config.objectives if m not in config.reference]
    if missing:
        raise NasError(f"study {config.name}: reference has no value for {missing}")
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in config.objectives.values()])
    reference = signs * np.array([config.reference[m] for m in config.objectives])
    points = [signs * np.array(t.values) for t in trials]
    inside = [p for p in points if np.all(p < reference)]
    if not inside:
        return 0.0
    return float(compute_hypervolume(np.stack(inside), reference))


def publish_front(
    trials: list[FrontTrial],
    study_name: str,
    root: Path,
    store_url: str | None,
    registry_dir: Path,
) -> list[str]:
    """Publish each front trial's export (`models/export/<entry>` of its experiment) under
    its stub nas-<study>-t<N>; returns the published refs."""
    from dvc.api import DVCFileSystem

    from zoo.pipeline.register import register_export

    refs = []
    for trial in trials:
        with tempfile.TemporaryDirectory(prefix="zoo-nas-") as tmp:
            fs = DVCFileSystem(str(root), rev=trial.commit)
            entry_dir = _export_path(fs, trial)
            local = Path(tmp) / "export"
            fs.get(entry_dir, str(local), recursive=True)
            _add_lineage(local, study_name, trial, _stages(fs, entry_dir))
            registered = register_export(local, store_url, registry_dir, root)
            refs.append(registered.result.entry.ref)
    return refs


def _export_path(fs: Any, trial: FrontTrial) -> str:
    for folder in fs.ls("models/export", detail=False):
        meta = f"{folder}/zoo.json"
        if fs.exists(meta) and json.loads(fs.read_text(meta)).get("stub") == trial.stub:
            return str(folder)
    raise NasError(
        f"trial {trial.number}: experiment {trial.experiment} ({trial.commit[:7]}) has no "
        f"export of {trial.stub} under models/export/"
    )


def _stages(fs: Any, export_path: str) -> dict[str, str]:
    """The DVC stages (and their dvc.lock hashes) that built the export, in the experiment."""
    import yaml

    from zoo.index.lineage import producing_stages

    lock = yaml.safe_load(fs.read_text("dvc.lock")) or {}
    return producing_stages(lock.get("stages") or {}, export_path)


def _add_lineage(
    export_dir: Path, study_name: str, trial: FrontTrial, stages: dict[str, str]
) -> None:
    """Record in the export's zoo.json where it came from: study, trial, parameters and
    the DVC experiment's commit (`dvc exp apply <commit>` + `dvc repro` rebuilds it)."""
    from zoo.fsutil import atomic_write_json

    meta_path = export_dir / "zoo.json"
    meta = json.loads(meta_path.read_text())
    lineage = meta.setdefault("lineage", {})
    lineage["git_commit"] = trial.commit  # a commit holds no uncommitted change
    lineage["git_dirty"] = False
    lineage["dvc_stages"] = stages
    lineage.setdefault("extra", {})["nas"] = {
        "study": study_name,
        "trial": trial.number,
        "params": trial.params,
        "experiment": trial.experiment,
        "experiment_commit": trial.commit,
        "objectives": trial.metrics,
    }
    atomic_write_json(meta_path, meta)
    _update_checksum(export_dir, meta_path.name)


def _update_checksum(export_dir: Path, name: str) -> None:
    """SHA256SUMS lists zoo.json too: record its new digest, or loading the published
    folder would (rightly) call it damaged."""
    from zoo.compress.format import CHECKSUMS
    from zoo.fsutil import atomic_write_text, sha256_file

    sums = export_dir / CHECKSUMS
    lines = []
    for line in sums.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        lines.append(f"{sha256_file(export_dir / rel) if rel == name else digest}  {rel}")
    atomic_write_text(sums, "".join(f"{line}\n" for line in lines))
