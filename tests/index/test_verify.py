from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zoo.cli import main
from zoo.index.publish import publish
from zoo.index.tensors import safetensors_stats
from zoo.index.verify import verify_index
from zoo.index.view import open_index
from zoo.storage.base import blob_key
from zoo.storage.local import LocalStore


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.float64]
)
def test_tensor_stats_match_torch(tmp_path: Path, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(17, 9, generator=g) * 10).to(dtype)
    a[a.abs() < 3] = 0
    b = torch.zeros(5, dtype=dtype)
    if dtype.is_floating_point:
        b[0] = -0.0  # negative zero is a zero
    save_file({"a": a, "b": b}, str(tmp_path / "t.safetensors"))
    stats = safetensors_stats(tmp_path / "t.safetensors")
    assert stats.tensors == 2
    assert stats.parameters == a.numel() + b.numel()
    assert stats.zeros == int((a == 0).sum()) + 5


def test_verify_passes_then_fails_naming_entry_and_file(
    tmp_path: Path, store: LocalStore, export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = publish(export, store).entry
    report = verify_index(open_index(store))
    assert report.ok and report.entries == 1 and report.blobs == len(entry.files)
    assert main(["index", "verify", "--store", str(store.root)]) == 0
    assert "ok: 1 entries" in capsys.readouterr().out

    weights = entry.file("model.safetensors")
    blob = store.root / blob_key(weights.sha256)
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x01  # one byte of the last weight
    blob.write_bytes(bytes(data))

    problems = verify_index(open_index(store)).problems
    assert problems and all(entry.ref in p and "model.safetensors" in p for p in problems)
    assert any("sha256" in p for p in problems)
    assert main(["index", "verify", "--store", str(store.root)]) != 0
    err = capsys.readouterr().err
    assert f"{entry.ref}: file model.safetensors: sha256 is" in err


def test_verify_recomputes_sparsity_and_notices_a_missing_blob(store: LocalStore, tiny) -> None:  # type: ignore[no-untyped-def]
    entry = publish(tiny("a"), store).entry
    weights = entry.file("model.safetensors")
    blob = store.root / blob_key(weights.sha256)
    raw = bytearray(blob.read_bytes())
    # Zero one more weight without changing the size: the zero count must be recomputed.
    header = int.from_bytes(raw[:8], "little")
    values = np.frombuffer(bytes(raw[8 + header :]), dtype="<f4").copy()
    values[np.flatnonzero(values)[0]] = 0.0
    blob.write_bytes(bytes(raw[: 8 + header]) + values.tobytes())
    problems = verify_index(open_index(store)).problems
    assert any("sparsity" in p and f"{weights.zeros + 1} zeros" in p for p in problems)

    readme = entry.file("README.md")
    (store.root / blob_key(readme.sha256)).unlink()
    problems = verify_index(open_index(store)).problems
    assert any(entry.ref in p and "README.md" in p and "missing" in p for p in problems)


def test_verify_recounts_the_loaded_models_parameters_and_nonzeros(
    tmp_path: Path, store: LocalStore
) -> None:
    import json

    from tests.demo_models import DemoModel, make_export

    honest = make_export(tmp_path / "honest", DemoModel(STUB_A, sparsity=0.5, seed=1))
    publish(honest, store)
    assert verify_index(open_index(store)).ok

    lying = make_export(tmp_path / "lying", DemoModel(STUB_B, sparsity=0.5, seed=2))
    meta = json.loads((lying / "zoo.json").read_text())
    claimed = meta["sparsity"]["model_parameters"]
    meta["sparsity"]["model_parameters"] = claimed * 3  # the stream count of a packed export
    (lying / "zoo.json").write_text(json.dumps(meta))
    entry = publish(lying, store).entry
    problems = verify_index(open_index(store)).problems
    assert problems == [
        f"{entry.ref}: the loaded model has {claimed} parameters, index says {claimed * 3}"
    ]


STUB_A = "zoo:cv/classification/mlp/fashion_mnist/pruned50"
STUB_B = "zoo:cv/classification/mlp/fashion_mnist/pruned50_b"
