"""The `hf` architecture: any transformers model compressed, exported, published and
loaded like the zoo's own. Tiny random Llama / BERT / Mixtral folders are built in the test
(zoo.models.tiny: random weights, a tokenizer trained offline on shipped reviews)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from zoo.client.api import load as zoo_load
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.errors import ModelSourceError, UnsupportedArchitectureError
from zoo.evaluation.perplexity import perplexity
from zoo.index.publish import publish
from zoo.models import get_model
from zoo.models.tiny import shipped_texts, write_tiny_model
from zoo.recipes import RecipeManager, oneshot

SPARSEGPT50 = """
stages:
  prune:
    run_type: oneshot
    modifiers:
      - type: SparseGPTModifier
        params: ["re:model\\\\.model\\\\.layers\\\\.\\\\d+\\\\..*_proj\\\\.weight"]
        sparsity: 0.5
        block_size: 32
"""

GMP = """
stages:
  train:
    run_type: train
    modifiers:
      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 2}
      - type: GMPruningModifier
        params: ["re:model\\\\.bert\\\\.encoder\\\\..*\\\\.weight"]
        init_sparsity: 0.1
        final_sparsity: 0.6
        start_epoch: 0
        end_epoch: 1.5
        update_frequency: 0.25
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {kind: write_tiny_model(kind, root / kind) for kind in ("llama", "bert", "mixtral")}


def _batches(folder: Path, texts: list[str], size: int = 8) -> list[dict[str, torch.Tensor]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(
            texts[i : i + size], padding=True, truncation=True, max_length=32, return_tensors="pt"
        )
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def test_tiny_llama_sparsegpt50_exports_registers_downloads_and_loads(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    texts = shipped_texts(96)
    calibration, held_out = _batches(tiny["llama"], texts[:64]), _batches(tiny["llama"], texts[64:])
    dense = get_model("hf", path=str(tiny["llama"]))
    pruned = get_model("hf", path=str(tiny["llama"]))
    oneshot(pruned, SPARSEGPT50, calibration)
    layer = pruned.model.model.layers[0].self_attn.q_proj.weight
    assert float((layer == 0).float().mean()) == pytest.approx(0.5, abs=0.01)

    stub = "zoo:nlp/text_generation/llama_tiny/rotten_tomatoes/pruned50_sparsegpt"
    folder = export_model(pruned, tmp_path / "export", stub=stub, sample_inputs=held_out[0]).folder
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "hf" and config["kwargs"]["task"] == "causal_lm"
    result = publish(folder, str(tmp_path / "store"))
    loaded = zoo_load(f"{stub}@v{result.entry.version}", registry=str(tmp_path / "store"))
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.equal(loaded(**held_out[0]), pruned(**held_out[0]))

    dense_ppl, pruned_ppl = perplexity(dense, held_out), perplexity(loaded, held_out)
    assert perplexity(pruned, held_out) == pytest.approx(pruned_ppl)
    # Random weights: both are near the vocabulary size, and pruning moved it.
    assert 100 < dense_ppl < 2000 and 100 < pruned_ppl < 2000 and pruned_ppl != dense_ppl


def test_tiny_bert_classifier_through_training_aware_gmp(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    texts = shipped_texts(64)
    batches = _batches(tiny["bert"], texts)
    labels = torch.tensor([len(t) % 2 for t in texts])  # any fixed labels: a real loss to follow
    torch.manual_seed(0)
    model = get_model("hf", path=str(tiny["bert"]), num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    manager = RecipeManager.from_yaml(GMP)
    manager.modify(model, optimizer, steps_per_epoch=len(batches))
    model.train()
    for _ in range(2):
        for i, batch in enumerate(batches):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(**batch), labels[i * 8 : i * 8 + 8])
            manager.loss_update(loss).backward()
            optimizer.step()
    manager.finalize(model)
    weight = model.model.bert.encoder.layer[0].attention.self.query.weight
    assert float((weight == 0).float().mean()) == pytest.approx(0.6, abs=0.02)

    result = export_model(model, tmp_path / "bert", sample_inputs=batches[0])
    config = json.loads((result.folder / "config.json").read_text())
    assert config["compression"]["encoding"]["format"] == "zoo-packed/1"  # zeros packed away
    assert result.meta.sparsity.overall > 0.3
    loaded = load_exported(result.folder)
    with torch.no_grad():
        assert torch.equal(loaded(**batches[0]), model.eval()(**batches[0]))


def test_tiny_mixtral_round_trips(tiny: dict[str, Path], tmp_path: Path) -> None:
    batch = _batches(tiny["mixtral"], shipped_texts(4))[0]
    model = get_model("hf", path=str(tiny["mixtral"]))
    export_model(model, tmp_path / "moe", sample_inputs=batch)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "moe")(**batch), model(**batch))


def test_missing_path_and_folder_without_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="does not exist"):
        get_model("hf", path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="holds no config.json"):
        get_model("hf", path=str(tmp_path / "empty"))


def test_an_architecture_the_wrapper_cannot_classify_names_its_config(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig

    folder = tmp_path / "clip"
    CLIPVisionConfig(hidden_size=32, num_attention_heads=4).save_pretrained(folder)
    with pytest.raises(UnsupportedArchitectureError, match="CLIPVisionConfig") as info:
        get_model("hf", path=str(folder))
    assert "causal_lm" in str(info.value) and "sequence_classification" in str(info.value)
    with pytest.raises(UnsupportedArchitectureError, match="CLIPVisionConfig.*AutoModelForCausalLM.*llama"):
        get_model("hf", path=str(folder), task="causal_lm")


def test_the_text_flow_takes_an_hf_model_by_configuration(tiny: dict[str, Path]) -> None:
    from zoo.data.sources import get_dataset_spec
    from zoo.pipeline.compose import compose
    from zoo.pipeline.dense import build_model_for, text_tokenizer
    from zoo.pipeline.entries import entry_config
    from zoo.pipeline.params import ModelConfig

    conf = Path(__file__).resolve().parents[2] / "conf"
    folder = str(tiny["bert"])
    params = compose(conf, ["model@text.model=hf", f"text.model.kwargs.path={folder}"])
    model_cfg = ModelConfig(params["text"]["model"]["name"], params["text"]["model"]["kwargs"])
    model = build_model_for(model_cfg, get_dataset_spec("rotten_tomatoes"), seed=0)
    assert type(model.model).__name__ == "BertForSequenceClassification"
    tokenizer = text_tokenizer("hf", model_cfg.kwargs["path"])
    assert len(tokenizer) == model.model.config.vocab_size  # its own, not MiniLM's
    # Text entries read the text model's tokenizer unless they name their own.
    assert entry_config(params, "minilm_sparsegpt50").tokenizer == folder


@pytest.mark.slow
def test_the_dense_stage_stops_on_a_bad_model_with_exit_2_and_writes_nothing(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    import yaml
    from transformers import CLIPVisionConfig

    from zoo.data.prepare import prepare_dataset
    from zoo.pipeline.compose import compose

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "data"
    prepare_dataset("rotten_tomatoes", data, seed=0)
    (tmp_path / "empty").mkdir()
    CLIPVisionConfig(hidden_size=32, num_attention_heads=4).save_pretrained(tmp_path / "clip")
    cases = {
        tmp_path / "nowhere": "does not exist",
        tmp_path / "empty": "holds no config.json",
        tmp_path / "clip": "CLIPVisionConfig",
    }
    for path, message in cases.items():
        params = compose(repo / "conf", ["model@text.model=hf", f"text.model.kwargs.path={path}"])
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out = tmp_path / "out"
        args = ["--flow", "text", "--data", str(data), "--out", str(out)]
        args += ["--metrics", str(tmp_path / "m.json"), "--plots", str(tmp_path / "p.csv")]
        done = subprocess.run(
            [sys.executable, str(repo / "pipelines/train_dense.py"), *args, "--params"]
            + [str(tmp_path / "params.yaml")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert not out.exists() and not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_a_hub_repo_id_loads_from_the_local_cache_offline(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub is a real server here too: olah serves the tiny Llama as a git repo, the
    cache is filled through huggingface_hub, then `hf` resolves the repo id offline."""
    import shutil

    import huggingface_hub.constants
    from huggingface_hub import snapshot_download

    from tests.storage._olah import git_repo, olah_server

    repo = tmp_path / "mirrors" / "models" / "acme" / "tiny-llama"
    shutil.copytree(tiny["llama"], repo)
    git_repo(repo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ModelSourceError, match="not in the\\s+local Hugging Face cache|no Hub"):
        get_model("hf", path="acme/tiny-llama")  # not cached yet: nothing is downloaded
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with olah_server(tmp_path, tmp_path / "mirrors") as endpoint:
        snapshot_download("acme/tiny-llama", endpoint=endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = get_model("hf", path="acme/tiny-llama")
    reference = get_model("hf", path=str(tiny["llama"]))
    ids = torch.randint(0, 500, (1, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids), reference(ids))
