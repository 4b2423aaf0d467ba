"""Acceptance check: every demo entry exports to ONNX, and ONNX Runtime predicts what
torch predicts on the whole test split (`make onnx-agreement`).

Float entries: ONNX Runtime's predictions agree with torch's on >= 99.5% of examples.
int8 entries (their int8 exported as QDQ / MatMulInteger): ONNX Runtime's accuracy is
within 0.5 points of the torch int8 model's (their int8 kernels round differently); so
are the faster forms the runtime benchmark times for static int8 entries (their float
twin, and their image-input convolution in fp32: INT8_FORMS).
Exits non-zero when an entry fails either check or does not export.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from zoo.fsutil import atomic_write_json
from zoo.runtimes.demo import DemoEntry, DemoSetup, batches
from zoo.runtimes.prepare import applies, is_int8, on_variant, variant_named

MIN_AGREEMENT = 0.995
MAX_INT8_ACCURACY_GAP = 0.005
INT8_FORMS = ("onnxruntime-dequant", "onnxruntime-mixed")


@torch.inference_mode()
def predictions(model: torch.nn.Module, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([model(**batch).argmax(-1) for batch in inputs])


def check_entry(
    setup: DemoSetup, entry: DemoEntry, batch_size: int, variant: str = "onnxruntime"
) -> dict[str, object]:
    key = entry.key
    test = setup.split(entry, "test")
    inputs = batches(test, batch_size)
    started = time.perf_counter()
    first = inputs[0]
    onnx_model = on_variant(
        entry.model,
        variant,
        {k: v[:1] for k, v in first.items()},
        check={k: v[:16] for k, v in first.items()},
    )
    export_s = time.perf_counter() - started
    ours, theirs = predictions(entry.model, inputs), predictions(onnx_model, inputs)
    agreement = float((ours == theirs).float().mean())
    accuracy_torch = float((ours == test.labels).float().mean())
    accuracy_ort = float((theirs == test.labels).float().mean())
    int8 = is_int8(entry.model)
    passed = (
        abs(accuracy_ort - accuracy_torch) <= MAX_INT8_ACCURACY_GAP
        if int8
        else agreement >= MIN_AGREEMENT
    )
    return {
        "entry": key,
        "variant": variant,
        "int8": int8,
        "examples": len(test),
        "agreement": round(agreement, 5),
        "accuracy_torch": round(accuracy_torch, 5),
        "accuracy_onnxruntime": round(accuracy_ort, 5),
        "export_s": round(export_s, 1),
        "passed": passed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--exports", type=Path, default=Path("models/export"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--entries", default="all", help="comma-separated keys, or `all`")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = DemoSetup.at(args.params, args.exports, args.data_root)
    keys = setup.keys() if args.entries == "all" else args.entries.split(",")
    results, failed = [], []
    print(
        f"{'entry':26} {'variant':20} {'int8':>4} {'n':>6} {'agree':>7} {'acc torch':>9} "
        f"{'acc ort':>8}"
    )
    for key in keys:
        try:
            entry = setup.entry(key)
        except Exception as exc:  # report every entry, then fail
            print(f"{key:26} FAILED: {type(exc).__name__}: {exc}")
            failed.append(key)
            results.append({"entry": key, "passed": False, "error": str(exc)})
            continue
        forms = [v for v in INT8_FORMS if applies(variant_named(v), entry.model)]
        for variant in ["onnxruntime", *forms]:
            try:
                row = check_entry(setup, entry, args.batch_size, variant)
            except Exception as exc:  # report every entry, then fail
                print(f"{key:26} {variant:20} FAILED: {type(exc).__name__}: {exc}")
                failed.append(f"{key}/{variant}")
                results.append(
                    {"entry": key, "variant": variant, "passed": False, "error": str(exc)}
                )
                continue
            results.append(row)
            print(
                f"{key:26} {variant:20} {'yes' if row['int8'] else 'no':>4} "
                f"{row['examples']:>6} {row['agreement']:7.2%} {row['accuracy_torch']:9.2%} "
                f"{row['accuracy_onnxruntime']:8.2%}{'' if row['passed'] else '  FAILED'}"
            )
            if not row["passed"]:
                failed.append(f"{key}/{variant}")
    if args.out:
        atomic_write_json(args.out, {"results": results})
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(keys)} entries export; ONNX Runtime agrees with torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
