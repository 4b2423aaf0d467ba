"""DVC stage `tiny_model@<kind>`: a tiny random transformers model folder, built from code.

Stands in for a user's own model in the smoke experiment: a Llama (causal LM) or BERT
classifier with random weights and a tokenizer trained offline on the shipped reviews.
"""

from __future__ import annotations

import argparse

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", required=True, help="llama, bert or mixtral")
    parser.add_argument("--out", required=True, help="model folder (declared in dvc.yaml)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.models.tiny import write_tiny_model
        from zoo.pipeline.params import load_params

        seed = int(load_params(args.params)["prepare"]["seed"])
        write_tiny_model(args.kind, args.out, seed=seed)
        print(f"tiny {args.kind} -> {args.out}")

    run_stage(stage)


if __name__ == "__main__":
    main()
