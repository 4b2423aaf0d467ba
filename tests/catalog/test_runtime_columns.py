"""The catalog shows each runtime's figures and names the fastest runtime of an entry."""

from __future__ import annotations

from pathlib import Path

from tests.catalog.test_build import embedded_models
from tests.demo_models import DemoModel, populate
from zoo.catalog.build import build_catalog, page_slug

STUB = "zoo:cv/classification/mlp/fashion_mnist/ort_fast"


def test_model_page_has_a_column_per_runtime_and_the_fastest(tmp_path: Path) -> None:
    timed = DemoModel(
        STUB,
        arch_kwargs={"hidden": [16]},
        latency_ms=1.0,
        runtime_latency_ms={"onnxruntime": 0.25, "openvino": 0.5},
    )
    untimed = DemoModel(STUB.replace("ort_fast", "eager"), arch_kwargs={"hidden": [16]}, seed=1)
    populate(str(tmp_path / "store"), tmp_path / "exports", (timed, untimed))
    site = build_catalog(tmp_path / "catalog", str(tmp_path / "store"))
    by_ref = {m["ref"]: m for m in embedded_models(site)}
    assert by_ref[STUB + "@v1"]["fastest_runtime"] == "onnxruntime"
    names = [r["name"] for r in by_ref[STUB + "@v1"]["runtimes"]]
    assert names == ["torch", "onnxruntime", "openvino"]
    html = (site / "models" / f"{page_slug(STUB + '@v1')}.html").read_text()
    table = html[
        html.index('<table id="runtimes">') : html.index(
            "</table>", html.index('<table id="runtimes">')
        )
    ]
    assert '<tr class="fastest"><td>onnxruntime</td>' in table and "<td>openvino</td>" in table
    assert 'id="fastest-runtime-value">onnxruntime<' in html
    other = (
        site / "models" / f"{page_slug(STUB.replace('ort_fast', 'eager') + '@v1')}.html"
    ).read_text()
    assert '<table id="runtimes">' not in other  # torch alone: no runtime table
