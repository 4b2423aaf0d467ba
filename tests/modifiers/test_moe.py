"""Mixture of experts: upcycling keeps the dense function, REAP removes experts for real,
on the zoo's CNN and BERT classifier and on transformers' own tiny Mixtral."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from tests.compress.export_identity import text_inputs, tiny_bert
from tests.compress.recipes import recipe
from tests.modifiers.conditional_models import (
    BERT_LAYERS,
    UPCYCLE_CNN,
    cnn,
    distinct_experts,
    images,
    scramble_routers,
)
from zoo.client.validate import validate_model
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.modifiers.moe import MoELayer, expert_parameters, moe_layers, total_parameters
from zoo.recipes import RecipeManager, oneshot


@pytest.mark.parametrize("top_k", [1, 2])
def test_upcycled_cnn_before_training_gives_the_dense_outputs_whatever_the_router(
    top_k: int,
) -> None:
    dense = cnn()
    x = images()
    moe = oneshot(copy.deepcopy(dense), recipe(UPCYCLE_CNN.replace("top_k: 2", f"top_k: {top_k}")))
    scramble_routers(moe)
    layer = moe.get_submodule("hidden.0")
    assert isinstance(layer, MoELayer) and layer.num_experts == 4
    with torch.no_grad():
        assert (moe(x) - dense(x)).abs().max() <= 1e-5
        # The router really routes: different experts are chosen for different images.
        _, _, index = layer.route(torch.flatten(moe.pool(moe.features(x)), 1))
    assert index[:, 0].unique().numel() > 1


def test_upcycled_bert_ffn_before_training_gives_the_dense_outputs() -> None:
    dense, inputs = tiny_bert(0), text_inputs()
    mod = f"{{type: MoEUpcyclingModifier, blocks: {BERT_LAYERS}, num_experts: 4, top_k: 1}}"
    moe = oneshot(copy.deepcopy(dense), recipe(mod))
    scramble_routers(moe)
    assert len(list(moe_layers(moe))) == 2
    with torch.no_grad():
        assert (moe(**inputs) - dense(**inputs)).abs().max() <= 1e-5


def test_reap_removes_the_pruned_fraction_of_experts_and_keeps_gates_summing_to_one() -> None:
    model = oneshot(cnn(), recipe(UPCYCLE_CNN.replace("top_k: 2", "top_k: 1")))
    distinct_experts(model)
    layer = model.get_submodule("hidden.0")
    per_expert = expert_parameters(layer)[0]
    router_row = layer.in_features
    before = total_parameters(model)
    oneshot(model, recipe("{type: REAPPruningModifier, sparsity: 0.5}"), [images(32)])
    layer = model.get_submodule("hidden.0")
    assert layer.num_experts == 2 and layer.top_k <= layer.num_experts
    assert before - total_parameters(model) == 2 * (per_expert + router_row)
    # The dead expert (output norm 0, so REAP score 0) is one of those removed.
    assert all(float(e.weight.detach().abs().sum()) > 0 for e in layer.experts)
    _, gates, index = layer.route(torch.randn(64, layer.in_features))
    assert torch.allclose(gates.sum(-1), torch.ones(64)) and int(index.max()) < 2


def test_reap_scores_follow_gate_times_output_norm() -> None:
    from zoo.modifiers.moe import reap_scores

    model = oneshot(cnn(), recipe(UPCYCLE_CNN))
    distinct_experts(model)
    layer = model.get_submodule("hidden.0")
    x = images(32)
    scores = reap_scores(model, [x])["hidden.0"]
    with torch.no_grad():
        h = torch.flatten(model.pool(model.features(x)), 1)
        _, gates, index = layer.route(h)
        for e, expert in enumerate(layer.experts):
            rows, slot = torch.where(index == e)
            want = (gates[rows, slot] * expert(h[rows]).norm(dim=-1)).mean() if rows.numel() else 0
            assert float(scores[e]) == pytest.approx(float(want), rel=1e-4, abs=1e-7)
    assert float(scores[1]) == 0.0


def test_upcycling_trains_under_a_train_stage_with_the_balance_loss() -> None:
    model = cnn().train()
    dense = copy.deepcopy(model).eval()
    text = (
        "stages:\n  t:\n    run_type: train\n    modifiers:\n"
        "      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 1}\n"
        f"      - {UPCYCLE_CNN[:-1]}, jitter: 0.05, balance_loss: 0.1}}\n"
    )
    manager = RecipeManager.from_yaml(text)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    manager.modify(model, optimizer, steps_per_epoch=4)
    x, y = images(64), torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    for i in range(4):
        optimizer.zero_grad()
        out = model(x[i * 16 : i * 16 + 16])
        loss = F.cross_entropy(out, y[i * 16 : i * 16 + 16])
        total = manager.loss_update(loss, inputs=x, outputs=out)
        assert float(total.detach()) > float(
            loss.detach()
        )  # the Switch term (>= 0.1 x 1 at balance) joined
        total.backward()
        optimizer.step()
    manager.finalize(model)
    layer = model.get_submodule("hidden.0")
    assert layer.router.weight.grad is not None  # the router is in the optimizer and learns
    with torch.no_grad():
        assert (model.eval()(x) - dense(x)).abs().max() > 1e-3


def test_upcycled_and_pruned_cnn_round_trips_through_the_format(tmp_path: Path) -> None:
    model = oneshot(cnn(), recipe(UPCYCLE_CNN))
    distinct_experts(model)
    oneshot(model, recipe("{type: ExpertPruningModifier, sparsity: 0.5}"), [images(32)])
    x = images(8)
    with torch.no_grad():
        before = model(x)
    export_model(model, tmp_path / "moe", sample_inputs=x)
    loaded = load_exported(tmp_path / "moe")
    assert loaded.get_submodule("hidden.0").num_experts == 2
    with torch.no_grad():
        assert torch.equal(loaded(x), before)
    assert validate_model(loaded, tmp_path / "moe").raise_if_failed().ok


def test_upcycled_bert_round_trips_through_the_format(tmp_path: Path) -> None:
    mod = f"{{type: MoEUpcyclingModifier, blocks: {BERT_LAYERS}, num_experts: 3, top_k: 2}}"
    model = oneshot(tiny_bert(0), recipe(mod))
    scramble_routers(model)
    distinct_experts(model)
    inputs = text_inputs()
    with torch.no_grad():
        before = model(**inputs)
    export_model(model, tmp_path / "bert_moe", sample_inputs=inputs)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "bert_moe")(**inputs), before)


# ---- transformers' own MoE: a tiny random Mixtral with fused 3-D expert weights ----------


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zoo.models.tiny import write_tiny_model

    return write_tiny_model("mixtral", tmp_path_factory.mktemp("tiny") / "mixtral")


def _token_batches(n: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(7, 500, (4, 16), generator=g), "attention_mask": None}
        for _ in range(n)
    ]


def test_reap_prunes_half_of_a_tiny_mixtral_and_it_round_trips(
    mixtral: Path, tmp_path: Path
) -> None:
    model = get_model("hf", path=str(mixtral))
    blocks = [m for n, m in model.named_modules() if n.endswith("mlp") and hasattr(m, "experts")]
    assert blocks and blocks[0].experts.gate_up_proj.dim() == 3
    expert_params = sum(
        b.experts.gate_up_proj.numel() + b.experts.down_proj.numel() for b in blocks
    )
    router_params = sum(b.gate.weight.numel() for b in blocks)
    before = total_parameters(model)
    batches = _token_batches()
    oneshot(model, recipe("{type: REAPPruningModifier, sparsity: 0.5}"), batches)
    assert before - total_parameters(model) == (expert_params + router_params) // 2
    for block in blocks:
        assert block.experts.gate_up_proj.shape[0] == 2 and block.gate.weight.shape[0] == 2
        _, scores, index = block.gate(torch.randn(5, block.gate.hidden_dim))
        assert torch.allclose(scores.sum(-1), torch.ones(5)) and int(index.max()) < 2
    sample = {"input_ids": batches[0]["input_ids"]}
    with torch.no_grad():
        logits = model(**sample)
    assert torch.isfinite(logits).all()
    export_model(model, tmp_path / "mixtral_reap50", sample_inputs=sample)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "mixtral_reap50")(**sample), logits)


def test_pruning_below_top_k_is_refused_before_anything_changes(mixtral: Path) -> None:
    model = get_model("hf", path=str(mixtral))  # 4 experts, top-2
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match=r"sparsity.*leaves 1, fewer than its top_k \(2\)"):
        oneshot(model, recipe("{type: ExpertPruningModifier, sparsity: 0.75}"), _token_batches(1))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# ---- bad input: clear errors naming the recipe field, nothing half-written --------------


def test_an_upcycling_target_that_is_not_a_feed_forward_block_is_refused() -> None:
    model = cnn()
    keys = set(model.state_dict())
    mod = "{type: MoEUpcyclingModifier, blocks: [hidden.0, features.0], num_experts: 4}"
    with pytest.raises(RecipeError, match=r"field 'blocks'.*'features.0' is a Sequential"):
        oneshot(model, recipe(mod))
    assert set(model.state_dict()) == keys  # hidden.0, listed first, was left alone
    with pytest.raises(RecipeError, match=r"blocks.*no module 'hidden\.7'"):
        oneshot(model, recipe(mod.replace("features.0", "hidden.7")))


def test_top_k_above_the_number_of_experts_is_refused_at_parse() -> None:
    with pytest.raises(RecipeError, match=r"field 'top_k'.*1..num_experts \(2\), got 3"):
        oneshot(
            cnn(),
            recipe("{type: MoEUpcyclingModifier, blocks: [hidden.0], num_experts: 2, top_k: 3}"),
        )


def test_a_long_yaml_recipe_text_is_not_mistaken_for_a_path() -> None:
    text = recipe("{type: MoEUpcyclingModifier, blocks: [hidden.0], num_experts: 4}")
    text += "#" + "-" * 300 + "\n"  # longer than any file name may be
    assert isinstance(oneshot(cnn(), text).get_submodule("hidden.0"), MoELayer)


def test_overlapping_blocks_are_refused_at_parse() -> None:
    layer = "encoder.encoder.layer.0"
    mod = f"{{type: MoEUpcyclingModifier, blocks: [{layer}, {layer}.intermediate.dense]}}"
    with pytest.raises(RecipeError, match=r"field 'blocks'.*overlap"):
        oneshot(tiny_bert(0), recipe(mod))
