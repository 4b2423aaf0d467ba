"""Check a model against its own samples: run the sample inputs, compare with the outputs.

Sample files are `samples/*.safetensors`. In each, tensors named `output` (or starting
with `output`) are the expected outputs; the others are inputs: a single `input` is
passed positionally, otherwise inputs are passed by name (`input_ids`, `attention_mask`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo.errors import CheckpointError, ModelValidationError


@dataclass(frozen=True)
class SampleCheck:
    file: str
    output: str
    max_abs_diff: float
    tolerance: float
    same_argmax: float  # fraction of rows whose top class agrees (1.0 for non-logits)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ValidationReport:
    ref: str
    checks: list[SampleCheck]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def raise_if_failed(self) -> ValidationReport:
        if not self.checks:
            raise ModelValidationError(f"{self.ref} has no samples/*.safetensors to validate")
        bad = [c for c in self.checks if not c.ok]
        if bad:
            detail = "; ".join(
                f"{c.file}:{c.output} max |diff| {c.max_abs_diff:.3g} > {c.tolerance:.3g}"
                for c in bad
            )
            raise ModelValidationError(
                f"{self.ref} does not reproduce its sample outputs: {detail}. The weights "
                "or the loading code changed; re-download with `zoo cache prune` first, "
                "and report it if it persists."
            )
        return self


def sample_files(folder: str | os.PathLike[str]) -> list[Path]:
    return sorted((Path(folder) / "samples").glob("*.safetensors"))


def validate_model(
    model: nn.Module,
    folder: str | os.PathLike[str],
    ref: str = "",
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> ValidationReport:
    """Run every sample file in `folder/samples` through `model` and compare outputs.

    The tolerance is atol + rtol * max|expected|, so it scales with the outputs' size:
    float reordering across machines passes, a changed weight does not.
    """
    from safetensors.torch import load_file

    checks: list[SampleCheck] = []
    model.eval()
    for path in sample_files(folder):
        tensors = load_file(str(path))
        outputs = {k: v for k, v in tensors.items() if k.startswith("output")}
        inputs = {k: v for k, v in tensors.items() if not k.startswith("output")}
        if not outputs or not inputs:
            raise CheckpointError(
                f"{path} must hold input tensor(s) and 'output' tensor(s); found {sorted(tensors)}"
            )
        with torch.inference_mode():
            got = model(inputs["input"]) if set(inputs) == {"input"} else model(**inputs)
        produced = got if isinstance(got, dict) else {"output": got}
        if not isinstance(got, dict) and len(outputs) != 1:
            raise CheckpointError(f"{path}: the model returns one tensor, samples hold several")
        for name, expected in sorted(outputs.items()):
            actual = produced.get(name, got if not isinstance(got, dict) else None)
            if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
                shape = getattr(actual, "shape", None)
                raise ModelValidationError(
                    f"{ref or folder}: {path.name}:{name} expected shape "
                    f"{tuple(expected.shape)}, the model produced {shape}"
                )
            actual = actual.float()
            expected = expected.float()
            diff = float((actual - expected).abs().max()) if expected.numel() else 0.0
            tolerance = atol + rtol * float(expected.abs().max()) if expected.numel() else atol
            agree = 1.0
            if expected.dim() == 2 and expected.shape[1] > 1:
                agree = float((actual.argmax(1) == expected.argmax(1)).float().mean())
            checks.append(SampleCheck(path.name, name, diff, tolerance, agree))
    return ValidationReport(ref or str(folder), checks)
