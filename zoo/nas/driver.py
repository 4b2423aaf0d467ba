"""The search loop: Optuna asks, DVC's queue runs each trial as an experiment, the
driver reads the experiment's metrics back and tells Optuna (ask-and-tell).

The study lives in Optuna's journal file, the trials' work in DVC's queue, so the driver
holds nothing of its own: killed and started again, it finds each unfinished trial by its
experiment name (`nas-<study>-t<N>`) and waits for it, queues one it had asked for but
not queued, and asks new ones only up to the budget. No trial is lost or run twice.
A configuration the sampler proposes again (Optuna does not deduplicate: its random
sampler repeats in small categorical spaces, NSGA-II's mutations land on parents) costs
no experiment: that trial is pruned as a duplicate of the earlier one and the sampler
asked again, so the budget counts distinct trained models.
Workers on other machines share a study through an RDB URL (`--storage`) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import NasError
from zoo.nas import experiments
from zoo.nas.config import (
    SearchConfig,
    check_against_pipeline,
    choice_values,
    configuration,
    trial_overrides,
    trial_stub,
)
from zoo.nas.metrics import METRICS, read_metrics

if TYPE_CHECKING:
    import optuna

STUDY_DIR = ".nas"
# Proposals in a row that repeat evaluated configurations before the driver gives up: a
# converged NSGA-II population can need a few dozen asks to mutate into something new.
MAX_REPEATS = 200
# A trial DVC shows running while no worker or process runs it (a worker died) is queued
# again once it has looked so this long: longer than a worker takes to start a task.
STALL_GRACE_S = 120.0
STALL_CHECK_S = 30.0  # each check asks the workers (a one-second broadcast)


def study_id(config: SearchConfig) -> str:
    """Name of the study in its storage and in its trials' experiment names."""
    return f"{config.name}-{config.sampler}"


def experiment_name(config: SearchConfig, number: int) -> str:
    return f"nas-{study_id(config)}-t{number}"


def default_storage(root: Path, config: SearchConfig) -> str:
    return str(root / STUDY_DIR / f"{study_id(config)}.journal")


def open_study(config: SearchConfig, storage: str, create: bool = True) -> optuna.Study:
    """The study in `storage`: a journal file path, or an RDB URL (sqlite:///, postgresql://)
    that drivers on several machines share. Created on first use (unless `create` is
    False: then a missing study is an error), loaded after."""
    import optuna

    if not create and "://" not in storage and not Path(storage).is_file():
        raise NasError(
            f"study {study_id(config)} has not run yet (no {storage}); "
            f"start it with `zoo nas run {config.name}`"
        )

    if "://" in storage:
        backend: Any = optuna.storages.RDBStorage(storage)
    else:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.JournalStorage(JournalFileBackend(storage))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_id(config),
        storage=backend,
        directions=[optuna.study.StudyDirection[d.upper()] for d in config.objectives.values()],
        load_if_exists=True,
    )
    # A resumed driver seeds its sampler past the trials already asked: the same seed
    # would draw the first trials' parameters again.
    seed = config.seed + len(study.get_trials(deepcopy=False))
    if config.sampler == "nsga2":
        # The constraint reaches NSGA-II through Trial.set_constraint (Optuna 5's
        # successor of constraints_func), set before each trial is told.
        study.sampler = optuna.samplers.NSGAIISampler(population_size=config.population, seed=seed)
    else:
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    _check_same_study(study, config)
    return study


def _check_same_study(study: optuna.Study, config: SearchConfig) -> None:
    """A stored study resumed with another space or objectives would mix two searches."""
    signature = {"objectives": list(config.objectives), "space": sorted(config.space)}
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise NasError(
            f"study {study.study_name} was started with {stored}, not {signature}: "
            "give this search another name, or remove its journal to start over"
        )


def distributions(config: SearchConfig) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, Any] = {}
    for name, spec in config.space.items():
        if spec.is_range:
            assert spec.low is not None and spec.high is not None
            if spec.is_integer:
                result[name] = IntDistribution(
                    int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1)
                )
            else:
                result[name] = FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        else:
            result[name] = CategoricalDistribution(choice_values(spec))
    return result


@dataclass(frozen=True)
class Progress:
    complete: int
    running: int
    failed: int


def run_search(
    config: SearchConfig,
    root: Path,
    storage: str | None = None,
    poll_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> Progress:
    """Run (or resume) the study until it holds `config.trials` completed trials."""
    base_stub = check_against_pipeline(config, root / "conf")  # before any trial is asked
    study = open_study(config, storage or default_storage(root, config))
    prefix = f"nas-{study_id(config)}-t"
    dists = distributions(config)
    _check_no_strangers(study, root, prefix)
    stalls = _StallWatch(root, prefix, log)
    while True:
        found = experiments.states(root, prefix)
        for name in stalls.due(found):
            del found[name]  # no experiment now: _collect queues its trial again
        progress = _collect(study, config, root, found, base_stub, log)
        if progress.complete >= config.trials and progress.running == 0:
            log(f"study {study.study_name}: {progress.complete} trials complete")
            return progress
        if progress.failed > config.trials:
            raise NasError(
                f"study {study.study_name}: {progress.failed} trials failed "
                f"(see `dvc queue logs <name>`); stopping"
            )
        slots = min(
            config.workers - progress.running,
            config.trials - progress.complete - progress.running,
        )
        for _ in range(max(slots, 0)):
            trial = _ask_new(study, dists, log)
            _queue(study, config, root, trial.number, trial.params, base_stub, log)
        found = experiments.states(root, prefix)
        if any(s.state == experiments.QUEUED for s in found.values()):
            experiments.start_workers(root, config.workers)
        time.sleep(poll_s)


class _StallWatch:
    """Finds trials whose experiment has stalled (experiments.stalled) for STALL_GRACE_S
    and drops them from DVC's queue."""

    def __init__(self, root: Path, prefix: str, log: Callable[[str], None]) -> None:
        self.root, self.prefix, self.log = root, prefix, log
        self.since: dict[str, float] = {}
        self.checked = -STALL_CHECK_S

    def due(self, found: dict[str, experiments.ExperimentState]) -> list[str]:
        now = time.monotonic()
        if now - self.checked < STALL_CHECK_S:
            return []
        self.checked = now
        running = {n for n, s in found.items() if s.state == experiments.RUNNING}
        stalled = experiments.stalled(self.root, self.prefix) & running if running else set()
        self.since = {n: self.since.get(n, now) for n in stalled}
        due = [n for n, first in self.since.items() if now - first >= STALL_GRACE_S]
        for name in due:
            experiments.abandon(self.root, name)
            del self.since[name]
            self.log(
                f"{name}: DVC's queue shows it running, but no worker or process has run it "
                f"for {STALL_GRACE_S:.0f} s (a worker died?); dropped, its trial queued again"
            )
        return due


def _twin(study: optuna.Study, number: int, params: dict[str, Any]) -> int | None:
    """An earlier trial with the same configuration, complete or under way."""
    from optuna.trial import TrialState

    key = configuration(params)
    for other in study.get_trials(deepcopy=False):
        if other.number >= number:
            break
        if other.state in (TrialState.COMPLETE, TrialState.RUNNING) and (
            configuration(other.params) == key
        ):
            return other.number
    return None


def _skip_if_repeat(
    study: optuna.Study, number: int, params: dict[str, Any], log: Callable[[str], None]
) -> bool:
    """Prune trial `number` when an earlier trial has its configuration; True if so."""
    from optuna.trial import TrialState

    twin = _twin(study, number, params)
    if twin is None:
        return False
    _set_attr(study, number, "same_as", twin)
    study.tell(number, state=TrialState.PRUNED)
    log(f"trial {number} repeats trial {twin}'s configuration: pruned, no experiment")
    return True


def _ask_new(study: optuna.Study, dists: dict[str, Any], log: Callable[[str], None]) -> Any:
    """Ask until the sampler proposes a configuration no earlier trial has."""
    for _ in range(MAX_REPEATS):
        trial = study.ask(dists)
        if not _skip_if_repeat(study, trial.number, trial.params, log):
            return trial
    raise NasError(
        f"study {study.study_name}: the sampler proposed only configurations already "
        f"evaluated in {MAX_REPEATS} asks in a row; the space is (nearly) exhausted: "
        "lower `trials` or widen the space"
    )


def _check_no_strangers(study: optuna.Study, root: Path, prefix: str) -> None:
    """Experiments named like this study's trials but not its own: a study started over
    with the same name; their results would be taken for the new trials'."""
    numbers = {t.number for t in study.get_trials(deepcopy=False)}
    for name in experiments.states(root, prefix):
        suffix = name[len(prefix) :]
        if not suffix.isdigit() or int(suffix) not in numbers:
            raise NasError(
                f"experiment {name} is not a trial of study {study.study_name} in this "
                f"storage; remove it (`dvc exp remove {name}`, or `dvc queue remove` if "
                "queued) or give the search another name"
            )


def _collect(
    study: optuna.Study,
    config: SearchConfig,
    root: Path,
    found: dict[str, experiments.ExperimentState],
    base_stub: str,
    log: Callable[[str], None],
) -> Progress:
    """Tell Optuna every finished trial; queue again any asked but never queued."""
    from optuna.trial import TrialState

    complete = running = failed = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            complete += 1
            continue
        if trial.state == TrialState.FAIL:
            failed += 1
            continue
        if trial.state != TrialState.RUNNING:
            continue
        name = experiment_name(config, trial.number)
        state = found.get(name)
        if state is None:  # asked, then the driver stopped before queueing it
            if _skip_if_repeat(study, trial.number, trial.params, log):
                continue
            _queue(study, config, root, trial.number, trial.params, base_stub, log)
            running += 1
        elif state.state == experiments.DONE:
            assert state.commit is not None
            _tell(study, config, root, trial, state.commit, log)
            complete += 1
        elif state.state == experiments.FAILED:
            study.tell(trial.number, state=TrialState.FAIL)
            log(f"trial {trial.number} failed: `dvc queue logs {name}` says why")
            failed += 1
        else:
            running += 1
    return Progress(complete, running, failed)


def _queue(
    study: optuna.Study,
    config: SearchConfig,
    root: Path,
    number: int,
    params: dict[str, Any],
    base_stub: str,
    log: Callable[[str], None],
) -> None:
    name = experiment_name(config, number)
    stub = trial_stub(base_stub, study_id(config), number)
    overrides = trial_overrides(config, params, stub)
    experiments.queue(root, name, overrides, config.stages)
    _set_attr(study, number, "experiment", name)
    _set_attr(study, number, "stub", stub)
    log(f"trial {number} queued as {name}: {params}")


def _tell(
    study: optuna.Study,
    config: SearchConfig,
    root: Path,
    trial: optuna.trial.FrozenTrial,
    commit: str,
    log: Callable[[str], None],
) -> None:
    stages = {s.split("@")[0] for s in config.stages}
    names = [m for m, spec in METRICS.items() if spec.stage in stages]
    values = read_metrics(
        names, config.entry, lambda path: experiments.read_file(root, commit, path)
    )
    _set_attr(study, trial.number, "commit", commit)
    _set_attr(study, trial.number, "metrics", values)
    if config.constraint is not None:
        import optuna

        limit = config.constraint  # <= 0 is feasible
        live = optuna.trial.Trial(study, trial._trial_id)
        live.set_constraint(limit.metric, values[limit.metric] - limit.max)
    study.tell(trial.number, [values[m] for m in config.objectives])
    shown = ", ".join(f"{m} {values[m]:.4g}" for m in config.metrics)
    log(f"trial {trial.number} done ({commit[:7]}): {shown}")


def _set_attr(study: optuna.Study, number: int, key: str, value: Any) -> None:
    import optuna

    trial_id = study.get_trials(deepcopy=False)[number]._trial_id
    optuna.trial.Trial(study, trial_id).set_user_attr(key, value)
