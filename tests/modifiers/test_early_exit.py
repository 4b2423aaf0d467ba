"""Early exit: exits that never fire change nothing, exits that always fire stop the
encoder there (layer calls counted), per-example decisions in a batch, training by
self-distillation, the format round trip, and errors naming the recipe field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.compress.export_identity import text_inputs
from tests.compress.recipes import recipe
from tests.modifiers.conditional_models import bert, with_exits
from zoo.client.validate import validate_model
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.modifiers import early_exit
from zoo.recipes import RecipeManager, oneshot


def _count_layer_calls(model: nn.Module) -> list[int]:
    calls = [0] * len(model.encoder.encoder.layer)

    def counter(i: int):  # type: ignore[no-untyped-def]
        def hook(*_: object) -> None:
            calls[i] += 1

        return hook

    for i, layer in enumerate(model.encoder.encoder.layer):
        layer.register_forward_hook(counter(i))
    return calls


def test_an_exit_that_never_fires_equals_the_full_model() -> None:
    dense, inputs = bert(), text_inputs()
    model = with_exits(copy.deepcopy(dense), "[0, 2]", "entropy", 0.0)  # entropy is never < 0
    calls = _count_layer_calls(model)
    with torch.no_grad():
        assert (model(**inputs) - dense(**inputs)).abs().max() <= 1e-5
    assert calls == [1, 1, 1, 1]


def test_an_exit_that_always_fires_runs_only_the_first_exits_layers() -> None:
    model = with_exits(bert(), "[1, 2]", "max_prob", 0.0)  # every top probability is >= 0
    calls = _count_layer_calls(model)
    inputs = text_inputs()
    with torch.no_grad():
        out = model(**inputs)
        executed = list(calls)
        # The answer is exit 1's head on layer 1's pooled states.
        encoder = model.encoder
        mask = inputs["attention_mask"]
        states = encoder(**inputs, output_hidden_states=True).hidden_states[2]
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        expected = model.exit_heads["1"](pooled)
    assert executed == [1, 1, 0, 0]
    assert (out - expected).abs().max() <= 1e-5


def test_exit_decisions_are_per_example_in_a_batch() -> None:
    model = with_exits(bert(seed=1), "[0, 1, 2]", "entropy", 0.0)
    inputs = text_inputs()
    with torch.no_grad():
        for head in model.exit_heads.values():  # make the exits' confidence vary by example
            nn.init.normal_(head.weight, std=3.0)
        probs = [
            model.exit_heads[k](model.encoder(**inputs).last_hidden_state.mean(1)) for k in "0"
        ]
        entropy = -(F.softmax(probs[0], -1) * F.log_softmax(probs[0], -1)).sum(-1)
        early_exit.set_threshold(model, float(entropy.median()) + 1e-3)
        early_exit.set_tracking(model, True)
        batch = model(**inputs)
        usage = early_exit.layer_usage(model)
        one_by_one = torch.cat(
            [model(**{k: v[i : i + 1] for k, v in inputs.items()}) for i in range(3)]
        )
    assert (batch - one_by_one).abs().max() <= 1e-5
    assert usage is not None
    mean_layers, entered, examples = usage
    assert examples == 3 and entered[0] == 3 and 1.0 <= mean_layers < 4.0


def test_exits_train_by_self_distillation_with_the_backbone_frozen() -> None:
    model = bert().train()
    backbone = {k: v.clone() for k, v in model.state_dict().items()}
    text = (
        "stages:\n  t:\n    run_type: train\n    modifiers:\n"
        "      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 1}\n"
        "      - {type: EarlyExitModifier, exits: [0], freeze_backbone: true}\n"
    )
    manager = RecipeManager.from_yaml(text)
    optimizer = torch.optim.Adam([p for p in model.parameters()], lr=0.02)
    manager.modify(model, optimizer, steps_per_epoch=20)
    with torch.no_grad():  # start the exit far from the final classifier
        nn.init.normal_(model.exit_heads["0"].weight, std=2.0)
    inputs = text_inputs()
    gaps = []
    for _ in range(20):
        optimizer.zero_grad()
        out = model(**inputs)
        loss = F.cross_entropy(out, torch.tensor([0, 1, 0]))
        total = manager.loss_update(loss, inputs=inputs, outputs=out)
        gaps.append(float((total - loss).detach()))
        total.backward()
        optimizer.step()
    manager.finalize(model)
    assert gaps[-1] < 0.5 * gaps[0]  # the exit learns to agree with the final classifier
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in backbone.items())  # frozen


def test_an_early_exit_model_round_trips_with_its_operating_point(tmp_path: Path) -> None:
    model = with_exits(bert(), "[0, 1]", "max_prob", 0.6)
    inputs = text_inputs()
    with torch.no_grad():
        for head in model.exit_heads.values():
            nn.init.normal_(head.weight, std=2.0)
        before = model(**inputs)
    export_model(model, tmp_path / "ee", sample_inputs=inputs)
    loaded = load_exported(tmp_path / "ee")
    assert early_exit.exit_spec(loaded) == {
        "exits": [0, 1],
        "criterion": "max_prob",
        "threshold": 0.6,
    }
    with torch.no_grad():
        assert torch.equal(loaded(**inputs), before)
    assert validate_model(loaded, tmp_path / "ee").raise_if_failed().ok


def test_the_threshold_sweep_picks_the_cheapest_point_within_the_accuracy_budget() -> None:
    model = with_exits(bert(), "[0, 1]", "entropy", 0.3)
    inputs = text_inputs()
    labels = torch.tensor([0, 1, 1])
    points = early_exit.sweep(model, [(inputs, labels)], [0.0, 0.3, 10.0])
    assert [p["mean_layers"] for p in points] == [4.0, points[1]["mean_layers"], 1.0]
    chosen = early_exit.choose_operating_point(points, max_drop=1.0)
    assert chosen["threshold"] == 10.0
    exact = early_exit.choose_operating_point(points, max_drop=0.0)
    assert exact["accuracy"] == max(p["accuracy"] for p in points)
    assert early_exit.exit_spec(model)["threshold"] == 0.3  # the sweep leaves it as it was


def test_the_replayed_sweep_equals_running_the_model_at_each_threshold() -> None:
    model = with_exits(bert(seed=2), "[0, 1, 2]", "entropy", 0.0)
    with torch.no_grad():  # exits of varied confidence: every threshold exits differently
        for head in model.exit_heads.values():
            nn.init.normal_(head.weight, std=3.0)
    ids = torch.randint(1, 500, (12, 10), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[::3, 6:] = 0
    labels = torch.randint(0, 2, (12,), generator=torch.Generator().manual_seed(4))
    batches = [
        ({"input_ids": ids[a:b], "attention_mask": mask[a:b]}, labels[a:b])
        for a, b in ((0, 5), (5, 12))
    ]
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.6, 0.69]
    replayed = early_exit.sweep(model, batches, thresholds)
    for point in replayed:
        early_exit.set_threshold(model, point["threshold"])
        early_exit.set_tracking(model, True)
        with torch.no_grad():
            correct = sum(int((model(**x).argmax(-1) == y).sum()) for x, y in batches)
        usage = early_exit.layer_usage(model)
        early_exit.set_tracking(model, False)
        assert usage is not None
        assert point["accuracy"] == correct / 12 and point["mean_layers"] == usage[0]
    assert len({p["mean_layers"] for p in replayed}) >= 3  # the points do differ


def _train_exits(fields: str, steps: int = 3) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = bert().train()
    text = (
        "stages:\n  t:\n    run_type: train\n    modifiers:\n"
        "      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 1}\n"
        f"      - {{type: EarlyExitModifier, exits: [0, 1], {fields}}}\n"
    )
    manager = RecipeManager.from_yaml(text)
    optimizer = torch.optim.SGD(list(model.parameters()), lr=0.0)
    manager.modify(model, optimizer, steps_per_epoch=steps)
    with torch.no_grad():  # start the exits far from the final classifier
        for head in model.exit_heads.values():
            nn.init.normal_(head.weight, std=2.0)
    inputs = text_inputs()
    for _ in range(steps):
        optimizer.zero_grad()
        out = model(**inputs)
        loss = F.cross_entropy(out, torch.tensor([0, 1, 0]))
        manager.loss_update(loss, inputs=inputs, outputs=out).backward()
        optimizer.step()
    manager.finalize(model)
    return model, optimizer


def test_head_lr_trains_the_exits_in_their_own_group_at_that_rate() -> None:
    before = bert().state_dict()
    model, optimizer = _train_exits("head_lr: 0.05")
    heads = {id(p) for p in model.exit_heads.parameters()}
    assert [g["lr"] for g in optimizer.param_groups] == [0.0, 0.05]
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == heads
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # backbone at lr 0
    _, plain = _train_exits("freeze_backbone: true")  # unwritten: one group, as before
    assert len(plain.param_groups) == 1


def test_exit_weights_weigh_each_exits_distillation_term() -> None:
    torch.manual_seed(5)
    model, _ = _train_exits("exit_weights: [0.0, 1.0], head_lr: 0.05")
    torch.manual_seed(5)
    reference, _ = _train_exits("head_lr: 0.0000001")  # same start, hardly moved
    moved = {
        k: float((model.exit_heads[k].weight - reference.exit_heads[k].weight).abs().max().detach())
        for k in ("0", "1")
    }
    assert moved["0"] < 1e-4 < moved["1"]  # weight 0: exit 0 did not learn


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("exit_weights: [1.0]", r"field 'exit_weights'.*one weight per exit.*2 values, got 1"),
        ("exit_weights: [1.0, -1.0]", r"field 'exit_weights'.*>= 0"),
        ("exit_weights: [0.0, 0.0]", r"field 'exit_weights'.*not all 0"),
        ("head_lr: 0", r"field 'head_lr'.*> 0, got 0"),
        ("head_lr: .nan", r"field 'head_lr'"),
    ],
)
def test_bad_training_options_are_refused_naming_the_field(fields: str, message: str) -> None:
    model = bert()
    with pytest.raises(RecipeError, match=message):
        oneshot(model, recipe(f"{{type: EarlyExitModifier, exits: [0, 1], {fields}}}"))
    assert not hasattr(model, early_exit.HEADS)  # nothing attached


def test_an_exit_on_a_layer_that_does_not_exist_is_refused() -> None:
    model = bert(layers=4)
    with pytest.raises(RecipeError, match=r"field 'exits'.*\[3, 7\] do not exist.*0..2"):
        with_exits(model, "[1, 3, 7]", "entropy", 0.3)
    assert not hasattr(model, early_exit.HEADS)  # nothing attached
    with pytest.raises(RecipeError, match="field 'threshold'"):
        with_exits(model, "[1]", "max_prob", 1.5)
    with pytest.raises(RecipeError, match=r"field 'type'.*not a BERT-style text classifier"):
        with_exits(get_model("cnn_small"), "[0]", "entropy", 0.3)
