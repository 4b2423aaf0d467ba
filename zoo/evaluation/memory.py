"""Peak memory of a model: resident-set high water of a fresh process that loads it and
runs one batch of each size.

A fresh process per model, because a process's high water never comes down: measured
inside the benchmark process, whatever ran before (the baseline, the other batch size,
the data) would hide the model's own footprint, and torch's allocator keeps freed
memory, so sampling the resident set around a forward sees almost nothing (the figure
came out 0.0 MB). The child loads the model once to import the code it needs, drops
it, resets its high water, then loads it again and runs it: the figure is the high water
above the level before that second load, what holding and running the model costs.

Child: `python -m zoo.evaluation.memory MODEL_DIR INPUTS.safetensors` prints JSON
`{"<batch size>": peak MB, ...}`; batches run smallest first, so each figure is the high
water up to and including that batch.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from zoo.errors import MemoryMeasureError

Inputs = dict[str, torch.Tensor]


def _input_name(batch_size: int, name: str) -> str:
    return f"b{batch_size}.{name}"


def peak_memory_mb(
    model_dir: Path, inputs_by_batch: dict[int, Inputs], timeout_s: float = 600
) -> dict[int, float]:
    """Peak resident memory (MB) of loading `model_dir` and running each batch, by batch."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="zoo-memory-") as tmp:
        path = Path(tmp) / "inputs.safetensors"
        save_file(
            {
                _input_name(size, name): tensor.detach().clone().contiguous()
                for size, inputs in inputs_by_batch.items()
                for name, tensor in inputs.items()
            },
            str(path),
        )
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
        done = subprocess.run(
            [sys.executable, "-m", "zoo.evaluation.memory", str(model_dir), str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    if done.returncode != 0:
        raise MemoryMeasureError(
            f"measuring the memory of {model_dir} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    return {int(k): float(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


def _status_kb(field_name: str) -> int:
    # /proc/self/status, not getrusage: ru_maxrss survives exec, so a child would report
    # the benchmark process's high water; VmHWM belongs to this process's own memory map.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise MemoryMeasureError(f"/proc/self/status has no {field_name} (Linux only)")


def _reset_high_water() -> None:
    """Bring VmHWM down to the current resident set, so imports do not count."""
    # Older kernels refuse: the high water then also holds the first load's peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _child(model_dir: str, inputs_path: str) -> dict[int, float]:
    from safetensors.torch import load_file

    from zoo.pipeline.model_io import load_model_folder

    stored = load_file(inputs_path)
    by_batch: dict[int, Inputs] = {}
    for key, tensor in stored.items():
        batch, _, name = key.partition(".")
        by_batch.setdefault(int(batch[1:]), {})[name] = tensor
    # Load once and drop it, so the code it imports (transformers: ~200 MB) is not
    # counted as the model's memory; then measure a second load from a reset high water.
    del_model = load_model_folder(model_dir)
    del del_model
    gc.collect()
    _reset_high_water()
    start = _status_kb("VmRSS")
    model = load_model_folder(model_dir)
    model.eval()
    peaks: dict[int, float] = {}
    with torch.inference_mode():
        for size in sorted(by_batch):
            model(**by_batch[size])
            peaks[size] = round(max(0, _status_kb("VmHWM") - start) / 1024, 2)
    return peaks


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    result = _child(sys.argv[1], sys.argv[2])
    print(json.dumps({str(k): v for k, v in result.items()}))
