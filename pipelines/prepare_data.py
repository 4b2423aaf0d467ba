"""DVC stage `prepare`: verify one shipped source and write its seeded splits."""

from __future__ import annotations

import argparse

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. fashion_mnist")
    parser.add_argument("--out", required=True, help="output folder (declared in dvc.yaml)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.data.prepare import prepare_dataset
        from zoo.pipeline.params import load_params

        seed = int(load_params(args.params)["prepare"]["seed"])
        meta = prepare_dataset(args.dataset, args.out, seed=seed)
        sizes = ", ".join(f"{k} {v['size']}" for k, v in meta["splits"].items())  # type: ignore[union-attr]
        print(f"prepared {args.dataset}: {sizes} -> {args.out}")

    run_stage(stage)


if __name__ == "__main__":
    main()
