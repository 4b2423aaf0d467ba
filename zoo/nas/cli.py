"""`zoo nas run|status|publish`: an architecture search from conf/search/<study>.yaml."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nas", help="architecture + compression search (Optuna; each trial a DVC experiment)"
    )
    commands = parser.add_subparsers(dest="nas_command", metavar="COMMAND", required=True)
    for name, func, text in (
        ("run", run, "run or resume a study until its trial budget is complete"),
        ("status", status, "the study's trials, Pareto front and hypervolume"),
        ("publish", publish, "publish the Pareto front as zoo entries nas-<study>-t<N>"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("study", help="conf/search/<study>.yaml, e.g. smoke or demo")
        sub.add_argument("overrides", nargs="*", help="Hydra overrides of the study: trials=8")
        sub.add_argument("--repo", type=Path, default=Path("."), help="git/DVC repository root")
        sub.add_argument(
            "--storage",
            default=None,
            help="Optuna storage: a journal file (default .nas/<study>-<sampler>.journal) "
            "or an RDB URL shared by drivers on several machines",
        )
        sub.set_defaults(func=func)
        if name == "status":
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "publish":
            sub.add_argument("--store", default=None, help="store URL (default: storage.url)")
            sub.add_argument("--registry-dir", type=Path, default=Path("registry"))


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from zoo.nas.config import load_search
    from zoo.nas.driver import default_storage

    root = args.repo.resolve()
    config = load_search(args.study, root / "conf" / "search", args.overrides)
    return config, root, args.storage or default_storage(root, config)


def run(args: argparse.Namespace) -> int:
    from zoo.nas.driver import run_search

    config, root, storage = _load(args)
    run_search(config, root, storage, log=lambda line: print(line, flush=True))
    return status(args)


def status(args: argparse.Namespace) -> int:
    from zoo.nas.driver import open_study
    from zoo.nas.front import front, hypervolume

    config, _root, storage = _load(args)
    study = open_study(config, storage, create=False)
    best = front(study)
    volume = hypervolume(config, best) if config.reference else None
    trials = study.get_trials(deepcopy=False)
    if getattr(args, "json", False):
        report = {
            "study": study.study_name,
            "objectives": config.objectives,
            "reference": config.reference,
            "hypervolume": volume,
            "trials": [
                {
                    "number": t.number,
                    "state": t.state.name,
                    "params": t.params,
                    "values": t.values,
                    "feasible": all(v <= 0 for v in t.constraints.values()),
                    **{
                        k: t.user_attrs.get(k)
                        for k in ("experiment", "commit", "metrics", "same_as")
                    },
                }
                for t in trials
            ],
            "front": [t.number for t in best],
        }
        print(json.dumps(report, indent=2))
        return 0
    front_numbers = {t.number for t in best}
    print(f"study {study.study_name}: {len(trials)} trials, objectives {config.objectives}")
    for t in trials:
        mark = "*" if t.number in front_numbers else " "
        values = ", ".join(f"{v:.4g}" for v in t.values or [])
        twin = t.user_attrs.get("same_as")
        state = t.state.name if twin is None else f"= t{twin}"  # a repeat, never run
        print(f"{mark} t{t.number:<3} {state:<8} [{values}] {t.params}")
    if volume is not None:
        print(f"front (*): {len(best)} trials, hypervolume {volume:.6g} from {config.reference}")
    return 0


def publish(args: argparse.Namespace) -> int:
    from zoo.nas.driver import open_study
    from zoo.nas.front import front, publish_front
    from zoo.pipeline.params import load_params, store_url

    config, root, storage = _load(args)
    study = open_study(config, storage, create=False)
    store = args.store or store_url(load_params(root / "params.yaml"))
    if "://" not in store and not Path(store).is_absolute():
        store = str(root / store)  # a folder in params is relative to the repository
    registry_dir = (
        args.registry_dir if args.registry_dir.is_absolute() else root / args.registry_dir
    )
    for ref in publish_front(front(study), study.study_name, root, store, registry_dir):
        print(f"published {ref}")
    return 0
