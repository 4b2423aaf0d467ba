"""bench/runtimes.py keeps what it measured: the table of a real side-by-side run is written
as plain JSON (numpy / torch scalars included), rewritten atomically, and an unwritable
--out is refused before anything is measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.runtimes import family_table, main, save_results
from zoo.evaluation.speed import measure_side_by_side
from zoo.runtimes.prepare import on_variant


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@pytest.fixture(scope="module")
def family() -> dict[str, object]:
    torch.manual_seed(0)
    model = Head().eval()
    models = {
        "head/torch": model,
        "head/onnxruntime": on_variant(model, "onnxruntime", {"x": torch.randn(1, 32)}),
    }
    timings = measure_side_by_side(
        models,
        lambda size: {"x": torch.randn(size, 32)},
        baseline="head/torch",
        batch_sizes=(1, 8),
        rounds=5,
        warmup=1,
        budget_s=0.2,
        remeasures=0,
    )
    return family_table(timings, "head", [1, 8])


def test_a_measured_family_is_written_and_read_back_whole(
    family: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "runtimes" / "bench.json"
    save_results(out, {"head": family}, threads=1)
    partial = json.loads(out.read_text())
    assert partial["complete"] is False and partial["claims"] == []
    save_results(out, {"head": family}, 1, ["a claim"], complete=True)
    written = json.loads(out.read_text())
    assert written["complete"] is True and written["claims"] == ["a claim"]
    table = written["families"]["head"]
    assert {row["variant"] for row in table["rows"]} == {"torch", "onnxruntime"}
    best = table["best_dense"]
    assert set(best) == {"1", "8"}
    for size, name in best.items():  # the best dense runtime is 1.00x itself
        row = next(r for r in table["rows"] if f"head/{r['variant']}" == name)
        assert row[f"b{size}_vs_best_dense"] == 1.0
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temporary left


def test_numpy_and_torch_scalars_become_numbers_and_other_values_are_refused(
    family: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    rows = [dict(r) for r in family["rows"]]  # type: ignore[attr-defined]
    rows[0].update(
        numpy_ms=np.float32(1.5), torch_ms=torch.tensor(2.0), flag=np.bool_(True), n=np.int64(3)
    )
    save_results(out, {"head": {**family, "rows": rows}}, threads=1)
    row = json.loads(out.read_text())["families"]["head"]["rows"][0]
    assert (row["numpy_ms"], row["torch_ms"], row["flag"], row["n"]) == (1.5, 2.0, True, 3)
    before = out.read_bytes()
    rows[0]["odd"] = {1, 2}
    with pytest.raises(TypeError, match=r"results\.families\.head\.rows\[0\]\.odd: set"):
        save_results(out, {"head": {**family, "rows": rows}}, threads=1)
    assert out.read_bytes() == before  # the last good table stays


def test_an_unwritable_out_is_refused_before_anything_is_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "bench.json"
    code = main(["--out", str(out), "--exports", str(tmp_path / "no-exports")])
    assert code == 2
    error = capsys.readouterr().err
    assert f"cannot write --out {out}" in error and "no export" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
