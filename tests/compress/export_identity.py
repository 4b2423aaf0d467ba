"""Export one small model per transform, so two versions of the writer can be compared.

    python -m tests.compress.export_identity OUT_DIR

builds, with fixed seeds on one thread, a model for every kind of folder the saved-model
format writes (dense, unstructured 90%, 2:4, structured channels, attention heads,
low-rank, 4-bit weight sharing, static int8, QAT int8, pruned + static int8, dynamic int8
MiniLM with one block, a distilled-size student) and exports each into OUT_DIR/<name>.
It only calls APIs every version since the format's first release has (`get_model`,
`oneshot`, `zoo.modifiers.quantization`'s functions, `export_model`), so running it with
another checkout's `zoo` on PYTHONPATH gives that version's bytes: test_export_identity.py
compares them file by file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Inputs = torch.Tensor | dict[str, torch.Tensor]


def _oneshot_recipe(*modifiers: str) -> str:
    lines = "".join(f"      - {m}\n" for m in modifiers)
    return f"stages:\n  s:\n    run_type: oneshot\n    modifiers:\n{lines}"


def _fashion() -> dict[str, torch.Tensor]:
    from zoo.data.loaders import image_tensor
    from zoo.data.sources import get_dataset_spec

    spec = get_dataset_spec("fashion_mnist")
    train, _ = spec.read(spec.locate())
    pick = np.random.default_rng(0).choice(len(train["y"]), 256, replace=False)
    return {
        "x": image_tensor(train["x"][pick], spec),
        "y": torch.from_numpy(train["y"][pick].astype(np.int64)),
    }


def _train(model: nn.Module, data: dict[str, torch.Tensor], steps: int = 6) -> nn.Module:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(steps):
        sl = slice(i * 32, i * 32 + 32)
        optimizer.zero_grad()
        F.cross_entropy(model(data["x"][sl]), data["y"][sl]).backward()
        optimizer.step()
    return model.eval()


def _cnn(data: dict[str, torch.Tensor], seed: int = 0) -> nn.Module:
    from zoo.models import get_model

    torch.manual_seed(seed)
    return _train(get_model("cnn_small"), data)


def tiny_bert(seed: int) -> nn.Module:
    from zoo.models import get_model

    torch.manual_seed(seed)
    config = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": 500,
        "max_position_embeddings": 64,
    }
    return get_model("minilm_classifier", pretrained=False, encoder_config=config).eval()


def text_inputs(vocab: int = 500) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, vocab, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _models(data: dict[str, torch.Tensor]) -> dict[str, Callable[[], tuple[nn.Module, Inputs]]]:
    from zoo.models import get_model
    from zoo.modifiers import quantization as q
    from zoo.recipes import oneshot

    images = data["x"][:8]
    batches = [data["x"][i : i + 64] for i in range(0, 256, 64)]

    def dense() -> tuple[nn.Module, Inputs]:
        return _cnn(data), images

    def pruned90() -> tuple[nn.Module, Inputs]:
        model = _cnn(data)
        oneshot(model, _oneshot_recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
        return model, images

    def two_of_four() -> tuple[nn.Module, Inputs]:
        torch.manual_seed(1)
        model = get_model("mlp")
        oneshot(
            model,
            _oneshot_recipe(
                "{type: OneShotMagnitudePruningModifier, sparsity: 0.5, mask_type: '2:4'}"
            ),
        )
        return model.eval(), images

    def channels_int8() -> tuple[nn.Module, Inputs]:
        model = _cnn(data)
        oneshot(
            model,
            _oneshot_recipe("{type: StructuredPruningModifier, sparsity: 0.5, structure: channel}"),
        )
        q.quantize_static(model, batches[:2])
        return model, images

    def heads() -> tuple[nn.Module, Inputs]:
        model = tiny_bert(4)
        oneshot(
            model,
            _oneshot_recipe("{type: StructuredPruningModifier, sparsity: 0.5, structure: head}"),
        )
        return model.eval(), text_inputs()

    def lowrank() -> tuple[nn.Module, Inputs]:
        torch.manual_seed(2)
        model = get_model("mlp", hidden=(128, 64))
        oneshot(model, _oneshot_recipe("{type: LowRankModifier, rank_fraction: 0.25}"))
        return model.eval(), images

    def shared4() -> tuple[nn.Module, Inputs]:
        torch.manual_seed(3)
        model = get_model("mlp")
        oneshot(model, _oneshot_recipe("{type: WeightSharingModifier, bits: 4}"))
        return model.eval(), images

    def static_int8() -> tuple[nn.Module, Inputs]:
        model = _cnn(data)
        q.quantize_static(model, batches)
        return model, images

    def qat_int8() -> tuple[nn.Module, Inputs]:
        model = _cnn(data)
        q.prepare_qat(model)
        _train(model, data, steps=3)
        model.train()
        q.convert(model)
        return model.eval(), images

    def pruned_int8() -> tuple[nn.Module, Inputs]:
        model = _cnn(data)
        oneshot(model, _oneshot_recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
        q.quantize_static(model, batches)
        return model, images

    def minilm1_dynamic() -> tuple[nn.Module, Inputs]:
        torch.manual_seed(5)
        model = get_model("minilm_classifier", num_layers=1).eval()
        q.quantize_dynamic(model)
        return model, text_inputs(vocab=30000)

    def student() -> tuple[nn.Module, Inputs]:
        torch.manual_seed(6)
        return _train(get_model("mlp", hidden=(64,)), data), images

    return {
        "dense": dense,
        "pruned90": pruned90,
        "two_of_four": two_of_four,
        "channels_int8": channels_int8,
        "heads": heads,
        "lowrank": lowrank,
        "shared4": shared4,
        "static_int8": static_int8,
        "qat_int8": qat_int8,
        "pruned_int8": pruned_int8,
        "minilm1_dynamic": minilm1_dynamic,
        "student": student,
    }


def export_all(out: Path) -> list[str]:
    """Export every model into out/<name>; the names, in order."""
    from zoo.compress.export import export_model

    torch.set_num_threads(1)  # one thread: float sums in one order, the same bytes each run
    data = _fashion()
    names = []
    for name, build in _models(data).items():
        model, inputs = build()
        export_model(model, out / name, sample_inputs=inputs, metrics={"demo": {"acc": 0.5}})
        names.append(name)
    return names


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.compress.export_identity OUT_DIR")
    print("\n".join(export_all(Path(sys.argv[1]))))
