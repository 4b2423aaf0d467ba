"""The `zoo` client commands: output for people and scripts, exit codes on bad input."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.conftest import SMALL, CliResult

PRUNED80 = "zoo:cv/classification/mlp/fashion_mnist/pruned80"


def test_search_table_and_json(demo_store: str, cli: Callable[..., CliResult]) -> None:
    code, out, _ = cli(
        "search", "--registry", demo_store, "--dataset", "fashion_mnist", "--sort", "size"
    )
    assert code == 0
    assert "zoo:cv/classification/cnn_small/fashion_mnist/base@v1" in out and "accuracy" in out
    code, out, _ = cli(
        "search",
        "--registry",
        demo_store,
        "--where",
        "accuracy>=0.87",
        "--pareto",
        "size",
        "--json",
    )
    rows = json.loads(out)
    assert code == 0 and rows
    assert all(r["accuracy"] >= 0.87 for r in rows)
    assert [r["size"] for r in rows] == sorted(r["size"] for r in rows)
    code, out, _ = cli("search", "--registry", demo_store, "--quantized", "--json")
    assert [r["sparse_tag"] for r in json.loads(out)] == ["pruned80_quant"]


def test_show_download_and_cache_commands(
    demo_store: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    code, out, _ = cli("show", PRUNED80, "--registry", demo_store)
    assert code == 0 and PRUNED80 + "@v1" in out and "model.safetensors" in out
    assert "zoo download " + PRUNED80 + "@v1" in out
    code, out, _ = cli("show", PRUNED80 + "@v1", "--registry", demo_store, "--json")
    assert json.loads(out)["lineage"]["parent"] == "zoo:cv/classification/mlp/fashion_mnist/base@v1"

    code, out, _ = cli("download", PRUNED80, "--registry", demo_store, "--to", str(tmp_path / "m"))
    assert code == 0 and Path(out.strip()) == tmp_path / "m"
    assert (tmp_path / "m" / "model.safetensors").is_file()

    code, out, _ = cli("cache", "ls", "--json")
    listed = json.loads(out)
    assert [i["ref"] for i in listed] == [PRUNED80 + "@v1"] and listed[0]["aliases"] == ["latest"]
    code, out, _ = cli("cache", "prune", PRUNED80 + "@v1")
    assert code == 0 and "removed 1 version(s)" in out
    assert not list((tmp_path / "cache" / "blobs").iterdir())
    code, out, _ = cli("cache", "ls", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "not-a-stub"], 2, "invalid stub"),
        (["show", PRUNED80 + "@"], 2, "invalid stub"),
        (["show", "zoo:cv/classification/mlp"], 2, "expected 5 facets"),
        (["show", "zoo:cv/classification/mlp/fashion_mnist/prunned80"], 2, "Did you mean"),
        (["show", PRUNED80 + "@v7"], 2, "Available: v1"),
        (["download", PRUNED80 + "@stable"], 2, "no version or alias 'stable'"),
        (["search", "--where", "accuracy>>1"], 2, "METRIC OP NUMBER"),
        (["search", "--pareto", "weight"], 2, ""),
    ],
)
def test_bad_input_gives_a_clear_error_and_exit_status(
    demo_store: str, cli: Callable[..., CliResult], args: list[str], code: int, needle: str
) -> None:
    status, _, err = cli(*args, "--registry", demo_store)
    assert status == code
    assert needle in err


def test_suggestions_name_the_nearest_stubs(demo_store: str, cli: Callable[..., CliResult]) -> None:
    _, _, err = cli(
        "show", "zoo:cv/classification/mlp/fashion_mnist/prunned80", "--registry", demo_store
    )
    assert PRUNED80 in err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_registries(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-store")
    status, _, err = cli("search", "--registry", missing)
    assert status != 0 and missing in err
    assert not Path(missing).exists()  # reading never creates a store
    monkeypatch.setenv("ZOO_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    status, _, err = cli("search", "--registry", "s3://zoo-nowhere/models")
    assert status == 3 and "cannot reach" in err
    status, _, err = cli("download", SMALL.stub, "--registry", "s3://zoo-nowhere/models")
    assert status == 3 and "not in the cache" in err and "zoo download" in err


def test_registry_from_environment(
    demo_store: str, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOO_REGISTRY", demo_store)
    code, out, _ = cli("search", "--json")
    assert code == 0 and len(json.loads(out)) == 7


def test_default_registry_is_the_index_default_store(
    small_store: Callable[..., str], cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = small_store()
    monkeypatch.setenv("ZOO_STORE", store)  # what `make demo` fills, via the index module
    code, out, _ = cli("search", "--json")
    assert code == 0 and [r["ref"] for r in json.loads(out)] == [SMALL.stub + "@v1"]
