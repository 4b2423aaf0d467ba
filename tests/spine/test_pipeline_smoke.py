"""End to end: the whole DVC pipeline under the smoke experiment, in a temporary repo copy.

One zoo entry per flow (dense, oneshot, training-aware with QAT, transfer through the
client, MiniLM one-shot SparseGPT), each compressed, evaluated, benchmarked, exported and
registered in the copy's local store.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from tests.spine.repo_copy import copy_repo, run
from zoo.evaluation.conditional_names import expert_load
from zoo.evaluation.schema import CONTROL_TOLERANCE, BenchmarkReport

pytestmark = pytest.mark.slow
DVC = [sys.executable, "-m", "dvc"]
ZOO = [sys.executable, "-m", "zoo.cli"]


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    composed = run([sys.executable, "-m", "zoo.pipeline.compose", "experiment=smoke"], repo)
    assert composed.returncode == 0, composed.stderr
    started = time.perf_counter()
    result = run([*DVC, "repro"], repo, timeout=1200)
    print(f"smoke dvc repro took {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import yaml

    entries = yaml.safe_load((repo / "params.yaml").read_text())["zoo"]
    return repo, entries


def test_dense_baselines_and_data(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    for flow in ("vision", "text"):
        metrics = json.loads((repo / f"metrics/dense/{flow}.json").read_text())
        assert set(metrics) >= {"train", "val", "test", "parameters"}
        assert (repo / f"models/dense/{flow}/model.safetensors").is_file()
        assert (repo / f"plots/dense/{flow}.csv").read_text().startswith("epoch,")
    for name in ("fashion_mnist", "mnist5k", "rotten_tomatoes", "digits"):
        assert (repo / "data" / name / "meta.json").is_file()
    vision = json.loads((repo / "metrics/dense/vision.json").read_text())
    assert vision["test"]["accuracy"] > 0.5  # ten classes, 2,000 examples, one epoch


def test_every_flow_is_built_measured_and_registered(smoke_repo: tuple[Path, dict]) -> None:
    repo, entries = smoke_repo
    assert {e["flow"] for e in entries.values()} == {"dense", "oneshot", "train", "transfer"}
    for key, entry in entries.items():
        metrics = json.loads((repo / f"metrics/zoo/{key}.json").read_text())
        if "perplexity" in metrics["test"]:  # a causal LM, beside its dense parent
            test = metrics["test"]
            assert test["perplexity"] > 1.0 and test["parent_perplexity"] > 1.0
            assert test["perplexity"] != test["parent_perplexity"]  # pruning changed the model
        else:
            assert 0.0 < metrics["test"]["accuracy"] <= 1.0
            assert 0.0 <= metrics["test"]["agreement"] <= 1.0
        bench = _bench(repo, key)
        for side in (bench.model, bench.baseline):
            b64 = side.batches[64]
            assert b64.p50_ms > 0 and (side.size_bytes or 0) > 0
            assert all((b.peak_memory_mb or 0) > 0 for b in side.batches.values())
        for b in bench.model.batches.values():  # every ratio carries its control and spread
            assert b.speedup and b.control and b.spread is not None
            assert b.noisy or abs(b.control - 1) <= CONTROL_TOLERANCE  # strays: marked
        receipt = json.loads((repo / f"metrics/register/{key}.json").read_text())
        assert receipt["ref"] == f"{entry['stub']}@v1"
    hf_layers = {  # transformers models (the `hf` architecture): SparseGPT 50%, GMP 60%
        "llama_sparsegpt50": ("model.model.layers.0.self_attn.q_proj.weight", 0.5),
        "bert_gmp60": ("model.bert.encoder.layer.0.attention.self.query.weight", 0.6),
    }
    for key, (layer, target) in hf_layers.items():
        sparsity = json.loads((repo / f"models/export/{key}/zoo.json").read_text())["sparsity"]
        assert abs(sparsity["per_layer"][layer] - target) < 0.01, (key, sparsity["per_layer"])
    gmp_qat = _bench(repo, "cnn_gmp90_qat").model
    assert (gmp_qat.sparsity or 0) > 0.85
    assert (gmp_qat.size_ratio or 0) >= 15, "GMP 90% + int8 must be <= 1/15 of the dense export"
    text, vision = _bench(repo, "minilm_sparsegpt50").model, _bench(repo, "cnn_dense").model
    assert text.batches[1].peak_memory_mb > vision.batches[1].peak_memory_mb > 0  # type: ignore[operator]


def _bench(repo: Path, key: str) -> BenchmarkReport:
    path = repo / f"metrics/bench/{key}.json"
    return BenchmarkReport.from_dict(json.loads(path.read_text()), str(path))


def test_what_users_see_is_what_the_pipeline_measured(
    smoke_repo: tuple[Path, dict], tmp_path: Path
) -> None:
    """Latency, parameters, non-zeros and lineage of the registered entries reach search
    and the catalog as measured (the benchmark stage's real output, not hand-made keys)."""
    from zoo.client.api import info, load
    from zoo.evaluation.counting import count_nonzero, count_parameters

    repo, entries = smoke_repo
    store = str(repo / ".zoo/store")
    found = run([*ZOO, "search", "--pareto", "latency", "--registry", store, "--json"], repo)
    assert found.returncode == 0, found.stderr
    front = json.loads(found.stdout)
    assert front and all(hit["latency_ms"] > 0 for hit in front)

    built = run(
        [*ZOO, "catalog", "build", "--out", str(tmp_path / "site"), "--registry", store], repo
    )
    assert built.returncode == 0, built.stderr
    index = (tmp_path / "site/index.html").read_text()
    data = index.split('<script type="application/json" id="zoo-data">', 1)[1]
    rows = json.loads(data.split("</script>", 1)[0])
    assert len(rows) == len(entries)
    assert all(row["latency_ms"] and row["latency_ms"] > 0 for row in rows), rows
    plots = [p for p in (tmp_path / "site/plots").glob("*--*.html")]
    assert plots
    for plot in plots:
        html = plot.read_text()
        assert "No models with both latency" not in html and "<circle" in html, plot.name

    summary = run([sys.executable, "-m", "zoo.pipeline.summary"], repo)
    assert summary.returncode == 0, summary.stderr
    for column in ("sparsity (prunable layers)", "sparsity (all weights)", "control"):
        assert column in summary.stdout, column

    cache = str(tmp_path / "cache")
    for key, entry in entries.items():
        ref = json.loads((repo / f"metrics/register/{key}.json").read_text())["ref"]
        published = info(ref, registry=store, cache_dir=cache)
        model = load(ref, registry=store, cache_dir=cache)
        assert published.parameters == count_parameters(model), key
        assert published.nonzero == count_nonzero(model), key
        parent = published.lineage.parent
        if entry["flow"] != "dense" and parent is not None:
            assert re.search(r"@v[0-9]+$", parent), f"{key}: parent {parent} has no version"
            info(parent, registry=store, cache_dir=cache)  # and it is in this registry


def test_exports_round_trip_through_the_client(smoke_repo: tuple[Path, dict]) -> None:
    repo, entries = smoke_repo
    store = repo / ".zoo/store"
    for key in entries:
        receipt = json.loads((repo / f"metrics/register/{key}.json").read_text())
        # validate: download by stub, load (no pickle), rerun the sample inputs, compare.
        result = run([*ZOO, "validate", receipt["ref"], "--registry", str(store)], repo)
        assert result.returncode == 0, f"{key}: {result.stdout}{result.stderr}"
    verify = run([*ZOO, "index", "verify", "--store", str(store)], repo)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_upcycled_entry_carries_its_measured_facts_to_search_and_catalog(
    smoke_repo: tuple[Path, dict], tmp_path: Path
) -> None:
    repo, _ = smoke_repo
    store = repo / ".zoo/store"
    ref = json.loads((repo / "metrics/register/cnn_moe4_top1.json").read_text())["ref"]
    meta = json.loads((repo / "models/export/cnn_moe4_top1/zoo.json").read_text())
    facts = next(iter(meta["metrics"].values()))
    # Top-1 of 4 experts: three of the hidden layer's copies idle for every image.
    assert facts["active_parameters"] < facts["total_parameters"]
    assert 0.25 <= facts["expert_load_max"] <= 1.0
    shares = expert_load(facts)["hidden.0"]  # the histogram: every expert's share
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0, abs=1e-3)
    found = run(
        [*ZOO, "search", "--where", "active_parameters>0", "--registry", str(store), "--json"],
        repo,
    )
    assert found.returncode == 0 and ref.split("@")[0] in found.stdout, found.stderr
    built = run(
        [*ZOO, "catalog", "build", "--out", str(tmp_path / "site"), "--registry", str(store)], repo
    )
    assert built.returncode == 0, built.stderr
    pages = [p.read_text() for p in (tmp_path / "site").rglob("*.html") if "moe4_top1" in p.name]
    assert pages and all("active_parameters" in page for page in pages)
    assert all(page.count('class="bar"') == 4 for page in pages)  # the load, drawn


def test_transfer_fetched_its_upstream_by_stub(smoke_repo: tuple[Path, dict]) -> None:
    repo, entries = smoke_repo
    key = next(k for k, e in entries.items() if e["flow"] == "transfer")
    upstream = json.loads((repo / entries[key]["parent"]).read_text())["ref"]
    meta = json.loads((repo / f"models/export/{key}/zoo.json").read_text())
    assert meta["lineage"]["parent"] == upstream


def test_pareto_plot_data_marks_fronts(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    rows = (repo / "plots/pareto/fashion_mnist.csv").read_text().splitlines()
    assert rows[0].startswith("entry,accuracy,size_kb")
    assert any(row.endswith("True,True") or ",True" in row for row in rows[1:])


def test_second_repro_runs_nothing(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    again = run([*DVC, "repro"], repo)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout


def test_rerun_from_scratch_gives_identical_outputs(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    lock = repo / "dvc.lock"
    before = lock.read_text()
    stages = ["compress@cnn_pruned80", "compress@cnn_gmp90_qat"]  # one-shot and training
    forced = run([*DVC, "repro", "--force", "--single-item", *stages], repo, timeout=900)
    assert forced.returncode == 0, forced.stdout[-2000:] + forced.stderr[-2000:]
    assert forced.stdout.count("Running stage") == len(stages)
    # Same output hashes in the lock file: the re-made folders are byte-identical, so the
    # metrics measured from them are the same and nothing downstream is stale.
    assert lock.read_text() == before
    assert stale_stages(repo) == set()


def stale_stages(repo: Path) -> set[str]:
    status = run([*DVC, "status"], repo)
    assert status.returncode == 0, status.stderr
    return {
        line[:-1]
        for line in status.stdout.splitlines()
        if line and not line[0].isspace() and line.endswith(":")
    }


def test_a_param_edit_reruns_only_the_stages_that_read_it(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    params = repo / "params.yaml"
    original = params.read_text()
    assert "    lr: 5.0e-05\n" in original
    params.write_text(original.replace("    lr: 5.0e-05\n", "    lr: 4.0e-05\n"))  # text.train.lr
    try:
        stale = stale_stages(repo)
        assert "train_text" in stale
        assert not {s for s in stale if s == "train_vision" or "@cnn_" in s}, stale
    finally:
        params.write_text(original)
    assert stale_stages(repo) == set()


# The two tests below need the workspace as the smoke run left it: they come before the
# experiment runs, which change it (pytest keeps the file's order).


def test_reproduce_rebuilds_an_entry_and_flags_an_altered_metric(
    smoke_repo: tuple[Path, dict],
) -> None:
    """`zoo reproduce` on the one-shot smoke entry: rebuilt in a worktree of its commit,
    byte-identical weights on this machine; a registered metric altered by 0.05 is
    reported and exits 1; nothing is left behind."""
    from zoo.index.mirror import entry_path
    from zoo.index.schema import Entry, parse_ref
    from zoo.reproduce import compare

    repo, _ = smoke_repo
    # What a team commits after `dvc repro`: params, dvc.lock, metrics and registry/.
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", "smoke results"]):
        assert run(cmd, repo).returncode == 0
    ref = json.loads((repo / "metrics/register/cnn_pruned80.json").read_text())["ref"]
    stub, version = parse_ref(ref)
    path = entry_path(repo / "registry", stub, int(str(version)[1:]))
    entry = Entry.from_json(path.read_bytes())

    # The comparison on the pipeline's own export: the same bytes, the same numbers.
    rows = compare(entry, repo / "models/export/cnn_pruned80")
    assert rows and all(r.ok for r in rows)
    assert [r.note for r in rows if r.what.startswith("weights ")] == ["identical"]

    check = run([*ZOO, "reproduce", ref, "--check-only"], repo)
    assert check.returncode == 0, check.stdout + check.stderr

    original = path.read_text()
    altered = json.loads(original)
    dataset = next(iter(altered["metrics"]))
    altered["metrics"][dataset]["accuracy"] -= 0.05
    path.write_text(json.dumps(altered))
    try:
        started = time.perf_counter()
        done = run([*ZOO, "reproduce", ref, "--json"], repo, timeout=1200)
        print(f"zoo reproduce {ref} took {time.perf_counter() - started:.1f} s")
    finally:
        path.write_text(original)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    bad = [r["what"] for r in report["rows"] if not r["ok"]]
    assert bad == [f"{dataset} accuracy"], report
    assert [r["note"] for r in report["rows"] if r["what"].startswith("weights ")] == ["identical"]
    assert "NOT reproduced" in report["verdict"]
    worktrees = run(["git", "worktree", "list"], repo)
    assert len(worktrees.stdout.splitlines()) == 1, worktrees.stdout


def test_a_second_clone_pulls_from_the_s3_remote_and_computes_nothing(
    smoke_repo: tuple[Path, dict], tmp_path: Path
) -> None:
    """The team set-up: DVC's cache on the project's S3 server (SeaweedFS here). The first
    clone pushes what it built; a fresh `git clone` pulls it, and `dvc repro` trains,
    compresses and measures nothing. Only the register stages run: params' store is a folder
    inside the repository (in neither git nor DVC), so the clone publishes the pulled exports
    into its own store, ending with every entry there; a second `dvc repro` runs nothing."""
    import subprocess

    from tests.spine.repo_copy import pipeline_env
    from tests.storage._seaweed import seaweedfs

    repo, entries = smoke_repo
    with seaweedfs(tmp_path / "s3") as server:
        server.make_bucket("zoo-dvc")
        env = {**pipeline_env(), **server.env()}

        def sh(*cmd: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
            assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            return done

        # Committed once by the team: the remote's URL and endpoint (never credentials).
        sh(*DVC, "remote", "add", "-d", "team", "s3://zoo-dvc/cache", cwd=repo)
        sh(*DVC, "remote", "modify", "team", "endpointurl", server.endpoint_url, cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-q", "-m", "results and the team's DVC remote", cwd=repo)
        started = time.perf_counter()
        sh(*DVC, "push", cwd=repo)
        pushed = time.perf_counter() - started

        clone = tmp_path / "clone"
        sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
        started = time.perf_counter()
        sh(*DVC, "pull", cwd=clone)
        pulled = time.perf_counter() - started
        again = sh(*DVC, "repro", cwd=clone)
        print(f"dvc push {pushed:.1f} s, dvc pull {pulled:.1f} s on loopback")
        ran = re.findall(r"Running stage '([^']+)'", again.stdout)
        assert sorted(ran) == sorted(f"register@{key}" for key in entries), again.stdout[-2000:]
        store = clone / ".zoo" / "store"
        listed = sh(*ZOO, "search", "--registry", str(store), "--json", cwd=clone)
        refs = {row["ref"] for row in json.loads(listed.stdout)}
        assert refs == {f"{entry['stub']}@v1" for entry in entries.values()}
        third = sh(*DVC, "repro", cwd=clone)
        status = sh("git", "status", "--porcelain", cwd=clone)
    assert "Running stage" not in third.stdout, third.stdout[-2000:]
    # dvc.lock as committed (the same receipts), registry/ as committed (the clone's own
    # store has its own history: not mirrored over the team's)
    assert status.stdout == "", status.stdout
    assert "registry/ not mirrored" in again.stdout


def test_exp_run_with_hydra_override_is_listed(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    result = run(
        [*DVC, "exp", "run", "-S", "experiment=smoke", "-S", "model=mlp", "train_vision"], repo
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shown = run([*DVC, "exp", "show", "--json"], repo)
    assert shown.returncode == 0, shown.stderr
    assert '"mlp"' in shown.stdout, "the experiment with model=mlp is not listed"
    metrics = json.loads((repo / "metrics/dense/vision.json").read_text())
    assert metrics["parameters"] > 200_000  # the MLP, not the CNN, was trained


def test_bad_override_fails_cleanly(smoke_repo: tuple[Path, dict]) -> None:
    repo, _ = smoke_repo
    result = run([*DVC, "exp", "run", "-S", "model=resnet9000"], repo)
    assert result.returncode != 0
    assert "cnn_small" in result.stdout + result.stderr
