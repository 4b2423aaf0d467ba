"""Distillation: the KD loss's algebra, and students that measurably move toward teachers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.modifiers.distillation import instance_weights, kd_loss, soft_kl
from zoo.recipes import RecipeManager, parse_recipe


def _mlp(hidden: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("mlp", hidden=hidden, num_classes=10, in_features=64)


def _batch(seed: int, n: int = 32) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed))


def test_kd_loss_is_zero_for_an_identical_student_and_matches_the_formula() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(16, 10) * 3
    assert float(kd_loss(teacher.clone(), teacher, temperature=4.0, hardness=1.0)) < 1e-6

    student, targets, t, h = torch.randn(16, 10), torch.randint(0, 10, (16,)), 4.0, 0.7
    expected = (1 - h) * F.cross_entropy(student, targets) + h * t * t * F.kl_div(
        F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean"
    )
    got = kd_loss(student, teacher, targets, temperature=t, hardness=h)
    assert torch.allclose(got, expected, atol=1e-6)


def test_instance_weights_trust_the_teacher_where_it_is_sure() -> None:
    sure, unsure = torch.tensor([10.0, 0.0, 0.0]), torch.tensor([0.1, 0.0, 0.05])
    logits = torch.stack([sure, unsure])
    for mode in ("confidence", "entropy"):
        w = instance_weights(logits, mode)  # type: ignore[arg-type]
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
        assert w[0] > w[1]
    w = instance_weights(logits, "true_class", torch.tensor([1, 0]))
    assert w[0] < 0.01 and w[1] > 0.3  # wrong about example 0, roughly right about 1

    # Weights select examples: a one-hot weight gives exactly that example's soft term.
    student = torch.randn(2, 3)
    one_hot = torch.tensor([0.0, 1.0])
    assert torch.allclose(
        kd_loss(student, logits, weights=one_hot, temperature=2.0),
        soft_kl(student, logits, 2.0)[1],
    )


def _run(
    recipe: str, student: nn.Module, teacher: nn.Module, steps: int, lr: float = 0.05
) -> tuple[RecipeManager, torch.optim.Optimizer]:
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    manager = RecipeManager(parse_recipe(recipe))
    manager.modify(student, optimizer, steps_per_epoch=steps, teacher=teacher)
    teacher.train()  # the modifiers must put it in eval mode themselves
    for i in range(steps):
        x = _batch(i)
        optimizer.zero_grad()
        out = student(x)
        # No task loss: the recipe's terms are the whole objective.
        manager.loss_update(out.sum() * 0.0, inputs=x, outputs=out).backward()
        optimizer.step()
    return manager, optimizer


def _mean_kl(student: nn.Module, teacher: nn.Module) -> float:
    with torch.no_grad():
        x = _batch(999, 256)
        return float(soft_kl(student(x), teacher(x), 2.0).mean())


@pytest.mark.parametrize("kind", ["OutputDistillationModifier", "InstanceDistillationModifier"])
def test_output_and_instance_kd_pull_the_student_to_the_teacher(kind: str) -> None:
    teacher, student = _mlp((128,), seed=1).eval(), _mlp((16,), seed=2)
    before = _mean_kl(student, teacher)
    recipe = (
        "stages:\n  kd:\n    modifiers:\n"
        f"      - {{type: {kind}, hardness: 1.0, temperature: 2.0}}\n"
    )
    _run(recipe, student, teacher, steps=60)
    assert _mean_kl(student, teacher) < 0.5 * before
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())


LAYER = """
stages:
  kd:
    modifiers:
      - type: LayerDistillationModifier
        layers: {features.1: features.1}
        weight: 1.0
"""


def test_layer_kd_projects_and_matches_features() -> None:
    teacher, student = _mlp((128,), seed=1).eval(), _mlp((32,), seed=2)
    x = _batch(999, 256)

    manager, optimizer = _run(LAYER, student, teacher, steps=1, lr=0.0)
    distiller = manager._modifiers[0]._distiller  # type: ignore[attr-defined]
    projection = distiller.projections["features__1"]
    assert isinstance(projection, nn.Linear) and projection.weight.shape == (128, 32)
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(projection.weight) in optimized

    def feature_gap() -> float:
        with torch.no_grad():
            s = student.features[:2](x)
            t = teacher.features[:2](x)
            return float(F.mse_loss(projection(s), t))

    before = feature_gap()
    projection_before = projection.weight.detach().clone()
    optimizer.param_groups[0]["lr"] = optimizer.param_groups[1]["lr"] = 0.01
    for i in range(80):
        xb = _batch(i)
        optimizer.zero_grad()
        out = student(xb)
        manager.loss_update(out.sum() * 0.0, inputs=xb, outputs=out).backward()
        optimizer.step()
    assert feature_gap() < 0.5 * before
    assert not torch.equal(projection_before, projection.weight.detach())
    manager.finalize()
    assert not student.features[1]._forward_hooks  # hooks removed


def test_layer_kd_names_a_missing_layer() -> None:
    teacher, student = _mlp((128,), seed=1), _mlp((32,), seed=2)
    manager = RecipeManager(parse_recipe(LAYER.replace("features.1: features.1", "fetaures.1: x")))
    with pytest.raises(RecipeError, match=r"student has no layer 'fetaures\.1'.*Did you mean"):
        manager.modify(student, torch.optim.SGD(student.parameters(), lr=0.1), 1, teacher=teacher)


class _KeywordNet(nn.Module):
    """Takes a dict batch by keyword (as transformers models do) and records what it got."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = _mlp((16,), seed)
        self.seen: list[set[str]] = []

    def forward(self, x: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        self.seen.append({"x", *extra})
        return self.net(x)


def _keyword_kd(keys: str) -> tuple[_KeywordNet, float]:
    teacher, student = _KeywordNet(1), _KeywordNet(2)
    recipe = (
        "modifiers:\n  - !OutputDistillationModifier\n    start_epoch: 0\n    hardness: 1.0\n"
        f"    teacher_input_keys: {keys}\n"
    )
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
    manager = RecipeManager(parse_recipe(recipe))
    manager.modify(student, optimizer, steps_per_epoch=1, teacher=teacher)
    batch = {"x": _batch(0), "labels": torch.zeros(32)}
    out = student(**batch)
    loss = manager.loss_update(out.sum() * 0.0, inputs=batch, outputs=out)
    return teacher, float(loss.detach())


def test_teacher_input_keys_pick_what_the_teacher_gets() -> None:
    teacher, loss = _keyword_kd("[x]")
    assert teacher.seen == [{"x"}] and loss > 0
    teacher, _ = _keyword_kd("null")  # SparseML: none means the whole batch
    assert teacher.seen == [{"x", "labels"}]


def test_teacher_input_keys_missing_from_the_batch_are_an_error() -> None:
    with pytest.raises(RecipeError, match=r"teacher_input_keys \['pixel_values'\] are not in"):
        _keyword_kd("[x, pixel_values]")
