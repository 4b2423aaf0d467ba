"""Knowledge distillation at three granularities: outputs, layers, instances.

`hardness` follows SparseML: the weight of the distillation term, so
``loss = (1 - hardness) * task_loss + hardness * T^2 * KL(softmax(t/T) || softmax(s/T))``
(hardness 1 is pure distillation; in the other common spelling alpha = 1 - hardness weighs
the hard-label loss). The T^2 keeps the soft term's gradients on the scale of the hard one
when T changes (Hinton et al., 2015).

The teacher runs in eval mode under `torch.no_grad`, once per step however many
distillation modifiers a recipe holds: its outputs (and the features its hooks captured)
are cached in ``state.store`` for the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modifiers.base import Modifier, ModifierState, forward_batch, remove_handles

Weighting = Literal["confidence", "entropy", "true_class"]


# ---- functions ---------------------------------------------------------------------------
OutputKey = str | int


def distilled_outputs(output: Any, keys: list[OutputKey] | None, owner: str) -> list[Any]:
    """The output tensors distillation compares, as SparseML's ``distill_output_keys``.

    A Tensor is itself. A mapping (a transformers ``ModelOutput`` too) gives ``output[key]``
    for each key; without keys, every entry whose name ends in ``logits`` (``logits``,
    ``start_logits``, ``end_logits``: SparseML would take every entry, ``loss`` and hidden
    states included, which no transformers recipe means). A tuple or list gives
    ``output[index]`` per key, every element without keys (as SparseML).
    """
    from zoo.errors import RecipeError

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        names = list(keys) if keys else [k for k in output if str(k).endswith("logits")]
        missing = [k for k in names if k not in output]
        if missing or not names:
            raise RecipeError(
                f"the model output has keys {list(output)}; "
                + (f"{missing} are not among them" if missing else "none ends in 'logits'")
                + ". Name the outputs to distill in distill_output_keys.",
                modifier=owner,
                field="distill_output_keys",
            )
        return [output[k] for k in names]
    if isinstance(output, tuple | list):
        chosen = list(keys) if keys else list(range(len(output)))
        indices = [i for i in chosen if isinstance(i, int) and -len(output) <= i < len(output)]
        bad = [i for i in chosen if i not in indices]
        if bad:
            raise RecipeError(
                f"the model output is a sequence of {len(output)}; {bad} are not indices of it",
                modifier=owner,
                field="distill_output_keys",
            )
        return [output[i] for i in indices]
    raise RecipeError(
        f"cannot distill a model output of type {type(output).__name__}: expected a Tensor, "
        "a mapping (ModelOutput) or a tuple of tensors",
        modifier=owner,
        field="distill_output_keys",
    )


def soft_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-example T^2 * KL(softmax(t/T) || softmax(s/T)), shape [batch]."""
    s = F.log_softmax(student_logits / temperature, dim=-1)
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return kl * temperature**2


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    temperature: float = 2.0,
    hardness: float = 1.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 - hardness) * CE(student, targets) + hardness * weighted mean soft KL.

    `weights` (per example) turn it into instance-level distillation; None is uniform.
    """
    kl = soft_kl(student_logits, teacher_logits.detach(), temperature)
    if weights is None:
        soft = kl.mean()
    else:
        w = weights.detach()
        soft = (w * kl).sum() / w.sum().clamp_min(torch.finfo(kl.dtype).tiny)
    if hardness >= 1.0:
        return soft
    if targets is None:
        raise ValueError("hardness < 1 needs targets for the hard-label term")
    return (1.0 - hardness) * F.cross_entropy(student_logits, targets) + hardness * soft


def instance_weights(
    teacher_logits: torch.Tensor,
    mode: Weighting = "confidence",
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example weights in [0, 1] from the teacher: trust it where it is sure or right.

    confidence: its top probability; entropy: 1 - H(p) / log(C); true_class: the
    probability it gives the label (exp(-teacher loss)), which needs `targets`.
    """
    probs = F.softmax(teacher_logits.detach().float(), dim=-1)
    if mode == "confidence":
        return probs.max(-1).values
    if mode == "entropy":
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        return 1.0 - entropy / torch.log(torch.tensor(float(probs.shape[-1])))
    if mode == "true_class":
        if targets is None:
            raise ValueError("true_class weighting needs the targets")
        return probs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    raise ValueError(f"unknown weighting {mode!r}")


def _feature(output: Any) -> torch.Tensor:
    # Transformer blocks return tuples (hidden state first).
    return output[0] if isinstance(output, tuple | list) else output


def make_projection(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """A learned map from student to teacher feature width: 1x1 conv for [B, C, H, W]
    features (channels on dim 1), linear otherwise (features on the last dim)."""
    if student.dim() == 4:
        return nn.Conv2d(student.shape[1], teacher.shape[1], kernel_size=1, bias=False)
    return nn.Linear(student.shape[-1], teacher.shape[-1], bias=False)


def feature_loss(
    student: torch.Tensor, teacher: torch.Tensor, projection: nn.Module | None
) -> torch.Tensor:
    """MSE between (projected) student features and teacher features."""
    if projection is not None:
        student = projection(student)
    if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
        student = F.adaptive_avg_pool2d(student, (int(teacher.shape[-2]), int(teacher.shape[-1])))
    return F.mse_loss(student, teacher.detach())


class FeatureCapture:
    """Forward hooks that keep the latest output of named modules."""

    def __init__(self, model: nn.Module, names: list[str], detach: bool) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [
            model.get_submodule(name).register_forward_hook(self._hook(name, detach))
            for name in names
        ]

    def _hook(self, name: str, detach: bool) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            feature = _feature(output)
            self.features[name] = feature.detach() if detach else feature

        return hook

    def remove(self) -> None:
        remove_handles(self._handles)
        self._handles = []


class LayerDistiller:
    """Feature matching between student and teacher layers, with learned projections.

    Usable in any loop: run the student (hooks capture its features), call `loss()` after
    running the teacher under no_grad; `parameters()` are the projections to optimize.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        layers: dict[str, str],
        projection: bool = True,
    ) -> None:
        self.layers = dict(layers)
        self.use_projection = projection
        self.student = FeatureCapture(student, list(self.layers), detach=False)
        self.teacher = FeatureCapture(teacher, list(self.layers.values()), detach=True)
        self.projections = nn.ModuleDict()

    def ensure_projections(self) -> list[nn.Parameter]:
        """Create the projections missing for captured features whose widths differ;
        returns the new parameters (to add to an optimizer)."""
        new: list[nn.Parameter] = []
        for s_name, t_name in self.layers.items():
            key = s_name.replace(".", "__")
            if key in self.projections or not self.use_projection:
                continue
            s, t = self.student.features[s_name], self.teacher.features[t_name]
            width = 1 if s.dim() == 4 else -1
            if s.shape[width] != t.shape[width]:
                proj = make_projection(s, t).to(s.device, s.dtype)
                self.projections[key] = proj
                new.extend(proj.parameters())
        return new

    def loss(self) -> torch.Tensor:
        terms = []
        for s_name, t_name in self.layers.items():
            key = s_name.replace(".", "__")
            proj = self.projections[key] if key in self.projections else None  # noqa: SIM401
            terms.append(
                feature_loss(self.student.features[s_name], self.teacher.features[t_name], proj)
            )
        return torch.stack(terms).mean()

    def parameters(self) -> list[nn.Parameter]:
        return list(self.projections.parameters())

    def remove(self) -> None:
        self.student.remove()
        self.teacher.remove()


# ---- the teacher, once per step ------------------------------------------------------------
_TEACHER_KEY = "distillation.teacher_outputs"


def teacher_outputs(state: ModifierState, inputs: Any, keys: list[str] | None = None) -> Any:
    """The teacher's outputs on `inputs`, computed once per step (eval mode, no_grad).

    `keys` (SparseML's ``teacher_input_keys``): pass the teacher only these entries of a
    dict batch; None or empty passes the whole batch.
    """
    from zoo.errors import RecipeError

    if state.teacher is None:
        raise RecipeError(
            "distillation needs a teacher model: pass teacher=... to the manager",
            field="teacher",
        )
    picked = tuple(keys or ())
    cached = state.store.get(_TEACHER_KEY)
    if (
        cached is not None
        and (cached[0], cached[2]) == (state.step, picked)
        and cached[1] is inputs
    ):
        return cached[3]
    teacher_inputs = inputs
    if picked:
        if not isinstance(inputs, dict):
            raise RecipeError(
                f"teacher_input_keys {list(picked)} picks entries of a dict batch, but the "
                f"batch is a {type(inputs).__name__}",
                field="teacher_input_keys",
            )
        missing = [k for k in picked if k not in inputs]
        if missing:
            raise RecipeError(
                f"teacher_input_keys {missing} are not in the batch (its keys: {sorted(inputs)})",
                field="teacher_input_keys",
            )
        teacher_inputs = {k: inputs[k] for k in picked}
    state.teacher.eval()
    with torch.no_grad():
        out = forward_batch(state.teacher, teacher_inputs)
    state.store[_TEACHER_KEY] = (state.step, inputs, picked, out)
    return out


def _need_outputs(owner: str, inputs: Any, outputs: Any) -> None:
    from zoo.errors import RecipeError

    if inputs is None or outputs is None:
        raise RecipeError(
            "distillation needs the batch and the student's outputs: call "
            "loss_update(loss, inputs=batch_inputs, outputs=model_outputs)",
            modifier=owner,
        )


# ---- modifiers ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class _DistillationBase(Modifier):
    ignored_fields: ClassVar[frozenset[str]] = frozenset({"log_types", "teacher_output_keys"})

    hardness: float = 0.5
    temperature: float = 2.0
    #: which outputs to distill (keys of a mapping output, indices of a tuple); the soft
    #: term is the mean over them, as SparseML's kldiv_loss
    distill_output_keys: list[OutputKey] | None = None
    #: which entries of a dict batch the teacher gets (None or empty: all), as SparseML's
    teacher_input_keys: list[str] | None = None

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.hardness <= 1.0:
            raise self.field_error("hardness", f"must be in [0, 1], got {self.hardness}")
        if self.temperature <= 0:
            raise self.field_error("temperature", f"must be > 0, got {self.temperature}")

    def _combine(self, loss: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.hardness) * loss + self.hardness * soft

    def _pairs(self, state: ModifierState, inputs: Any, outputs: Any) -> list[tuple[Any, Any]]:
        """(student, teacher) tensors of every distilled output."""
        _need_outputs(self.type_name, inputs, outputs)
        keys = self.distill_output_keys
        student = distilled_outputs(outputs, keys, self.type_name)
        teacher = distilled_outputs(
            teacher_outputs(state, inputs, self.teacher_input_keys), keys, self.type_name
        )
        return list(zip(student, teacher, strict=True))


@dataclass(kw_only=True)
class OutputDistillationModifier(_DistillationBase):
    """Model-level KD on logits: the task loss blends with the teacher's soft targets."""

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        if not self.active(state):
            return loss
        pairs = self._pairs(state, inputs, outputs)
        soft = torch.stack([soft_kl(s, t, self.temperature).mean() for s, t in pairs]).mean()
        return self._combine(loss, soft)


@dataclass(kw_only=True)
class InstanceDistillationModifier(_DistillationBase):
    """Instance-level KD: each example's soft term weighted by how much to trust the teacher
    on it (`confidence` or `entropy`; both need no labels)."""

    weighting: Literal["confidence", "entropy"] = "confidence"

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        if not self.active(state):
            return loss
        terms = []
        for student, teacher in self._pairs(state, inputs, outputs):
            weights = instance_weights(teacher, self.weighting)
            kl = soft_kl(student, teacher, self.temperature)
            terms.append((weights * kl).sum() / weights.sum().clamp_min(1e-12))
        return self._combine(loss, torch.stack(terms).mean())


@dataclass(kw_only=True)
class LayerDistillationModifier(Modifier):
    """Layer-level KD: MSE between named student layers and teacher layers.

    `layers` maps student module names to teacher module names. Where the widths differ a
    learned projection (linear, or 1x1 conv for feature maps) maps student to teacher; its
    parameters join the optimizer. ``loss += weight * mean feature MSE``.
    """

    layers: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    projection: bool = True

    def __post_init__(self) -> None:
        self._distiller: LayerDistiller | None = None

    def check(self) -> None:
        super().check()
        if not self.layers:
            raise self.field_error("layers", "map at least one student layer to a teacher layer")
        if self.weight < 0:
            raise self.field_error("weight", f"must be >= 0, got {self.weight}")

    def check_model(self, model: nn.Module) -> None:
        """The student layers exist (`zoo recipe validate --model`; the teacher's are checked
        when the recipe is applied)."""
        self._check_names(model, list(self.layers), "student")

    def _check_names(self, model: nn.Module, names: list[str], which: str) -> None:
        from zoo.errors import RecipeError, suggest

        table = dict(model.named_modules())
        for name in names:
            if name not in table:
                raise RecipeError(
                    f"{which} has no layer {name!r}.{suggest(name, table)}",
                    modifier=self.type_name,
                    field="layers",
                )

    def _validate_names(self, state: ModifierState) -> None:
        assert state.teacher is not None
        self._check_names(state.model, list(self.layers), "student")
        self._check_names(state.teacher, list(self.layers.values()), "teacher")

    def initialize(self, state: ModifierState) -> None:
        from zoo.errors import RecipeError

        if state.teacher is None:
            raise RecipeError(
                "layer distillation needs a teacher model: pass teacher=... to the manager",
                modifier=self.type_name,
                field="teacher",
            )
        self._validate_names(state)
        self._distiller = LayerDistiller(state.model, state.teacher, self.layers, self.projection)

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        if not self.active(state) or self._distiller is None:
            return loss
        _need_outputs(self.type_name, inputs, outputs)
        teacher_outputs(state, inputs)  # fills the teacher's feature hooks
        new = self._distiller.ensure_projections()
        if new and state.optimizer is not None:
            # Same hyperparameters as the model's first group, minus its parameters.
            group = {k: v for k, v in state.optimizer.param_groups[0].items() if k != "params"}
            state.optimizer.add_param_group({**group, "params": new})
        return loss + self.weight * self._distiller.loss()

    def finalize(self, state: ModifierState) -> None:
        if self._distiller is not None:
            self._distiller.remove()
            self._distiller = None
