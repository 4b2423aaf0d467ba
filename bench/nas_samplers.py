"""NSGA-II against random search at the same trial budget and the same seeds (acceptance 2
of the architecture search): each seed's study is run once with each sampler, through the
real driver (every trial a DVC experiment), and each front's hypervolume is computed from
the study's one reference point.

Resumable: a study already complete returns at once, a half-run one resumes (the driver's
own guarantee), and the JSON report is rewritten after each study.

Run (from the repository root; about an hour on 2 cores for 3 seeds x 2 samplers x 12 trials):
    .venv/bin/python bench/nas_samplers.py --study compare --seeds 0 1 2 \
        --out metrics/nas/samplers.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from zoo.fsutil import atomic_write_json
from zoo.nas.config import SearchConfig, load_search
from zoo.nas.driver import default_storage, open_study, run_search
from zoo.nas.front import front, hypervolume

SAMPLERS = ("nsga2", "random")


def study_config(root: Path, study: str, sampler: str, seed: int) -> SearchConfig:
    """The study for one (sampler, seed): its own name, so its journal and experiments
    stay apart from the other seeds'."""
    overrides = [f"sampler={sampler}", f"seed={seed}", f"name={study}-s{seed}"]
    return load_search(study, root / "conf" / "search", overrides)


def run_one(root: Path, config: SearchConfig) -> dict[str, Any]:
    from optuna.trial import TrialState

    began = time.monotonic()
    run_search(config, root, log=lambda line: print(f"  {line}", flush=True))
    study = open_study(config, default_storage(root, config), create=False)
    best = front(study)
    trials = study.get_trials(deepcopy=False)
    return {
        "study": study.study_name,
        "sampler": config.sampler,
        "seed": config.seed,
        "trials": sum(t.state == TrialState.COMPLETE for t in trials),
        "repeats_pruned": sum("same_as" in t.user_attrs for t in trials),
        "hypervolume": hypervolume(config, best),
        "front": [{"trial": t.number, "params": t.params, "values": t.values} for t in best],
        "seconds": round(time.monotonic() - began, 1),
    }


def summarise(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    by = {(r["sampler"], r["seed"]): r["hypervolume"] for r in runs}
    means = {
        s: statistics.fmean(by[(s, seed)] for seed in seeds)
        for s in SAMPLERS
        if all((s, seed) in by for seed in seeds)
    }
    wins = sum(by.get(("nsga2", s), -1.0) >= by.get(("random", s), float("inf")) for s in seeds)
    return {"mean_hypervolume": means, "nsga2_at_least_random_seeds": wins}


def markdown(runs: list[dict[str, Any]], seeds: list[int], config: SearchConfig) -> str:
    by = {(r["sampler"], r["seed"]): r for r in runs}
    objectives = ", ".join(f"{m} {d}" for m, d in config.objectives.items())
    lines = [
        f"Hypervolume of each front ({objectives}; "
        f"reference {config.reference}), {config.trials} trials per study:",
        "",
        "| seed | NSGA-II | random | NSGA-II / random |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for seed in seeds:
        a, b = by.get(("nsga2", seed)), by.get(("random", seed))
        if a is None or b is None:
            continue
        ratio = a["hypervolume"] / b["hypervolume"] if b["hypervolume"] else float("inf")
        lines.append(
            f"| {seed} | {a['hypervolume']:,.0f} | {b['hypervolume']:,.0f} | {ratio:.3f} |"
        )
    means = summarise(runs, seeds)["mean_hypervolume"]
    if len(means) == len(SAMPLERS):
        ratio = means["nsga2"] / means["random"]
        lines.append(f"| mean | {means['nsga2']:,.0f} | {means['random']:,.0f} | {ratio:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="compare", help="conf/search/<study>.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("metrics/nas/samplers.json"))
    args = parser.parse_args()

    root = args.repo.resolve()
    configs = [study_config(root, args.study, s, seed) for seed in args.seeds for s in SAMPLERS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for config in configs:  # seed by seed, so a stopped run leaves whole comparisons
        print(f"== {config.name} {config.sampler} (seed {config.seed})", flush=True)
        runs.append(run_one(root, config))
        print(f"   hypervolume {runs[-1]['hypervolume']:,.0f}", flush=True)
        report = {
            "study": args.study,
            "seeds": args.seeds,
            "trials": configs[0].trials,
            "population": configs[0].population,
            "objectives": configs[0].objectives,
            "reference": configs[0].reference,
            "runs": runs,
            **summarise(runs, args.seeds),
        }
        atomic_write_json(args.out, report)
    print(markdown(runs, args.seeds, configs[0]))


if __name__ == "__main__":
    main()
